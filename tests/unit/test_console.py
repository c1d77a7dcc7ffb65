"""The console: quiet by default, one-line errors, a progress line for terminals and logs."""

from __future__ import annotations

import io
import logging
import os
import sys
import warnings

import pytest
from llmrec import console


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_in_a_log_prints_a_few_lines_with_rate_and_eta():
    clock, out = Clock(), io.StringIO()
    progress = console.Progress(100, "epoch 1/2", unit="batch", stream=out, clock=clock)
    for _ in range(100):
        clock.now += 0.5
        progress.update(loss="0.41")
    progress.close()
    lines = out.getvalue().splitlines()
    assert lines == [
        "epoch 1/2  25/100 batch  2.0 batch/s  ETA 0:38  loss 0.41",
        "epoch 1/2  50/100 batch  2.0 batch/s  ETA 0:25  loss 0.41",
        "epoch 1/2  75/100 batch  2.0 batch/s  ETA 0:12  loss 0.41",
        "epoch 1/2  100/100 batch  2.0 batch/s  in 0:50  loss 0.41",
    ]


def test_progress_on_a_terminal_redraws_one_line():
    clock, out = Clock(), Tty()
    with console.Progress(10, "encode", stream=out, clock=clock, min_interval=1.0) as progress:
        for _ in range(10):
            clock.now += 0.25
            progress.update()
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\x1b[K\n")
    draws = [d for d in text.split("\r") if d]
    assert draws[0].startswith("encode  1/10 it  4.0 it/s  ETA 0:02")
    assert draws[-1].startswith("encode  10/10 it  4.0 it/s  in 0:02")
    assert len(draws) == 4  # at most one redraw a second (t = 0.25, 1.25, 2.25) + the end


def test_progress_without_a_total_counts_and_gives_no_eta():
    clock, out = Clock(), io.StringIO()
    progress = console.Progress(None, "read", unit="rows", stream=out, clock=clock)
    clock.now = 2.0
    progress.update(500)
    assert progress.line() == "read  500 rows  250.0 rows/s"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No console variables set; whatever setup() sets is undone after the test."""
    for key in (*console.QUIET_ENV, *console.ALWAYS_ENV, console.VERBOSE_ENV):
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)
    monkeypatch.setattr(console, "_set_by_us", {})
    return monkeypatch


def test_setup_quiets_libraries_but_keeps_user_settings(clean_env):
    monkeypatch = clean_env
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "info")  # the user's choice wins
    console.setup(verbose=False)
    assert os.environ["TRANSFORMERS_VERBOSITY"] == "info"
    assert os.environ["RAY_TRAIN_ENABLE_PRINT_PATCH"] == "0"
    assert "Failed to query Ray Train Controller" in os.environ["RAY_DEDUP_LOGS_SKIP_REGEX"]
    assert logging.getLogger("ray._private.authentication").level == logging.ERROR
    assert console.train_log_level() == "WARNING"
    options = console.ray_init_options()
    assert options["runtime_env"]["worker_process_setup_hook"] == "llmrec.console.setup_worker"
    assert "TRANSFORMERS_VERBOSITY" not in options["runtime_env"]["env_vars"]
    shown = []
    monkeypatch.setattr(console, "_show_warning", lambda *a, **k: shown.append(a[1]))
    console.setup_worker()
    warnings.showwarning("old api", FutureWarning, "x.py", 1)
    warnings.showwarning("check this", UserWarning, "x.py", 1)
    assert shown == [UserWarning]


def test_setup_quiets_transformers_imported_before_it():
    """A job that imports transformers before setup() (it reads its switches at import):
    no "Loading weights" progress bars, no info lines."""
    import subprocess

    code = (
        "import transformers\n"
        "from transformers.utils import logging as tl\n"
        "from llmrec import console\n"
        "assert tl.is_progress_bar_enabled()\n"
        "console.setup(verbose=False)\n"
        "print(tl.is_progress_bar_enabled(), tl.get_verbosity())\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in console.QUIET_ENV}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", str(logging.ERROR)]


def test_verbose_leaves_everything_on(clean_env):
    console.setup(verbose=True)
    assert "RAY_DEDUP_LOGS_SKIP_REGEX" not in os.environ
    assert console.train_log_level() == "INFO"
    assert "worker_process_setup_hook" not in console.ray_init_options()["runtime_env"]


def test_errors_end_the_job_in_one_line(capsys):
    from llmrec.config import ConfigError

    with pytest.raises(SystemExit) as exit_info, console.report_errors():
        raise ConfigError("x.yaml: train.lr must be > 0, got -1")
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: x.yaml: train.lr must be > 0, got -1\n"
    with pytest.raises(SystemExit) as exit_info, console.report_errors():
        raise KeyError("boom")
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: KeyError: 'boom' (run again with --verbose")
    with pytest.raises(KeyError), console.report_errors(verbose=True):
        raise KeyError("boom")


def test_registration_notes_are_dropped_and_the_rest_of_stderr_kept(capsys, monkeypatch):
    from llmrec.registry import runs

    monkeypatch.delenv(console.VERBOSE_ENV, raising=False)
    with runs._without_registration_notes():
        print("Successfully registered model 'x'.", file=sys.stderr)
        print("Created version '1' of model 'x'.", file=sys.stderr)
        print("a warning the user should see", file=sys.stderr)
    assert capsys.readouterr().err == "a warning the user should see\n"
    monkeypatch.setenv(console.VERBOSE_ENV, "1")
    with runs._without_registration_notes():
        print("Created version '2' of model 'x'.", file=sys.stderr)
    assert "Created version '2'" in capsys.readouterr().err
