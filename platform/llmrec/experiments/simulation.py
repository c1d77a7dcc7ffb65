"""Simulated users whose futures are known, for proving an experiment end to end.

Each user of a data set is split as the evaluation protocol splits them: everything before
the last ``future`` interactions is their past; the last ones (the validation and test
targets for ``future=2``) are what they will do next. The versions compared must not have
seen those futures: train them on the copy of the data :func:`hold_out_futures` writes.

A session has one step per future item: the user asks for ``k`` items with their past as
the history (the most recent ``max_history`` items, the rest excluded so that nothing seen
comes back), looks down the list with a position bias (position ``p`` is looked at with
probability ``1/log2(p+1)``), clicks what they look at if it is still in their future
(and, with probability ``noise``, anything else they look at), and sends each click back
with the answer's ``request_id``. Their next step's history has the next future item added,
whatever they were shown (they found it anyway). The user's id doubles as the
``session_id``, so their variant is sticky.

:func:`run_session` drives one user against any ``recommend`` function: the live server
over HTTP (:class:`HttpClient`, ``jobs/simulate_traffic.py --url``) or the ranking code in
this process (:mod:`llmrec.experiments.inprocess`, for many seeds).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class SimUser:
    """A user with a known future."""

    user_id: str
    past: tuple[str, ...]
    future: tuple[str, ...]


def users_from_sequences(sequences: pd.DataFrame, future: int = 2) -> list[SimUser]:
    """Users of :attr:`llmrec.data.splits.Split.sequences` (time-ordered items per user)
    whose last ``future`` items are their future (2: the protocol's validation and test
    targets, never trained on as targets)."""
    if future < 1:
        raise ValueError(f"future must be >= 1, got {future}")
    out = []
    for user, items in zip(sequences["user_id"], sequences["items"], strict=True):
        items = list(items)
        if len(items) > future:
            out.append(SimUser(str(user), tuple(items[:-future]), tuple(items[-future:])))
    return out


def load_users(
    source: str, data: Any, future: int = 2, limit: int = 0, seed: int = 0
) -> list[SimUser]:
    """The simulated users of a data source, split by the evaluation protocol (``data``:
    the :class:`~llmrec.config.DataConfig` to read it with); ``limit`` > 0 draws that many
    at random."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="llmrec-sim-") as tmp:
        _, sequences = _sequences(source, data, tmp)
    users = users_from_sequences(sequences, future)
    if 0 < limit < len(users):
        picked = np.random.default_rng(seed).choice(len(users), limit, replace=False)
        users = [users[i] for i in sorted(picked)]
    return users


def _sequences(source: str, data: Any, out: str | Path) -> tuple[Any, pd.DataFrame]:
    from llmrec.data.prepare import load_source, prepare
    from llmrec.data.splits import leave_one_out

    prepared = prepare(load_source(source, data), out, data.events)
    return prepared, leave_one_out(prepared.interactions, data.min_core).sequences


