"""Keep the KV cache of a finished decoding session for the teacher's next session.

A LlamaGen-B session at batch 256 with CFG holds a 9.7 GB cache; allocating it zeroed took 15-35
s on the development VM (2-core EPYC), nearly all of it page faults (system time), against 0.6
s to re-zero one already in memory (eager sessions now leave a new cache uninitialised and
fault its pages in as they write them; a kept one saves those faults), and pair generation
starts one session per batch (VAR-d16 at
batch 256: 5.7 GB, faulted in during the first steps). A pool holds at most one cache: the
memory stays with the teacher until it is garbage-collected or `clear()`ed. Thread-safe (the
app runs sessions in threads); a session that is never finished keeps its cache to itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any


class CachePool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: tuple[Hashable, Any] | None = None

    def take(self, key: Hashable, make: Callable[[], Any]) -> tuple[Any, bool]:
        """(the kept cache if it was made for `key`, else `make()`; whether it was kept)."""
        with self._lock:
            kept, self._kept = self._kept, None
        if kept is not None and kept[0] == key:
            return kept[1], True
        del kept  # another shape: freed before the new one is allocated
        return make(), False

    def give_back(self, key: Hashable, cache: Any) -> None:
        """A finished session's cache, for the next `take` of the same key."""
        with self._lock:
            self._kept = (key, cache)

    def clear(self) -> None:
        with self._lock:
            self._kept = None

    # A copied or pickled teacher (DD2 copies its teacher) gets an empty pool of its own.
    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()

    def __deepcopy__(self, memo: dict) -> CachePool:
        return CachePool()
