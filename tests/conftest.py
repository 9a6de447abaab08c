"""Shared test settings.

In CI (`CI` set) hypothesis runs derandomized, so a run is reproducible from the
commit alone; locally it explores new examples on every run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def mark() -> Iterator[str]:
    """A marker for the processes a test's `lok` starts (tests/procs.py); whatever still
    carries it when the test ends is killed."""
    from tests.procs import kill_marked, new_mark

    m = new_mark()
    yield m
    kill_marked(m)


@pytest.fixture(autouse=True)
def _fresh_readiness() -> Iterator[None]:
    """Each test sees backends as they are now: the readiness cache lives per process,
    and in-process (CliRunner) tests share one process."""
    from lokfile.backends.ready import forget

    forget()
    yield
    forget()