def hold_out_futures(source: str, data: Any, out: str | Path, future: int = 2) -> int:
    """Write ``source`` without the simulated users' futures to ``out`` (a folder in the
    data contract: ``interactions.parquet``, ``items.parquet``): versions trained on it have
    never seen what the simulated users will do (a version's hybrid CF part and popularity
    are refitted on every interaction it was given, so versions trained on the full data
    would know the futures). Returns the interactions held out.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    prepared, sequences = _sequences(source, data, out)
    held = {
        (str(u), str(i), int(t))
        for u, items, times in zip(
            sequences["user_id"], sequences["items"], sequences["timestamps"], strict=True
        )
        if len(items) > future
        for i, t in zip(list(items)[-future:], list(times)[-future:], strict=True)
    }
    table = prepared.interactions
    keep = [
        (u, i, int(t)) not in held
        for u, i, t in zip(
            table["user_id"].to_pylist(),
            table["item_id"].to_pylist(),
            table["timestamp"].to_pylist(),
            strict=True,
        )
    ]
    pq.write_table(table.filter(pa.array(keep)), Path(out) / "interactions.parquet")
    return len(keep) - sum(keep)


def request_body(user: SimUser, step: int, k: int = 10, max_history: int = 200) -> dict[str, Any]:
    """The ``/recommend`` body of a session's ``step``: the latest ``max_history`` items as
    the history, the older ones excluded, the user id as the session id."""
    seen = [*user.past, *user.future[:step]]
    return {
        "history": seen[-max_history:],
        "exclude": seen[:-max_history],
        "session_id": user.user_id,
        "k": k,
    }


@dataclass(frozen=True)
class ClickModel:
    """Position-biased clicks on what is in the user's future.

    Args:
        noise: chance of clicking an item looked at that is not in the future.
    """

    noise: float = 0.0

    @staticmethod
    def looks(position: int) -> float:
        """Chance that position ``position`` (1 = the top) is looked at."""
        return 1.0 / math.log2(position + 1)

    def clicks(
        self,
        items: Sequence[str],
        wanted: set[str],
        rng: np.random.Generator,
        liked: Mapping[str, float] | None = None,
    ) -> list[int]:
        """The positions (1-based) clicked in a list; ``liked``: other items the user
        clicks with a known chance when looked at (new items whose appeal the simulator
        knows)."""
        out = []
        for p, item in enumerate(items, start=1):
            if rng.random() < self.looks(p):
                chance = 1.0 if item in wanted else self.noise
                if liked and item in liked:
                    chance = max(chance, liked[item])
                if chance and rng.random() < chance:
                    out.append(p)
        return out


Answer = tuple[str, Sequence[str]]
"""(request_id, item ids shown) of one ``/recommend`` answer."""


@dataclass
class SessionResult:
    """What one simulated user did."""

    requests: int = 0
    clicks: int = 0
    future_clicks: int = 0
    errors: list[str] = field(default_factory=list)


def run_session(
    user: SimUser,
    recommend: Callable[[SimUser, int, dict[str, Any]], Answer],
    feedback: Callable[[list[dict[str, Any]]], None],
    model: ClickModel,
    rng: np.random.Generator,
    k: int = 10,
    max_history: int = 200,
    liked: Mapping[str, float] | None = None,
) -> SessionResult:
    """One user's session: a request per future item, clicks sent back with the answer's
    request id (``feedback`` gets ``/feedback`` events); ``liked``: items outside the future
    the user clicks with a known chance, each once."""
    result = SessionResult()
    remaining = set(user.future)
    left = dict(liked or {})
    for step in range(len(user.future)):
        answer_id, items = recommend(user, step, request_body(user, step, k, max_history))
        result.requests += 1
        clicked = [items[p - 1] for p in model.clicks(items, remaining, rng, left)]
        for item in clicked:
            left.pop(item, None)
        if clicked:
            feedback(
                [
                    {
                        "user_id": user.user_id,
                        "item_id": i,
                        "event": "click",
                        "request_id": answer_id,
                    }
                    for i in clicked
                ]
            )
        result.clicks += len(clicked)
        result.future_clicks += len(remaining & set(clicked))
        remaining -= set(clicked)
    return result


class HttpClient:
    """``recommend`` and ``feedback`` of :func:`run_session` against a live server.

    Args:
        url: the server's base URL (``http://127.0.0.1:8000``).
        token: its bearer token for ``/feedback`` (``LLMREC_API_TOKEN``), if set.
    """

    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0) -> None:
        import threading

        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout = timeout
        self._local = threading.local()
        self.variants: dict[str, str] = {}

    def _session(self) -> Any:
        import requests

        if getattr(self._local, "session", None) is None:
            self._local.session = requests.Session()
        return self._local.session

    def recommend(self, user: SimUser, step: int, body: dict[str, Any]) -> Answer:
        r = self._session().post(f"{self.url}/recommend", json=body, timeout=self.timeout)
        if r.status_code != 200:
            raise RuntimeError(f"POST /recommend answered {r.status_code}: {r.text[:300]}")
        answer = r.json()
        self.variants[user.user_id] = str(answer.get("variant"))
        return answer["request_id"], [i["item_id"] for i in answer["items"]]

    def feedback(self, events: list[dict[str, Any]]) -> None:
        r = self._session().post(
            f"{self.url}/feedback",
            json={"events": events},
            headers=self.headers,
            timeout=self.timeout,
        )
        if r.status_code != 200 or r.json().get("attributed") != len(events):
            raise RuntimeError(f"POST /feedback answered {r.status_code}: {r.text[:300]}")


__all__ = [
    "Answer",
    "ClickModel",
    "HttpClient",
    "SessionResult",
    "SimUser",
    "load_users",
    "request_body",
    "run_session",
    "users_from_sequences",
]
