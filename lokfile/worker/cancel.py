"""A worker's stop flag, shared by the threads that run its jobs.

When a worker must stop (its coordinator was interrupted, or died), the flag
is set: no job starts another attempt, asks a backend again or begins a
verify command, and the worker ends every process its jobs started. An edit
is the exception that is waited for: between its first write and its last
restore, a job holds `editing()`, and the worker exits only once none does,
so files are never left half put back.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Cancel:
    """Set once, never cleared; counts the jobs inside an edit."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._editing = 0

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def sleep(self, seconds: float) -> bool:
        """Wait `seconds` unless cancelled first; True when cancelled."""
        return self._event.wait(seconds)

    @contextmanager
    def editing(self) -> Iterator[None]:
        """Mark the block as an edit that must run to its end (its restore included)."""
        with self._lock:
            self._editing += 1
        try:
            yield
        finally:
            with self._lock:
                self._editing -= 1

    @property
    def edits_in_progress(self) -> int:
        with self._lock:
            return self._editing
