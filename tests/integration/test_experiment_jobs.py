"""jobs/experiment_report.py and jobs/promote.py --experiment on a serving log written by the
impression log itself, with a real MLflow registry (sqlite): the run and its tags, a
promotion on a significant win, none (and why) otherwise."""

import mlflow
import numpy as np
import pytest
from llmrec.api.experiment import ExperimentSpec
from llmrec.config import RegistryConfig
from llmrec.experiments.attribution import Impression, attribute
from llmrec.experiments.impressions import ImpressionLog
from llmrec.registry import aliases, runs
from llmrec.serving.history import Event

ITEMS = tuple(f"i{k}" for k in range(10))


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = RegistryConfig(tracking_uri=uri, artifact_location=str(tmp_path / "art"), model_name="m")
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.yaml").write_text("{}\n")
    for n in (1, 2):  # version 1 becomes champion, 2 is a candidate
        runs.log_and_register(
            cfg, run_name=f"v{n}", params={}, history=[], metrics={}, bundle_dir=bundle,
            model_card="card", tags={},
        )  # fmt: skip
    return {"uri": uri, "tmp": tmp_path, "args": ["--set", f"registry.tracking_uri={uri}",
            "--set", f"registry.artifact_location={tmp_path / 'art'}", "--set",
            "registry.model_name=m"]}  # fmt: skip


def write_log(tmp, name, ctr, users=300, seed=0):
    """An experiment served by the impression log: ``users`` users an arm, 2 answers of 10
    items each, clicks at the given per-item rate per variant."""
    log = ImpressionLog(tmp / "state" / "impressions.sqlite", tmp / "impressions")
    spec = ExperimentSpec(
        name=name,
        variants=[
            {"name": "control", "model_uri": "models:/m@champion", "weight": 0.5},
            {"name": "challenger", "model_uri": "models:/m@candidate", "weight": 0.5},
        ],
    )
    log.allocation(spec)  # what the server stores when the experiment starts
    rng = np.random.default_rng(seed)
    shown, clicks, t = {}, [], 1.0e9
    for u in range(2 * users):
        variant = ("control", "challenger")[u % 2]
        version = "1" if variant == "control" else "2"
        for r in range(2):
            rid = f"{name}-{u}-{r}"
            t += 1
            shown[rid] = Impression(
                rid, t, name, variant, f"models:/m/{version}", version, f"u{u}", "user",
                f"u{u}", None, ITEMS, 20.0 + r,
            )  # fmt: skip
            for p in np.flatnonzero(rng.random(10) < ctr[variant]):
                clicks.append((rid, Event(f"u{u}", ITEMS[p], "click")))
    log.record(shown.values())
    log.record_events(attribute(clicks, shown))
    return ["--experiment", name, "--state", str(tmp / "state" / "impressions.sqlite"),
            "--impressions", str(tmp / "impressions"), "--bootstrap", "200"]  # fmt: skip


def test_the_report_logs_a_run_tagged_with_both_versions(store, capsys):
    import experiment_report

    log = write_log(store["tmp"], "win", {"control": 0.05, "challenger": 0.10})
    assert experiment_report.main([*store["args"], *log]) == 0
    out = capsys.readouterr().out
    assert "| control | 1 | 300 | 600 | 6000 |" in out
    assert "challenger vs control: CTR" in out and "challenger is BETTER" in out
    mlflow.set_tracking_uri(store["uri"])
    (run,) = mlflow.search_runs(experiment_names=["llmrec-online"], output_format="list")
    tags = run.data.tags
    assert (tags["llmrec.control_version"], tags["llmrec.challenger_version"]) == ("1", "2")
    assert tags["llmrec.experiment"] == "win" and tags["llmrec.decision.challenger"] == "better"
    assert run.data.metrics["control/impressions"] == 6000
    assert run.data.metrics["challenger_vs_control/low"] > 0
    files = {f.path for f in mlflow.MlflowClient().list_artifacts(run.info.run_id, "experiment")}
    assert "experiment/cumulative_difference.png" in files
    assert "experiment/ctr_by_position.csv" in files


def test_promote_on_a_significant_win_only(store, capsys):
    import promote

    mlflow.set_tracking_uri(store["uri"])
    tie = write_log(store["tmp"], "tie", {"control": 0.08, "challenger": 0.08}, seed=1)
    assert promote.main([*store["args"], *tie]) == 0
    out = capsys.readouterr().out
    assert "experiment tie: no significant win, champion unchanged" in out
    assert "NOT YET DISTINGUISHABLE" in out and "users in all would detect" in out
    assert aliases.current_champion("m") == "1"
    win = write_log(store["tmp"], "win", {"control": 0.05, "challenger": 0.10}, seed=2)
    assert promote.main([*store["args"], *win]) == 0
    out = capsys.readouterr().out
    assert "version 2 of m becomes champion" in out and "champion is version 2" in out
    assert aliases.current_champion("m") == "2"
    lose = write_log(store["tmp"], "lose", {"control": 0.10, "challenger": 0.05}, seed=3)
    assert promote.main([*store["args"], *lose]) == 0
    assert "challenger is WORSE" in capsys.readouterr().out
    assert aliases.current_champion("m") == "2"


def test_a_report_of_an_unknown_experiment_says_so(store, capsys):
    import experiment_report

    write_log(store["tmp"], "win", {"control": 0.05, "challenger": 0.10}, users=5)
    args = ["--experiment", "nope", "--state", str(store["tmp"] / "state" / "impressions.sqlite"),
            "--impressions", str(store["tmp"] / "impressions")]  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        experiment_report.main([*store["args"], *args, "--no-mlflow"])
    assert exc.value.code != 0
    assert "no answers of experiment 'nope' in the log" in capsys.readouterr().err
