"""Which Serve process spent the CPU, and on what: per-role CPU time from ``psutil`` and
``py-spy`` samples split by the package of the innermost frame (``graph_overhead.py``)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path

PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
KINDS = (  # the leaf frame's file -> what it was doing; first match wins
    ("/llmrec/", "llmrec"),
    ("serve_deployments", "llmrec"),
    ("pydantic", "pydantic"),
    ("fastapi", "FastAPI/Starlette"),
    ("starlette", "FastAPI/Starlette"),
    ("uvicorn", "HTTP server"),
    ("h11", "HTTP server"),
    ("httptools", "HTTP server"),
    ("ray/serve", "Serve request path"),
    ("grpc", "gRPC"),
    ("pickle", "serialization"),
    ("msgpack", "serialization"),
    ("ray/", "Ray core"),
    ("asyncio", "asyncio"),
    ("threading", "threads"),
    ("concurrent/futures", "threads"),
    ("logging", "logging"),
    ("torch", "model"),
    ("transformers", "model"),
    ("requests", "HTTP client"),
    ("urllib3", "HTTP client"),
    ("http/client", "HTTP client"),
)


def kind_of(frame: str) -> str:
    return next((kind for key, kind in KINDS if key in frame), "other")


def kind_of_stack(frames: list[str]) -> str:
    """What a sampled stack was doing: the kind of its innermost frame that has one (a
    built-in or C function is charged to the Python code that called it)."""
    return next((k for f in reversed(frames) if (k := kind_of(f)) != "other"), "other")


def role_pids(roles: Mapping[str, str]) -> dict[str, list[int]]:
    """The pids of each role (``roles``: a command-line fragment -> the role's name)."""
    import psutil

    out: dict[str, list[int]] = {}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        role = next((r for key, r in roles.items() if key in cmd), None)
        if role:
            out.setdefault(role, []).append(proc.info["pid"])
    return out


def cpu_by_role(pids: dict[str, list[int]]) -> dict[str, float]:
    import psutil

    out: dict[str, float] = {}
    for role, ps in pids.items():
        for pid in ps:
            try:
                t = psutil.Process(pid).cpu_times()
                out[role] = out.get(role, 0.0) + t.user + t.system
            except psutil.NoSuchProcess:
                continue
    return out


def idle_cpu(pids: dict[str, list[int]], seconds: float) -> dict[str, float]:
    """CPU ms per second of each role with the graph up and no request in flight (Ray's and
    Serve's own loops: metrics, health checks, polling), over ``seconds``."""
    if seconds <= 0:
        return {}
    before = cpu_by_role(pids)
    time.sleep(seconds)
    after = cpu_by_role(pids)
    return {r: 1000 * (after[r] - before.get(r, 0.0)) / seconds for r in after}


def traced(
    pids: dict[str, list[int]], run: Callable[[], object], tmp: Path
) -> dict[str, Counter[str]]:
    """``run()`` under py-spy (100 samples/s, GIL-holding or running threads); per role, the
    sample count by kind of leaf frame."""
    procs = {}
    for role, ps in pids.items():
        for pid in ps:
            out = tmp / f"{role}-{pid}.txt"
            cmd = [
                PY_SPY,
                "record",
                "-p",
                str(pid),
                "-r",
                "100",
                "-f",
                "raw",
                "-o",
                str(out),
                "--full-filenames",
            ]
            procs[(role, out)] = subprocess.Popen(
                cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
    time.sleep(1.0)  # py-spy attached
    run()
    counts: dict[str, Counter[str]] = {}
    for (role, out), proc in procs.items():
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        c = counts.setdefault(role, Counter())
        for line in out.read_text().splitlines() if out.exists() else []:
            stack, _, n = line.rpartition(" ")
            c[kind_of_stack(stack.split(";"))] += int(n)
    return counts
