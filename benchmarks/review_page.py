"""The review page (``GET /ui``) in headless Chromium against the real graph: first paint,
time to results, and what it shows of two versions.

    python benchmarks/review_page.py --a models:/llmrec-scorer-ml100k/4 \\
        --b models:/llmrec-scorer-ml100k/5 --user 196 --runs 5 --screenshots docs/img

Serves ``--a`` (the app's version) from the MLflow store at ``--tracking-uri`` (default
./mlflow.db) with ``serve_deployments`` on 127.0.0.1, state in a temporary folder. In the
same run:

- the baseline: the page's requests sent straight to the API (``POST /recommend`` with
  ``explain`` and ``measures`` for each version, and the user's history), one after the
  other: the page cannot be faster than its slowest request;
- the page, a fresh browser page each run, ``/ui?user=...&k=10`` with version A alone and
  with A beside B: first contentful paint, and the time from navigation until the lists are
  rendered (the page's ``llmrec-results`` mark); median and worst of ``--runs``;
- the sample view (20 random users, two versions): its time, and over those users (through
  the API) the mean overlap@10 and each version's mean intra-list diversity and long-tail
  share.

Needs Chromium at /usr/bin/chromium (``apt-get install chromium``; ``make setup`` installs it
as root) and Playwright (a dev dependency).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))
from _common import quiet
from _table import machine, print_table


def serve_app(tracking_uri: str, model_uri: str, root: Path) -> str:
    """Start Ray, Serve and the graph for ``model_uri``; its base URL."""
    import socket

    import ray
    from ray import serve

    from serve_deployments import build_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"port": port})
    settings = {
        "model_uri": model_uri,
        "tracking_uri": tracking_uri,
        "history_db": str(root / "history.sqlite"),
        "feedback_dir": str(root / "feedback"),
        "watch_interval_s": 0,
    }
    serve.run(build_app(settings), name="llmrec", route_prefix="/")
    return f"http://127.0.0.1:{port}"


def api_baseline(url: str, a: str, b: str, user: str, runs: int) -> list[float]:
    """Milliseconds of the page's requests sent one after the other, per run."""
    import requests

    body = {"user_id": user, "k": 10, "explain": True, "measures": True}
    out = []
    for _ in range(runs + 1):
        started = time.perf_counter()
        for uri in (a, b):
            r = requests.post(f"{url}/recommend", json={**body, "model_uri": uri}, timeout=60)
            r.raise_for_status()
        requests.get(f"{url}/users/{user}/history", timeout=60).raise_for_status()
        out.append(1000 * (time.perf_counter() - started))
    return out[1:]  # the first loads version B


def page_times(browser: Any, url: str) -> tuple[float, float]:
    """(first contentful paint, lists rendered) in ms since navigation, one fresh page."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(url)
    page.wait_for_selector("body[data-state=ready]", timeout=60_000)
    found = page.evaluate(
        """() => [
            (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime,
            (performance.getEntriesByName('llmrec-results')[0] || {}).startTime]"""
    )
    page.close()
    return float(found[0] or "nan"), float(found[1] or "nan")


def sample_figures(url: str, a: str, b: str) -> dict[str, float]:
    """Over the page's first sample (seed 0): overlap@10 and each version's measures."""
    import requests

    users = requests.get(f"{url}/users", params={"sample": 20, "seed": 0}, timeout=60).json()
    lists: dict[str, list[dict[str, Any]]] = {a: [], b: []}
    for user in users["users"]:
        for uri in (a, b):
            body = {"user_id": user, "k": 10, "measures": True, "model_uri": uri}
            lists[uri].append(requests.post(f"{url}/recommend", json=body, timeout=60).json())
    overlaps = [
        len({i["item_id"] for i in x["items"]} & {i["item_id"] for i in y["items"]}) / 10
        for x, y in zip(lists[a], lists[b], strict=True)
    ]

    def mean(uri: str, key: str) -> float:
        values = [r["measures"][key] for r in lists[uri] if r["measures"].get(key) is not None]
        return statistics.fmean(values) if values else float("nan")

    return {
        "overlap": statistics.fmean(overlaps),
        "diversity_a": mean(a, "diversity"),
        "diversity_b": mean(b, "diversity"),
        "tail_a": mean(a, "tail_share"),
        "tail_b": mean(b, "tail_share"),
        "users": float(len(overlaps)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--a", default="models:/llmrec-scorer@champion", help="version A")
    parser.add_argument("--b", required=True, help="version B, side by side with A")
    parser.add_argument("--user", required=True, help="a known user id")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--screenshots", type=Path, help="save each view as a PNG here")
    args = parser.parse_args(argv)
    quiet()
    from urllib.parse import urlencode

    from llmrec.serving.http.pages import CHROMIUM, CHROMIUM_ARGS
    from llmrec.serving.settings import absolute_tracking_uri
    from playwright.sync_api import sync_playwright

    tracking = absolute_tracking_uri(args.tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"machine: {machine()}")
        print(f"serving {args.a} from {tracking} …", flush=True)
        url = serve_app(tracking, args.a, Path(tmp))
        baseline = api_baseline(url, args.a, args.b, args.user, args.runs)
        one = f"{url}/ui?{urlencode({'user': args.user, 'a': args.a, 'k': 10})}"
        two = f"{url}/ui?{urlencode({'user': args.user, 'a': args.a, 'b': args.b, 'k': 10})}"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
            page_times(browser, two)  # warm: both versions loaded, the browser's caches
            alone = [page_times(browser, one) for _ in range(args.runs)]
            both = [page_times(browser, two) for _ in range(args.runs)]
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(two)
            page.wait_for_selector("body[data-state=ready]", timeout=60_000)
            if args.screenshots:
                args.screenshots.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.screenshots / "review-side-by-side.png"))
            started = time.perf_counter()
            page.click("#sample")
            page.wait_for_selector("#sample-view:not([hidden])", timeout=120_000)
            page.wait_for_selector("body[data-state=ready]", timeout=120_000)
            sample_ms = 1000 * (time.perf_counter() - started)
            summary = page.text_content("#sample-summary") or ""
            if args.screenshots:
                page.screenshot(path=str(args.screenshots / "review-sample.png"))
            browser.close()
        figures = sample_figures(url, args.a, args.b)

    def pair(a: float, b: float) -> str:
        return f"{a:.3f} / {b:.3f}"

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values):.0f} (worst {max(values):.0f})"

    print_table(
        f"Review page, user {args.user}, k=10, {args.runs} runs (ms; median, worst)",
        ["what", "first paint", "lists rendered"],
        [
            ["baseline: the page's API requests, one after the other", "", ms(baseline)],
            ["page, version A alone", ms([a for a, _ in alone]), ms([b for _, b in alone])],
            ["page, A beside B", ms([a for a, _ in both]), ms([b for _, b in both])],
        ],
    )
    print_table(
        f"Sample view: 20 random users, {args.a} (A) and {args.b} (B)",
        ["what", "value"],
        [
            ["sample view rendered (ms)", f"{sample_ms:.0f}"],
            ["page says", summary],
            ["mean overlap@10 (API)", f"{figures['overlap']:.3f}"],
            [
                "intra-list diversity A / B",
                f"{figures['diversity_a']:.3f} / {figures['diversity_b']:.3f}",
            ],
            ["long-tail share A / B", f"{figures['tail_a']:.3f} / {figures['tail_b']:.3f}"],
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
