"""The soak's report (``soak.py``): per-minute traffic and memory, how each replica kill
was recovered from, failed requests outside the kill windows, acknowledged feedback missing
from the log, and memory growth over the steady window; whether the targets were met.

Reads what the run recorded: one :class:`Result` per request and one memory sample every
5 s (``{"t": time, ROLE: (pid, RSS MiB), ...}``).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
from _table import machine, print_table

MINUTE_COLUMNS = (
    "minute",
    "requests",
    "p50 ms",
    "p99 ms",
    "5xx",
    "failed",
    "ingress",
    "encoder",
    "ranker",
    "proxy",
)


class Result(TypedDict):
    """One request as a client thread recorded it."""

    t: float
    """When it was sent (``time.time()``)."""
    ms: float
    """How long until its answer (or its failure)."""
    kind: str
    """What it was (``known user``, ``feedback``, ``bad request``, ...)."""
    status: int
    """The HTTP status (599: no HTTP answer)."""
    failed: bool
    """Whether the status was not one the request must get."""
    body: dict[str, Any]
    """The JSON body sent."""
    version: str | None
    """The model version that answered, where the answer says."""


def per_minute(
    results: list[Result], memory: list[dict[str, Any]], start: float
) -> list[tuple[object, ...]]:
    """A row per minute of the run: requests, p50/p99, 5xx, failures and the RSS of each
    Serve process at the minute's end."""
    rows: list[tuple[object, ...]] = []
    minutes = max(1, int(np.ceil((max(r["t"] for r in results) - start) / 60 - 1e-9)))
    for m in range(minutes):
        last_minute = m == minutes - 1  # the requests still in flight at the end count here
        mine = [
            r
            for r in results
            if m * 60 <= r["t"] - start and (last_minute or r["t"] - start < (m + 1) * 60)
        ]
        if not mine:
            continue
        ms = np.array([r["ms"] for r in mine])
        mem = [s for s in memory if s["t"] - start < (m + 1) * 60]
        last = mem[-1] if mem else {}
        rss = [
            f"{last[role][1]:.0f}" if role in last else "-"
            for role in ("ingress", "encoder", "ranker", "proxy")
        ]
        rows.append(
            (
                m + 1,
                len(mine),
                float(np.percentile(ms, 50)),
                float(np.percentile(ms, 99)),
                sum(r["status"] >= 500 for r in mine),
                sum(r["failed"] for r in mine),
                *rss,
            )
        )
    return rows


def _done(r: Result) -> float:
    """When the request was answered (a failure belongs to the kill before its answer)."""
    return float(r["t"] + r["ms"] / 1000)


def kill_windows(
    results: list[Result], events: dict[str, float], extra_s: float
) -> list[tuple[str, float, float]]:
    """Per kill: from the kill to the first request answered after it started, plus
    ``extra_s`` (requests already queued then may still fail)."""
    windows: list[tuple[str, float, float]] = []
    for role in ("encoder", "ranker", "ingress"):
        if role not in events:
            continue
        t0 = events[role]
        after = [r["t"] + r["ms"] / 1000 for r in results if r["t"] > t0 and r["status"] == 200]
        recovered = min(after) if after else float("inf")
        windows.append((role, t0, recovered + extra_s))
    return windows


def missing_feedback(results: list[Result], feedback_dir: Path) -> int:
    """Acknowledged (200) feedback events not in the feedback log afterwards."""
    from llmrec.serving.history import FeedbackLog

    logged = FeedbackLog(feedback_dir).read()
    have = set(
        zip(
            logged.column("user_id").to_pylist(),
            logged.column("item_id").to_pylist(),
            logged.column("timestamp").to_pylist(),
            strict=True,
        )
    )
    acked = [r["body"] for r in results if r["kind"] == "feedback" and r["status"] == 200]
    return sum((b["user_id"], b["item_id"], b["timestamp"]) not in have for b in acked)


def memory_growth(
    memory: list[dict[str, Any]], t0: float, t1: float
) -> list[tuple[str, float, float, str]]:
    """Per process alive through [t0, t1): RSS at the start and end of that window."""
    window = [s for s in memory if t0 <= s["t"] < t1]
    rows: list[tuple[str, float, float, str]] = []
    for role in ("ingress", "encoder", "ranker", "proxy", "controller"):
        seen = [s[role] for s in window if role in s]
        if len(seen) < 2 or len({pid for pid, _ in seen}) != 1:
            continue
        first = float(np.median([mb for _, mb in seen[:3]]))
        last = float(np.median([mb for _, mb in seen[-3:]]))
        rows.append((role, first, last, f"{100 * (last / first - 1):+.1f}%"))
    return rows


def report(
    results: list[Result],
    memory: list[dict[str, Any]],
    events: dict[str, float],
    start: float,
    args: argparse.Namespace,
    feedback_dir: Path,
) -> int:
    """Print the soak's tables and totals (``args``: ``minutes``, ``concurrency`` and
    ``window`` of the command line); 0 when every target is met, else 1."""
    print_table(
        f"Soak: {args.minutes:g} min, concurrency {args.concurrency} ({machine()}); "
        "RSS in MiB at the end of each minute",
        MINUTE_COLUMNS,
        per_minute(results, memory, start),
    )
    windows = kill_windows(results, events, args.window)
    print_table(
        "Kills: how long until the first request served after the kill; requests that failed "
        "(answered) after the kill and before the next one, within the window",
        ["replica", "killed at s", "recovered after s", "failed in window"],
        [
            (
                role,
                t0 - start,
                end - args.window - t0,
                sum(
                    r["failed"]
                    for r in results
                    if t0 <= _done(r) < min([end] + [t for _, t, _ in windows if t > t0])
                ),
            )
            for role, t0, end in windows
        ],
    )
    failed = [r for r in results if r["failed"]]
    outside = [r for r in failed if not any(t0 <= _done(r) < end for _, t0, end in windows)]
    kinds = Counter(r["kind"] for r in results)
    swapped = [r for r in results if "swap" in events and r["t"] > events["swap"] + 10]
    versions = Counter(r["version"] for r in swapped if r["version"])
    missing = missing_feedback(results, feedback_dir)
    swap_end = events.get("swap", start) + max(30.0, 6 * args.minutes)
    growth = memory_growth(memory, swap_end, events.get("encoder", time.time()))
    print_table(
        "Memory over the steady window (after swap and warm-up, before the first kill)",
        ["process", "RSS MiB at start", "RSS MiB at end", "growth"],
        growth,
    )
    print(f"\nrequests: {len(results)} ({dict(kinds)})")
    print(
        f"failed: {len(failed)} ({100 * len(failed) / max(len(results), 1):.2f}%), "
        f"by status {dict(Counter(r['status'] for r in failed))}"
    )
    print(f"failed outside the kill windows: {len(outside)}")
    print(f"answers 10 s after the swap, by model version: {dict(versions)}")
    acked = sum(r["kind"] == "feedback" and r["status"] == 200 for r in results)
    print(f"acknowledged feedback events: {acked}, missing afterwards: {missing}")
    worst = max((float(g[-1].rstrip("%")) for g in growth), default=0.0)
    ok = not outside and missing == 0 and worst <= 5.0 and len(failed) <= 0.01 * len(results)
    print(
        "targets (failed < 1%, none outside kill windows, no feedback lost, memory <= 5%): "
        + ("met" if ok else "NOT met")
    )
    return 0 if ok else 1
