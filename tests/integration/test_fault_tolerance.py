"""A training worker killed mid-epoch: the run restarts from its last checkpoint, finishes
with the right epoch count and matches an uninterrupted run; --resume continues a run."""

import os
import signal
import threading
import time

import finetune  # jobs/finetune.py
import mlflow
import psutil
import pytest
from mlflow import MlflowClient

pytestmark = pytest.mark.slow


def _uri(root):
    return f"sqlite:///{root / 'mlflow.db'}"


def _args(trained, root, run_name=None, **extra):
    # same data, model and seed as the `trained` run; its own storage and registry
    replaced = ("train.storage_path", "train.run_name", "data.work_dir", "registry.")
    overrides = [o for o in trained["overrides"] if not o.startswith(replaced)]
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


def _train_worker_pids() -> list[int]:
    """The processes of the Ray Train workers (Ray titles them ``ray::RayTrainWorker...``)."""
    pids = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if cmd.startswith("ray::RayTrainWorker"):
            pids.append(proc.info["pid"])
    return sorted(pids)


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


def test_killed_worker_restarts_from_checkpoint_and_matches_uninterrupted_run(trained, tmp_path):
    result: dict = {}
    job = threading.Thread(
        target=lambda: result.setdefault("rc", finetune.main(_args(trained, tmp_path, "faulty")))
    )
    job.start()
    run_dir = tmp_path / "train" / "faulty"
    deadline = time.time() + 600
    while not any(run_dir.glob("checkpoint_*")) and time.time() < deadline:
        time.sleep(0.5)  # wait for the epoch-1 checkpoint: epoch 2 is then under way
    assert any(run_dir.glob("checkpoint_*")), "no checkpoint after epoch 1"
    workers = _train_worker_pids()
    assert len(workers) == 2, workers
    os.kill(workers[-1], signal.SIGKILL)
    job.join(timeout=900)
    assert result.get("rc") == 0

    client, run = _latest_run(_uri(tmp_path), "faulty")
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
    assert steps == [1, 2]  # epoch 1 from the checkpoint, epoch 2 redone once
    _, clean = _latest_run(trained["tracking_uri"], "test-run")
    faulty_ndcg = run.data.metrics["val_ndcg_at_10"]
    clean_ndcg = clean.data.metrics["val_ndcg_at_10"]
    assert abs(faulty_ndcg - clean_ndcg) < 0.02, (faulty_ndcg, clean_ndcg)

    # --resume continues the stopped run: one more epoch from its last checkpoint
    args = _args(trained, tmp_path, train__epochs=3)
    assert finetune.main([*args, "--resume", "faulty"]) == 0
    client, resumed = _latest_run(_uri(tmp_path), "faulty")
    assert resumed.info.run_id != run.info.run_id
    assert [m.step for m in client.get_metric_history(resumed.info.run_id, "train_loss")] == [
        1,
        2,
        3,
    ]


def test_resume_of_an_unknown_run_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        finetune.main(["--resume", "nope", "--set", f"train.storage_path={tmp_path}"])
    assert "--resume nope: no such run" in capsys.readouterr().err
