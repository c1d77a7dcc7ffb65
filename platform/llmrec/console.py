"""What the jobs print: quiet libraries by default, errors in one line, a progress line.

Every job calls :func:`setup` before it imports Ray, torch, transformers or MLflow (several
read their settings from the environment when imported) and runs its body inside
:func:`report_errors`. By default library chatter is off: Ray's internal INFO logs and
known-noise warnings, Ray Data's execution logs and progress bars, transformers' loading
bars, MLflow's database and artifact messages, deprecation warnings (in every Ray worker
too, through a ``worker_process_setup_hook``). ``--verbose`` (``setup(verbose=True)``) leaves
everything on. Errors are never hidden: an error ends the job with one line naming it
(the traceback with ``--verbose``).

This module imports only the standard library: Ray workers import it at start-up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator
from typing import Any, NoReturn, TextIO

VERBOSE_ENV = "LLMREC_VERBOSE"
"""``1`` once :func:`setup` ran with ``verbose=True`` (read by :func:`is_verbose`)."""

ALWAYS_ENV = {
    "HF_HUB_OFFLINE": "1",  # weights ship in a package; nothing is downloaded
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_TRAIN_V2_ENABLED": "1",
    # Ray Train V2 sends a worker's print() through logging and, as Ray wraps the
    # worker's stdout, prints it too: every line of the training loop showed twice.
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
}
"""Environment every job runs with (values already set by the user win)."""

NOISE = (
    # Ray Train's placement-group cleaner polls the state API, which needs the dashboard.
    "Failed to query Ray Train Controller actor state",
    # The raylet, when Ray Train and Ray Data start their workers together.
    "PYTHON worker processes have been started on node",
    # Ray Train's controller (a C++ log line about its own actor).
    "has constructor arguments in the object store and max_restarts",
    # Ray Data, once per process, when its progress bars are off (they are, in logs).
    "Progress bars disabled. To enable",
    # Ray Train, per worker and epoch: logged under a file-path logger name, so the level
    # of RunConfig(logging_config) (which hides Ray Train's other INFO lines) misses it.
    r"Reporting training result \d+: TrainingReport",
    # The GCS, when a finished Ray Data actor is killed a second time at shutdown.
    "Failed to kill actor",
)
"""Lines that Ray forwards from its processes and that a user can do nothing about: dropped
by default (``RAY_DEDUP_LOGS_SKIP_REGEX``), shown with ``--verbose``."""

QUIET_ENV = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # "Loading weights" bars of transformers
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "MLFLOW_LOGGING_LEVEL": "ERROR",  # database set-up, signature inference
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
    "RAY_DATA_LOG_LEVEL": "WARNING",  # "Starting execution of Dataset ..." per epoch
    "RAY_DEDUP_LOGS_SKIP_REGEX": "|".join(NOISE),
    # "(RayTrainWorker pid=3985)" before every forwarded line: the epoch lines read alone
    "RAY_DISABLE_WORKER_LOG_PREFIX": "1",
    # PyTorch's C++ warnings (DDP's "find_unused_parameters=True ... did not find any unused
    # parameters" once per worker): they bypass Python's warnings module
    "TORCH_CPP_LOG_LEVEL": "ERROR",
}
"""Environment that silences library chatter (not set with ``--verbose``)."""

QUIET_LOGGERS = {
    # Ray's driver-side start-up notes ("Started a local Ray instance", token set-up).
    "ray._private.worker": logging.WARNING,
    "ray._private.authentication": logging.ERROR,
    # "Progress bars disabled. To enable, set ..." (we disabled them)
    "ray.data._internal.progress": logging.ERROR,
}
"""Logger levels set by default (the loggers' owners do not reset them later)."""

QUIET_WARNINGS: tuple[type[Warning], ...] = (DeprecationWarning, FutureWarning)
"""Warning categories hidden by default: they are addressed to this project's developers."""

WORKER_SETUP_HOOK = "llmrec.console.setup_worker"
"""Ray's ``worker_process_setup_hook``: quiets warnings in every Ray worker of a job."""

_set_by_us: dict[str, str] = {}
_show_warning = warnings.showwarning


def setup(verbose: bool = False) -> None:
    """Set up the environment, logging and warnings of a job (call it first).

    Args:
        verbose: Show every library log line, warning and progress bar.
    """
    env = dict(ALWAYS_ENV)
    if verbose:
        env[VERBOSE_ENV] = "1"
    else:
        env.update(QUIET_ENV)
    for key, value in env.items():
        if key not in os.environ:
            os.environ[key] = value
            _set_by_us[key] = value
    if verbose:
        warnings.showwarning = _show_warning
        return
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    _quiet_warnings()
    _quiet_loaded_libraries()


def is_verbose() -> bool:
    """Whether the job runs with ``--verbose``."""
    return os.environ.get(VERBOSE_ENV) == "1"


def train_log_level() -> str:
    """The level of Ray Train's own logs (``ray.train.LoggingConfig(log_level=...)``):
    ``INFO`` with ``--verbose``; else ``WARNING`` (no "Requesting resources", "Moving model
    to device", "Checkpoint successfully created" lines)."""
    return "INFO" if is_verbose() else "WARNING"


def ray_init_options() -> dict[str, Any]:
    """Keyword arguments for ``ray.init`` that match :func:`setup`.

    Ray workers get the environment that :func:`setup` set (a cluster joined through an
    address does not inherit the driver's) and, unless verbose, :data:`WORKER_SETUP_HOOK`.
    Worker output still reaches the driver (``log_to_driver``): training progress is
    printed there.
    """
    runtime_env: dict[str, Any] = {}
    if _set_by_us:
        runtime_env["env_vars"] = dict(_set_by_us)
    if not is_verbose():
        runtime_env["worker_process_setup_hook"] = WORKER_SETUP_HOOK
    return {
        "logging_level": logging.INFO if is_verbose() else logging.WARNING,
        "log_to_driver": True,
        "runtime_env": runtime_env,
    }


def setup_worker() -> None:
    """Ray's ``worker_process_setup_hook`` (:data:`WORKER_SETUP_HOOK`): runs in each worker
    process at start-up and hides the warnings :func:`setup` hides on the driver. Never
    raises: a failing hook would stop the worker."""
    with contextlib.suppress(Exception):
        _quiet_warnings()


def _quiet_loaded_libraries() -> None:
    # transformers and huggingface_hub read QUIET_ENV when imported: a job that imported
    # them before setup() ("Loading weights" bars) is quieted through their own switches.
    # A setting the user made in the environment is left as it is.
    bars = "HF_HUB_DISABLE_PROGRESS_BARS" in _set_by_us
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        if bars:
            transformers_logging.disable_progress_bar()
        if "TRANSFORMERS_VERBOSITY" in _set_by_us:
            transformers_logging.set_verbosity_error()
    if "huggingface_hub" in sys.modules and bars:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()


def _quiet_warnings() -> None:
    # A replaced showwarning holds whatever filters libraries insert later (Ray adds one
    # for its own deprecation warnings when imported).
    def show(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if not issubclass(category, QUIET_WARNINGS):
            _show_warning(message, category, *args, **kwargs)

    warnings.showwarning = show


@contextlib.contextmanager
def report_errors(verbose: bool = False) -> Iterator[None]:
    """End the job with one line on stderr for any error (exit status 2 for errors in the
    input or the environment, 1 for anything else); with ``verbose`` the traceback too.

    Errors of this library and ``OSError`` say only their message; others add their type
    and a hint to run again with ``--verbose``.
    """
    try:
        yield
    except KeyboardInterrupt:
        if verbose:
            raise
        fail("interrupted", status=130)
    except Exception as exc:
        if verbose:
            raise
        expected = type(exc).__module__.startswith("llmrec") or isinstance(exc, OSError)
        if expected:
            fail(one_line(exc))
        fail(
            f"{type(exc).__name__}: {one_line(exc)} (run again with --verbose for the traceback)", 1
        )


def fail(message: str, status: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``status``."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(status)


def one_line(exc: BaseException, limit: int = 400) -> str:
    """An exception's message on one line: its first line and, when the message spans more
    (remote tracebacks from Ray), its last one, where the root cause usually is."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    text = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Progress:
    """A text progress line with count, rate and ETA.

    On a terminal one line is redrawn in place (at most every ``min_interval`` seconds); in
    a log (a file, a pipe, a Ray worker's forwarded output) a line is printed each time
    another ``log_every`` share of the total is done, and at the end.

    Example::

        progress = Progress(len(loader), "epoch 2/3", unit="batch")
        for batch in loader:
            loss = step(batch)
            progress.update(loss=f"{loss:.4f}")
        progress.close()
    """

    def __init__(
        self,
        total: int | None,
        label: str,
        unit: str = "it",
        stream: TextIO | None = None,
        log_every: float = 0.25,
        min_interval: float = 0.2,
        clock: Any = time.monotonic,
    ) -> None:
        """Args:
        total: Steps expected (None: unknown, no ETA).
        label: What is counted, e.g. ``epoch 2/3``.
        unit: Name of one step, for the rate.
        stream: Where to write (default ``sys.stderr``).
        log_every: In a log, print each time this share of ``total`` is done.
        min_interval: On a terminal, redraw at most this often (seconds).
        clock: Seconds (monotonic); tests pass a fake one.
        """
        self.total, self.label, self.unit = total, label, unit
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.log_every, self.min_interval, self.clock = log_every, min_interval, clock
        self.done = 0
        self.fields: dict[str, object] = {}
        self.start = clock()
        self._last_draw = -1.0
        self._next_log = log_every
        self._closed = False

    def update(self, n: int = 1, **fields: object) -> None:
        """Count ``n`` more steps; ``fields`` (e.g. ``loss="0.41"``) are shown after."""
        self.done += n
        self.fields.update(fields)
        now = self.clock()
        if self.tty:
            if now - self._last_draw >= self.min_interval:
                self._last_draw = now
                self.stream.write("\r" + self.line() + "\x1b[K")
                self.stream.flush()
        elif self.total and self.done / self.total >= self._next_log and self.done < self.total:
            while self._next_log <= self.done / self.total:
                self._next_log += self.log_every
            print(self.line(), file=self.stream, flush=True)

    def close(self, **fields: object) -> None:
        """Print the final line (elapsed time instead of the ETA); idempotent."""
        if self._closed:
            return
        self._closed = True
        self.fields.update(fields)
        end = (
            "\r" + self.line(final=True) + "\x1b[K\n" if self.tty else self.line(final=True) + "\n"
        )
        self.stream.write(end)
        self.stream.flush()

    def line(self, final: bool = False) -> str:
        """The current progress line."""
        elapsed = max(self.clock() - self.start, 1e-9)
        rate = self.done / elapsed
        count = f"{self.done}/{self.total}" if self.total else f"{self.done}"
        parts = [self.label, f"{count} {self.unit}", f"{rate:.1f} {self.unit}/s"]
        if final:
            parts.append(f"in {_clock(elapsed)}")
        elif self.total and rate > 0:
            parts.append(f"ETA {_clock(max(self.total - self.done, 0) / rate)}")
        parts += [f"{k} {v}" for k, v in self.fields.items()]
        return "  ".join(parts)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _clock(seconds: float) -> str:
    s = round(seconds)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
