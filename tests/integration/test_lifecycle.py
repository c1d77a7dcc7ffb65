"""Promotion gate, rollback and the model card, read back through MLflow's client API."""

import mlflow
import promote  # jobs/promote.py
import pytest
from llmrec.config import RegistryConfig
from llmrec.registry import aliases, runs
from llmrec.registry import store as registry
from llmrec.workflows import promotion
from mlflow import MlflowClient

pytestmark = pytest.mark.slow
NAME = "lifecycle-test"


@pytest.fixture(scope="module")
def bundle(trained, tmp_path_factory):
    mlflow.set_tracking_uri(trained["tracking_uri"])
    _, path = registry.download_bundle("models:/llmrec-scorer/1", tmp_path_factory.mktemp("b"))
    return path


def _register(trained, bundle, ndcg, fingerprint="same"):
    cfg = RegistryConfig(tracking_uri=trained["tracking_uri"], model_name=NAME)
    return runs.log_and_register(
        cfg,
        run_name=f"ndcg-{ndcg}",
        params={},
        history=[],
        metrics={"val_ndcg_at_10": ndcg},
        bundle_dir=bundle,
        model_card="card",
        tags={"dataset_fingerprint": fingerprint},
    )


def test_gate_promotes_only_a_better_candidate_and_rollback_restores(trained, bundle, capsys):
    cfg = RegistryConfig(tracking_uri=trained["tracking_uri"], model_name=NAME, promote_margin=0.01)
    first = _register(trained, bundle, 0.10)
    assert first.aliases == ("candidate", "champion")  # no champion yet: it becomes one

    worse = _register(trained, bundle, 0.105)  # better, but not by the margin
    decision = promotion.promotion_gate(cfg, worse.version)
    assert not decision.promoted
    assert (
        "does not beat champion 1 0.1000 by more than 0.01; champion unchanged" in decision.reason
    )
    assert aliases.current_champion(NAME) == first.version

    other_data = _register(trained, bundle, 0.50, fingerprint="other")
    decision = promotion.promotion_gate(cfg, other_data.version)
    assert not decision.promoted and "evaluated on different data" in decision.reason

    better = _register(trained, bundle, 0.13)
    decision = promotion.promotion_gate(cfg)  # the alias `candidate` points at it
    assert decision.promoted and decision.candidate == better.version
    assert registry.get_version(NAME, better.version).aliases == ("candidate", "champion")
    assert MlflowClient().get_registered_model(NAME).tags[aliases.HISTORY_TAG] == "1,4"

    args = [
        "--set",
        f"registry.tracking_uri={trained['tracking_uri']}",
        "--set",
        f"registry.model_name={NAME}",
    ]
    assert promote.main([*args, "--rollback"]) == 0
    assert "champion rolled back from version 4 to version 1" in capsys.readouterr().out
    assert aliases.current_champion(NAME) == "1"
    with pytest.raises(SystemExit):
        promote.main([*args, "--rollback"])  # nothing older than version 1
    assert "no earlier champion to roll back to" in capsys.readouterr().err


def test_version_card_tags_and_evaluation_table(trained):
    mlflow.set_tracking_uri(trained["tracking_uri"])
    client = MlflowClient()
    version = client.get_model_version("llmrec-scorer", "1")
    for key in ("dataset_fingerprint", "git_commit", "base_model", "adapter", "objective"):
        assert version.tags[key], key
    assert version.tags["objective"] == "next-item softmax over the catalogue, every position"
    card = version.description
    assert "trainable parameters" in card and "**Reproduce**" in card
    assert f"fingerprint `{version.tags['dataset_fingerprint']}`" in card
    table = mlflow.artifacts.load_text(f"runs:/{version.run_id}/evaluation/table.md")
    assert "| llm | val |" in table and "| llm | test |" in table and "coverage" in table
    assert "miscalibration" in table and "tail_share" in table
    # the group section: activity quartiles of the 120 demo users (30 each), per method
    assert "## Quality across user groups (test split)" in table
    assert table.count("| activity | Q") == 8  # 4 quartiles x (NDCG@10 and HR@10 tables)
    assert "| activity | NDCG@10 | hybrid |" in table
    workers = mlflow.artifacts.load_dict(f"runs:/{version.run_id}/train/workers.json")
    assert [len(e["workers"]) for e in workers["epochs"]] == [2] * 10


