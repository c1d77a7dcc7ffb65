"""Aliases set by hand (`jobs/promote.py --alias challenger --version N`) and the guard that
keeps a running online experiment's aliases still (`guard.experiment_guard`): the
experiment is read from serving's impression log, written here with its own API; the
registry is a real MLflow one (sqlite, versions without artifacts)."""

from __future__ import annotations

import itertools

import pytest
from llmrec.api.experiment import ExperimentSpec
from llmrec.config import RegistryConfig
from llmrec.experiments import guard
from llmrec.experiments.impressions import ImpressionLog
from llmrec.registry import aliases
from llmrec.registry import store as registry
from llmrec.workflows import promotion

NAMES = (f"m{k}" for k in itertools.count())


def start(path, name="ab", model="m", control="champion", challenger="challenger"):
    """What serving keeps when an experiment starts (``PUT /admin/experiment``)."""
    spec = ExperimentSpec(
        name=name,
        variants=[
            {"name": "control", "model_uri": f"models:/{model}@{control}", "weight": 0.9},
            {"name": "challenger", "model_uri": f"models:/{model}@{challenger}", "weight": 0.1},
        ],
    )
    log = ImpressionLog(path, path.parent / "segments")
    log.experiments.set(spec)
    return log


# -- the guard -------------------------------------------------------------------------------


def test_the_guard_names_the_experiment_the_variant_and_the_alias(tmp_path):
    state = tmp_path / "serve" / "impressions.sqlite"
    start(state)
    held = guard.experiment_guard(state, "m", "champion")
    assert held is not None and "\n" not in held
    assert held.startswith("champion not moved: experiment ab is running")
    assert "its variant control follows models:/m@champion" in held
    assert "DELETE /admin/experiment" in held and "--force" in held
    assert "variant challenger follows models:/m@challenger" in (
        guard.experiment_guard(state, "m", "challenger") or ""
    )
    # what no variant follows moves freely: another alias, another model, the decided one
    assert guard.experiment_guard(state, "m", "candidate") is None
    assert guard.experiment_guard(state, "other", "champion") is None
    assert guard.experiment_guard(state, "m", "champion", allow="ab") is None
    assert guard.experiment_guard(state, "m", "champion", allow="other") is not None


def test_no_experiment_no_file_or_pinned_versions_hold_nothing(tmp_path):
    missing = tmp_path / "nowhere" / "impressions.sqlite"
    assert guard.experiment_guard(missing, "m", "champion") is None
    assert guard.experiment_guard(None, "m", "champion") is None
    assert not missing.parent.exists()  # reading the state creates nothing
    state = tmp_path / "impressions.sqlite"
    log = ImpressionLog(state, tmp_path / "segments")
    log.experiments.set(
        ExperimentSpec(
            name="pinned",
            variants=[
                {"name": "control", "model_uri": "models:/m/1", "weight": 1.0},
                {"name": "challenger", "model_uri": "models:/m/2", "weight": 1.0},
            ],
        )
    )
    assert guard.experiment_guard(state, "m", "champion") is None
    start(state)
    assert guard.experiment_guard(state, "m", "champion") is not None
    log.experiments.set(None)  # DELETE /admin/experiment
    assert guard.experiment_guard(state, "m", "champion") is None


def test_a_state_file_that_is_no_impression_log_is_one_clear_error(tmp_path):
    bad = tmp_path / "impressions.sqlite"
    bad.write_text("not sqlite at all " * 200)
    with pytest.raises(guard.ExperimentStateError, match="cannot read the running experiment"):
        guard.experiment_guard(bad, "m", "champion")


def test_a_variant_following_candidate_is_warned_about(tmp_path):
    state = tmp_path / "impressions.sqlite"
    version = registry.RegisteredVersion("m", "7", "", ("candidate",))
    assert guard.candidate_warning(state, version) is None
    start(state, challenger="candidate")
    warning = guard.candidate_warning(state, version)
    assert warning is not None and warning.startswith("warning: variant challenger")
    assert "version 7 answers for it now" in warning and "--alias challenger" in warning


def test_the_alias_names_that_cannot_be_set_by_hand():
    assert aliases.alias_problem("challenger") is None
    assert "python jobs/promote.py" in (aliases.alias_problem("champion") or "")
    assert "python jobs/promote.py" in (aliases.alias_problem("Champion") or "")
    assert aliases.alias_problem("has space") is not None
    assert aliases.alias_problem("latest") is not None
    assert aliases.alias_problem("v3") is not None


# -- a real registry -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    import mlflow

    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    return {"uri": uri, "root": root}


@pytest.fixture
def model(store):
    """A registered model of three versions, version 1 champion and 3 candidate."""
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(store["uri"])
    name = next(NAMES)
    client = MlflowClient()
    client.create_registered_model(name)
    for n in (1, 2, 3):
        source = store["root"] / name / str(n)
        source.mkdir(parents=True)
        client.create_model_version(name, source.as_uri())
    aliases.set_champion(name, "1")
    client.set_registered_model_alias(name, aliases.CANDIDATE, "3")
    args = ["--set", f"registry.tracking_uri={store['uri']}", "--set",
            f"registry.artifact_location={store['root'] / 'art'}", "--set",
            f"registry.model_name={name}"]  # fmt: skip
    return {"name": name, "args": args}


