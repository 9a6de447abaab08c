"""`[defaults] parallel`: true (the default) asks the backends of one prompt at once;
false asks them one after another, in list order — a multi-backend step's backends and
`lok ask`'s alike. Steps still run side by side under -j."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lokfile import api
from lokfile.agents.ask import AskResult, ask, query_one
from lokfile.backends.base import Request
from lokfile.engine.coordinator import Coordinator, RunOptions
from lokfile.events import Event, UnitStarted
from lokfile.executors.inline import InlineExecutor
from lokfile.model import BackendConfig
from lokfile.outcome import RunStatus
from lokfile.store.artifacts import Store
from lokfile.store.rundb import RunDB
from tests.lokrun import BUILTINS_OFF, write

SLOW = """
[backends.{name}]
type = "test"
latency_ms = 100
"""

SERIAL = "[defaults]\nparallel = false\n"


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / ".lok").mkdir()
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def configure(root: Path, extra: str) -> api.Context:
    write(root, "lok.toml", BUILTINS_OFF + extra + SLOW.format(name="a") + SLOW.format(name="b"))
    return api.open_project(root, say=lambda text: None)


class Events:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def tick(self) -> None:
        pass


def test_with_parallel_off_a_steps_backends_are_asked_one_after_another(root: Path) -> None:
    ctx = configure(root, SERIAL)
    write(
        root,
        "wf.toml",
        """
        name = "w"
        [[steps]]
        name = "ask"
        backends = ["b", "a"]
        consensus = "first"
        prompt = "hello"
        [[steps]]
        name = "beside"
        shell = "echo beside"
        """,
    )
    wf = api.load(ctx, str(root / "wf.toml"))
    db = RunDB.open(ctx.project.db_path)
    report = Events()
    try:
        outcome = Coordinator(
            wf,
            ctx.config,
            root,
            Store(ctx.project.runs_dir),
            db,
            RunOptions(jobs=4),
            report,
            InlineExecutor,
        ).run()
    finally:
        db.close()
    assert outcome.status is RunStatus.SUCCEEDED
    first, second = sorted(outcome.results["ask"].units, key=lambda u: u.started)
    assert (first.name, second.name) == ("backend:b", "backend:a")  # in list order
    assert second.started >= first.ended, "the two backends were asked at once"
    started = [f"{e.step} {e.unit}".strip() for e in report.events if isinstance(e, UnitStarted)]
    assert started.index("beside") < started.index("ask backend:a")  # steps do not wait


@pytest.mark.parametrize("parallel", [True, False])
def test_lok_ask_asks_its_backends_at_once_unless_parallel_is_off(
    root: Path, parallel: bool
) -> None:
    ctx = configure(root, "" if parallel else SERIAL)
    spans: dict[str, tuple[float, float]] = {}
    lock = threading.Lock()
    both_started = threading.Barrier(2, timeout=5)

    def timed(backend: BackendConfig, request: Request) -> AskResult:
        begun = time.time()
        if parallel:
            both_started.wait()  # at once: each query waits until the other has begun
        result = query_one(backend, request)
        with lock:
            spans[backend.name] = (begun, time.time())
        return result

    backends = [ctx.config.backends["b"], ctx.config.backends["a"]]
    results = ask("hi", backends, ctx.config, str(root), runner=timed)
    assert [r.text for r in results] == ["[b] hi", "[a] hi"]
    if not parallel:
        assert spans["a"][0] >= spans["b"][1], "parallel = false asked two backends at once"
