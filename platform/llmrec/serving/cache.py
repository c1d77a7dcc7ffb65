"""Query vectors of known users, kept between their requests.

A known user's request without a typed query encodes the same input (their history written
as text) every time until their history changes, and the language model is most of a
request's cost. :class:`UserVectorCache` keeps those vectors per model version and user,
bounded (least recently used first out). Each entry remembers a fingerprint of what was
encoded, and a lookup with another fingerprint misses: an entry can never answer for a
changed history, even when the change came through another ingress replica. Feedback drops
the user's entry at once (:meth:`forget`), a version switch drops the versions no longer served
(:meth:`retain`).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Hashable

import numpy as np


def fingerprint(*parts: Hashable) -> str:
    """A short, stable digest of what an encoder input is made of."""
    return hashlib.blake2b(repr(parts).encode(), digest_size=16).hexdigest()


class UserVectorCache:
    """``(version, user) -> vector`` for inputs with a given fingerprint, at most ``size``.

    Args:
        size: the most entries kept; 0 turns the cache off (every lookup misses).
    """

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        self.size = size
        self._entries: OrderedDict[tuple[str, str], tuple[str, np.ndarray]] = OrderedDict()
        self._versions: dict[str, set[str]] = {}  # user -> versions with an entry
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, version: str, user: str, key: str) -> np.ndarray | None:
        """The vector stored for this user and version if it was computed from ``key``."""
        entry = self._entries.get((version, user))
        if entry is None or entry[0] != key:
            self.misses += 1
            return None
        self._entries.move_to_end((version, user))
        self.hits += 1
        return entry[1]

    def put(self, version: str, user: str, key: str, vector: np.ndarray) -> None:
        if self.size == 0:
            return
        self._entries[(version, user)] = (key, np.asarray(vector, dtype=np.float32))
        self._entries.move_to_end((version, user))
        self._versions.setdefault(user, set()).add(version)
        while len(self._entries) > self.size:
            (old_version, old_user), _ = self._entries.popitem(last=False)
            self._unlink(old_version, old_user)

    def _unlink(self, version: str, user: str) -> None:
        versions = self._versions.get(user)
        if versions is not None:
            versions.discard(version)
            if not versions:
                del self._versions[user]

    def forget(self, user: str) -> None:
        """Drop the user's vectors (their history changed)."""
        for version in self._versions.pop(user, set()):
            self._entries.pop((version, user), None)

    def retain(self, *versions: str) -> None:
        """Drop every other version's vectors (the served versions changed)."""
        for old_version, user in [k for k in self._entries if k[0] not in versions]:
            del self._entries[(old_version, user)]
            self._unlink(old_version, user)

    def clear(self) -> None:
        """Drop every vector (the item vectors they were computed from changed)."""
        self._entries.clear()
        self._versions.clear()

    def full(self) -> bool:
        return len(self._entries) >= self.size


__all__ = ["UserVectorCache", "fingerprint"]