def promote_main(argv):
    import promote  # jobs/promote.py

    return promote.main(argv)


def test_promote_sets_an_alias_and_says_where_it_pointed(model, capsys):
    name, args = model["name"], model["args"]
    assert promote_main([*args, "--alias", "challenger"]) == 0
    assert capsys.readouterr().out.strip() == f"{name}: challenger is not set"
    assert promote_main([*args, "--alias", "challenger", "--version", "2"]) == 0
    assert capsys.readouterr().out.strip() == f"{name}: challenger moved from not set to version 2"
    assert promote_main([*args, "--alias", "challenger", "--version", "3"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == f"{name}: challenger moved from version 2 to version 3"
    assert registry.resolve(f"models:/{name}@challenger").version == "3"
    assert promote_main([*args, "--alias", "challenger", "--version", "3"]) == 0
    assert capsys.readouterr().out.strip() == f"{name}: challenger is already version 3"
    assert promote_main([*args, "--alias", "challenger"]) == 0
    assert capsys.readouterr().out.strip() == f"{name}: challenger is version 3"
    assert aliases.current_champion(name) == "1"  # nothing else moved


def test_an_unknown_version_or_champion_is_refused_in_one_line(model, capsys):
    name, args = model["name"], model["args"]
    with pytest.raises(SystemExit) as exc:
        promote_main([*args, "--alias", "challenger", "--version", "9"])
    assert exc.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {name} has no version 9 at ")
    assert line.endswith("(registered: 1, 2, 3)")
    with pytest.raises(SystemExit):
        promote_main([*args, "--alias", "champion", "--version", "3"])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "moves only through the promotion gate: python jobs/promote.py" in line
    assert aliases.current_champion(name) == "1"
    with pytest.raises(SystemExit):
        promote_main([*args, "--version", "3"])
    assert "--version goes with --alias NAME" in capsys.readouterr().err
    with pytest.raises(aliases.AliasError):
        aliases.set_alias(name, "champion", "3")


def test_an_alias_a_running_experiment_follows_moves_only_with_force(model, tmp_path, capsys):
    name, args = model["name"], model["args"]
    state = tmp_path / "impressions.sqlite"
    aliases.set_alias(name, "challenger", "2")
    start(state, model=name)
    move = [*args, "--alias", "challenger", "--version", "3", "--state", str(state)]
    with pytest.raises(SystemExit) as exc:
        promote_main(move)
    assert exc.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"experiment ab is running and its variant challenger follows models:/{name}@" in line
    assert registry.resolve(f"models:/{name}@challenger").version == "2"
    with pytest.raises(SystemExit):  # the control follows champion: no rollback either
        promote_main([*args, "--rollback", "--state", str(state)])
    assert "champion not moved: experiment ab is running" in capsys.readouterr().err
    assert promote_main([*move, "--force"]) == 0
    assert "challenger moved from version 2 to version 3" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # an explicit state that is not there
        promote_main([*args, "--alias", "challenger", "--version", "2", "--state",
                      str(tmp_path / "missing.sqlite")])  # fmt: skip
    assert "missing.sqlite: no such file" in capsys.readouterr().err


def test_the_gate_keeps_a_champion_a_running_experiment_follows(model, store, tmp_path):
    name = model["name"]
    cfg = RegistryConfig(tracking_uri=store["uri"], model_name=name)
    state = tmp_path / "impressions.sqlite"
    log = start(state, model=name)
    scores = {"3": 0.5, "1": 0.1}  # the candidate wins clearly
    decision = promotion.promotion_gate(cfg, "3", scores, state)
    assert not decision.promoted and decision.held is not None
    assert decision.reason.startswith("version 3 val_ndcg_at_10 0.5000 beats champion 1")
    assert "champion not moved: experiment ab is running and its variant control" in (
        decision.reason
    )
    assert aliases.current_champion(name) == "1"
    assert registry.resolve(f"models:/{name}@candidate").version == "3"  # still registered
    log.experiments.set(None)  # the experiment ended
    decision = promotion.promotion_gate(cfg, "3", scores, state)
    assert decision.promoted and decision.held is None
    assert aliases.current_champion(name) == "3"


def test_finetune_alias_is_checked_before_training_and_set_after(model, tmp_path, capsys):
    import finetune  # jobs/finetune.py

    name = model["name"]
    state = tmp_path / "impressions.sqlite"
    new = registry.get_version(name, "3")
    assert finetune._set_alias(new, "challenger", str(state)) == (
        f"{name}: challenger moved from not set to version 3",
        None,
    )
    log = start(state, model=name)
    with pytest.raises(SystemExit):  # before training: stop, nothing trained
        finetune._check_alias(name, "challenger", str(state))
    assert "or train without --alias" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        finetune._check_alias(name, "champion", None)
    assert "moves only through the promotion gate" in capsys.readouterr().err
    moved, refused = finetune._set_alias(registry.get_version(name, "2"), "challenger", str(state))
    assert moved is None and refused is not None
    assert "variant challenger follows" in refused
    assert "later, python jobs/promote.py --alias challenger --version 2" in refused
    assert registry.resolve(f"models:/{name}@challenger").version == "3"
    log.experiments.set(None)
    finetune._check_alias(name, "challenger", str(state))  # nothing holds it now