def test_init_from_reads_the_registered_adapter_and_checks_compatibility(trained):
    import torch
    from llmrec.config import load_config
    from llmrec.modeling.sequential import load_trained
    from llmrec.registry.bundle import ModelBundle
    from llmrec.workflows.finetune import IncompatibleInitError, init_weights

    base = [o for o in trained["overrides"] if o.startswith(("model.", "registry."))]
    cfg = load_config(None, [*base, "train.init_from=models:/llmrec-scorer@champion"])
    _, path = registry.download_bundle("models:/llmrec-scorer@champion")
    catalogue = ModelBundle(path).catalogue
    state = init_weights(cfg, catalogue)
    expected = load_trained(path / "scorer")
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[k], expected[k]) for k in state)
    # a catalogue in another order (one item more): ID rows follow the item ids
    ids = ("new-item", *reversed(catalogue.ids))
    moved = init_weights(cfg, type(catalogue)(ids=ids, items=catalogue.items))
    table = "sequential.item_ids.weight"
    assert torch.equal(moved[table][0], torch.zeros_like(moved[table][0]))
    assert torch.equal(moved[table][1], expected[table][len(catalogue) - 1])

    wrong = load_config(
        None, [*base, "model.dim=32", "train.init_from=models:/llmrec-scorer@champion"]
    )
    with pytest.raises(IncompatibleInitError, match=r"model\.dim=64, this run has 32"):
        init_weights(wrong, catalogue)


def test_a_running_experiment_keeps_its_aliases_until_it_ends(trained, bundle, tmp_path, capsys):
    """promote.py --alias challenger sets what an experiment's arm follows; while the
    experiment runs (serving's impression log), neither the gate nor --alias moves the
    aliases its variants follow, and --force or the experiment's end lets them move."""
    from llmrec.api.experiment import ExperimentSpec
    from llmrec.experiments.impressions import ImpressionLog

    name = "lifecycle-experiment"
    cfg = RegistryConfig(tracking_uri=trained["tracking_uri"], model_name=name)

    def register(ndcg):
        return runs.log_and_register(
            cfg, run_name=f"ndcg-{ndcg}", params={}, history=[],
            metrics={"val_ndcg_at_10": ndcg}, bundle_dir=bundle, model_card="card",
            tags={"dataset_fingerprint": "same"},
        )  # fmt: skip

    champion, challenger, better = register(0.10), register(0.11), register(0.20)
    args = ["--set", f"registry.tracking_uri={trained['tracking_uri']}",
            "--set", f"registry.model_name={name}"]  # fmt: skip
    assert promote.main([*args, "--alias", "challenger", "--version", challenger.version]) == 0
    assert f"challenger moved from not set to version {challenger.version}" in (
        capsys.readouterr().out
    )
    state = tmp_path / "serve" / "impressions.sqlite"
    log = ImpressionLog(state, tmp_path / "impressions")
    log.experiments.set(
        ExperimentSpec(
            name="ab",
            variants=[
                {"name": "control", "model_uri": f"models:/{name}@champion", "weight": 0.9},
                {"name": "challenger", "model_uri": f"models:/{name}@challenger", "weight": 0.1},
            ],
        )
    )
    guarded = [*args, "--state", str(state)]
    assert promote.main(guarded) == 0  # the candidate (0.20) wins, but champion stays
    out = capsys.readouterr().out
    assert "champion not moved: experiment ab is running and its variant control" in out
    assert aliases.current_champion(name) == champion.version
    with pytest.raises(SystemExit):
        promote.main([*guarded, "--alias", "challenger", "--version", better.version])
    assert "variant challenger follows" in capsys.readouterr().err
    assert promote.main([*guarded, "--alias", "challenger", "--version", better.version,
                         "--force"]) == 0  # fmt: skip
    assert registry.resolve(f"models:/{name}@challenger").version == better.version
    log.experiments.set(None)  # DELETE /admin/experiment
    assert promote.main(guarded) == 0
    assert aliases.current_champion(name) == better.version
