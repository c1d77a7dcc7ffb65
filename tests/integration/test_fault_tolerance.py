"""A training worker killed mid-run: the run restarts from its last checkpoint, finishes
with the right epoch count and matches an uninterrupted run; --resume continues a run.

The model is the session's tiny random base (2 layers, hidden 32): what is tested is the
recovery, which does not depend on the model's size, at a fraction of MiniLM's time. The
victim is found through the run itself (the worker actors its epoch-1 checkpoint names),
never by process name across the machine."""

import json
import os
import signal
import threading
import time

import finetune  # jobs/finetune.py
import mlflow
import pytest
from mlflow import MlflowClient

pytestmark = pytest.mark.slow


def _uri(root):
    return f"sqlite:///{root / 'mlflow.db'}"


def _args(trained, root, run_name=None, base=None, **extra):
    # same data and seed as the `trained` run (``base``: another base model); its own storage
    # and registry
    replaced = ("train.storage_path", "train.run_name", "data.work_dir", "registry.")
    overrides = [o for o in trained["overrides"] if not o.startswith(replaced)]
    if base:
        overrides.append(f"model.base={base}")
    overrides += [
        f"train.storage_path={root / 'train'}",
        f"data.work_dir={root / 'data'}",
        f"registry.tracking_uri={_uri(root)}",
        f"registry.artifact_location={root / 'mlartifacts'}",
    ]
    if run_name:
        overrides.append(f"train.run_name={run_name}")
    overrides += [f"{k.replace('__', '.')}={v}" for k, v in extra.items()]
    return [a for o in overrides for a in ("--set", o)]


def _epoch_one_workers(run_dir, deadline: float) -> list[dict]:
    """The workers of the run's epoch-1 checkpoint (rank, actor id, pid), as soon as Ray
    Train has registered that checkpoint (a restart resumes from it): found through the run's
    own actors, not by process name."""
    snapshot = run_dir / "checkpoint_manager_snapshot.json"
    while time.time() < deadline:
        try:
            results = json.loads(snapshot.read_text())["checkpoint_results"]
            (first,) = [r for r in results if r["metrics"]["epoch"] == 1]
            state = run_dir / first["checkpoint_dir_name"] / "train_state.json"
            return json.loads(state.read_text())["history"][0]["workers"]
        except (OSError, ValueError, KeyError):
            time.sleep(0.05)  # not registered yet, or still being written
    raise AssertionError(f"no registered epoch-1 checkpoint under {run_dir}")


def _latest_run(tracking_uri, run_name):
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient()
    exp = client.get_experiment_by_name("llmrec")
    (run,) = client.search_runs(
        [exp.experiment_id],
        f"attributes.run_name = '{run_name}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return client, run


def test_killed_worker_restarts_from_checkpoint_and_matches_uninterrupted_run(
    trained, tiny_base, tmp_path
):
    epochs = {"train__epochs": 3}  # the kill lands in epoch 2 or 3
    clean_root = tmp_path / "clean"
    assert finetune.main(_args(trained, clean_root, "clean", tiny_base, **epochs)) == 0
    result: dict = {}
    args = _args(trained, tmp_path, "faulty", tiny_base, **epochs)
    job = threading.Thread(target=lambda: result.setdefault("rc", finetune.main(args)))
    job.start()
    workers = _epoch_one_workers(tmp_path / "train" / "faulty", time.time() + 600)
    assert len(workers) == 2 and all(w["actor_id"] for w in workers), workers
    victim = workers[-1]["pid"]
    os.kill(victim, signal.SIGKILL)  # a later epoch is under way
    assert job.is_alive()  # killed during the run, not after it
    job.join(timeout=900)
    assert result.get("rc") == 0

    client, run = _latest_run(_uri(tmp_path), "faulty")
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
    assert steps == [1, 2, 3]  # each epoch once: the restart resumed, it did not redo
    placement = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/train/workers.json")
    pids = [{w["pid"] for w in epoch["workers"]} for epoch in placement["epochs"]]
    assert victim in pids[0] and victim not in pids[-1]  # new workers after the restart
    _, clean = _latest_run(_uri(clean_root), "clean")
    faulty_ndcg = run.data.metrics["val_ndcg_at_10"]
    clean_ndcg = clean.data.metrics["val_ndcg_at_10"]
    assert abs(faulty_ndcg - clean_ndcg) < 0.02, (faulty_ndcg, clean_ndcg)

    # --resume continues the stopped run: one more epoch from its last checkpoint
    args = _args(trained, tmp_path, base=tiny_base, train__epochs=4)
    assert finetune.main([*args, "--resume", "faulty"]) == 0
    client, resumed = _latest_run(_uri(tmp_path), "faulty")
    assert resumed.info.run_id != run.info.run_id
    history = client.get_metric_history(resumed.info.run_id, "train_loss")
    assert [m.step for m in history] == [1, 2, 3, 4]


def test_resume_of_an_unknown_run_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        finetune.main(["--resume", "nope", "--set", f"train.storage_path={tmp_path}"])
    assert "--resume nope: no such run" in capsys.readouterr().err
