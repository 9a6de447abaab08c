"""The coordinator driven directly: real workflows, a real Store and RunDB in a temporary
project, jobs on the in-process executor, every event collected.

These check what the end-to-end tests can only see from outside: the order events
come in (a step starts the moment its dependencies are done), gating, early cutoff,
cancellation and the limits the dispatcher holds.
"""

from __future__ import annotations

import inspect
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lokfile import api
from lokfile.engine.coordinator import Coordinator, RunOptions
from lokfile.events import Event, StepFinished, UnitStarted
from lokfile.executors.inline import InlineExecutor
from lokfile.outcome import RunOutcome, RunStatus, Status
from lokfile.store.artifacts import Store
from lokfile.store.rundb import RunDB
from tests.lokrun import BUILTINS_OFF, write

DEADLINE_S = 10.0


class Collect:
    """A reporter that keeps every event (and counts the coordinator's ticks)."""

    def __init__(self, on_event: Callable[[Event], None] | None = None) -> None:
        self.events: list[Event] = []
        self.ticks = 0
        self.on_event = on_event

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)

    def tick(self) -> None:
        self.ticks += 1

    def started(self) -> list[str]:
        """Steps (with their unit) in the order their jobs started."""
        return [f"{e.step} {e.unit}".strip() for e in self.events if isinstance(e, UnitStarted)]

    def finished(self) -> list[str]:
        return [e.step for e in self.events if isinstance(e, StepFinished)]

    def position(self, kind: type, step: str) -> int:
        for i, e in enumerate(self.events):
            if isinstance(e, kind) and getattr(e, "step", None) == step:
                return i
        raise AssertionError(f"no {kind.__name__} for {step}: {self.events}")


class Project:
    """A temporary project with one workflow file and its history."""

    def __init__(self, root: Path, workflow: str, config: str = "") -> None:
        self.root = root
        (root / ".lok").mkdir(exist_ok=True)
        write(root, "lok.toml", BUILTINS_OFF + config)
        write(root, "wf.toml", workflow)

    def coordinator(self, report: Collect, **options: object) -> tuple[Coordinator, RunDB]:
        ctx = api.open_project(self.root, say=lambda text: None)
        wf = api.load(ctx, str(self.root / "wf.toml"))
        store = Store(ctx.project.runs_dir)
        db = RunDB.open(ctx.project.db_path)
        opts = RunOptions(jobs=4, **options)  # type: ignore[arg-type]
        return Coordinator(wf, ctx.config, self.root, store, db, opts, report, InlineExecutor), db

    def run(self, report: Collect | None = None, **options: object) -> tuple[RunOutcome, Collect]:
        report = report or Collect()
        coordinator, db = self.coordinator(report, **options)
        try:
            return coordinator.run(), report
        finally:
            db.close()


def statuses(outcome: RunOutcome) -> dict[str, Status]:
    return {name: r.status for name, r in outcome.results.items()}


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def waits_for(path: str) -> str:
    """A shell command that waits (at most 10 s) for `path` to exist, then says so."""
    return (
        f"i=0; while [ ! -e {path} ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done; "
        f"test -e {path} && echo saw-{path}"
    )


@pytest.fixture
def chdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    yield tmp_path


# -- the ready queue ----------------------------------------------------------


def test_a_step_starts_the_moment_its_dependencies_are_done_not_in_waves(chdir: Path) -> None:
    # `slow` can only finish once `late` (two levels down a faster branch) has run:
    # in waves, `late` would wait for `slow` and `slow` would time out.
    project = Project(
        chdir,
        f"""
        name = "w"
        [[steps]]
        name = "slow"
        shell = "{waits_for("late.done")}"
        timeout = 10000
        [[steps]]
        name = "fast"
        shell = "echo fast"
        [[steps]]
        name = "late"
        depends_on = ["fast"]
        shell = "touch late.done && echo late"
        """,
    )
    outcome, report = project.run()
    assert statuses(outcome) == {"slow": Status.RAN, "fast": Status.RAN, "late": Status.RAN}
    assert report.position(StepFinished, "fast") < report.position(UnitStarted, "late")
    assert report.position(UnitStarted, "late") < report.position(StepFinished, "slow")


def test_steps_start_in_workflow_order_and_children_as_their_parents_finish(
    chdir: Path,
) -> None:
    project = Project(
        chdir,
        """
        name = "w"
        [[steps]]
        name = "a"
        shell = "echo a"
        [[steps]]
        name = "b"
        shell = "echo b"
        [[steps]]
        name = "c"
        depends_on = ["a", "b"]
        shell = "echo {{ steps.a.output }}{{ steps.b.output }}"
        """,
    )
    outcome, report = project.run()
    assert report.started()[:2] == ["a", "b"]
    assert report.started()[2] == "c"
    assert outcome.results["c"].output == "ab"


# -- gating -------------------------------------------------------------------


HARD_FAILURE = f"""
    name = "w"
    [[steps]]
    name = "bad"
    shell = "exit 3"
    [[steps]]
    name = "after"
    depends_on = ["bad"]
    shell = "echo never"
    [[steps]]
    name = "beside"
    shell = "{waits_for("bad.seen")}"
    timeout = 10000
    [[steps]]
    name = "then"
    depends_on = ["beside"]
    shell = "echo then"
    """


def _touch_when_bad_fails(root: Path) -> Callable[[Event], None]:
    def on_event(event: Event) -> None:
        if isinstance(event, StepFinished) and event.step == "bad":
            (root / "bad.seen").touch()

    return on_event


def test_a_hard_failure_skips_its_dependents_and_starts_nothing_new(chdir: Path) -> None:
    outcome, report = Project(chdir, HARD_FAILURE).run(Collect(_touch_when_bad_fails(chdir)))
    assert statuses(outcome) == {
        "bad": Status.FAILED,
        "after": Status.SKIPPED,
        "beside": Status.RAN,  # already running: it finishes
        "then": Status.SKIPPED,
    }
    assert outcome.results["after"].reason == "not started: bad failed"
    assert outcome.results["then"].reason == "not started: bad failed"
    assert outcome.status is RunStatus.FAILED
    assert report.started() == ["bad", "beside"]


def test_with_keep_going_a_hard_failure_skips_only_its_own_dependents(chdir: Path) -> None:
    report = Collect(_touch_when_bad_fails(chdir))
    outcome, _ = Project(chdir, HARD_FAILURE).run(report, keep_going=True)
    assert statuses(outcome) == {
        "bad": Status.FAILED,
        "after": Status.SKIPPED,
        "beside": Status.RAN,
        "then": Status.RAN,
    }
    assert outcome.results["after"].reason == "dependency failed: bad"
    assert outcome.status is RunStatus.FAILED
    assert "after" not in report.started()


def test_continue_on_error_hands_its_failure_downstream_without_blocking(chdir: Path) -> None:
    project = Project(
        chdir,
        """
        name = "w"
        [[steps]]
        name = "bad"
        shell = "exit 4"
        continue_on_error = true
        [[steps]]
        name = "after"
        depends_on = ["bad"]
        shell = "echo saw-{{ steps.bad.success }}"
        """,
    )
    outcome, _ = project.run()
    assert statuses(outcome) == {"bad": Status.FAILED, "after": Status.RAN}
    assert outcome.results["after"].output == "saw-false"
    assert outcome.status is RunStatus.SUCCEEDED


@pytest.mark.parametrize(("need", "merge"), [(2, Status.RAN), (3, Status.FAILED)])
def test_a_quorum_runs_a_step_when_enough_dependencies_succeed(
    chdir: Path, need: int, merge: Status
) -> None:
    project = Project(
        chdir,
        f"""
        name = "w"
        [[steps]]
        name = "r1"
        shell = "echo one"
        [[steps]]
        name = "r2"
        shell = "exit 1"
        [[steps]]
        name = "r3"
        shell = "echo three"
        [[steps]]
        name = "merge"
        depends_on = ["r1", "r2", "r3"]
        min_deps_success = {need}
        shell = "echo {{{{ steps.r1.output }}}} {{{{ steps.r3.output }}}}"
        """,
    )
    outcome, _ = project.run()
    assert outcome.results["merge"].status is merge
    if merge is Status.FAILED:
        assert outcome.results["merge"].reason.startswith("quorum not reached: 2/3")


def test_an_unmet_condition_skips_the_step_but_not_its_dependents(chdir: Path) -> None:
    project = Project(
        chdir,
        """
        name = "w"
        [[steps]]
        name = "check"
        shell = "echo clean"
        [[steps]]
        name = "fix"
        depends_on = ["check"]
        when = "contains(check.output, 'ISSUES')"
        shell = "echo fixing"
        [[steps]]
        name = "report"
        depends_on = ["fix"]
        shell = "echo fix-skipped-{{ steps.fix.skipped }}"
        """,
    )
    outcome, report = project.run()
    assert statuses(outcome) == {
        "check": Status.RAN,
        "fix": Status.SKIPPED,
        "report": Status.RAN,
    }
    assert outcome.results["fix"].reason == "condition not met"
    assert "fix" not in report.started()


# -- early cutoff -------------------------------------------------------------


def test_an_upstream_that_reruns_to_the_same_bytes_reruns_nothing_below(chdir: Path) -> None:
    project = Project(
        chdir,
        """
        name = "w"
        [[steps]]
        name = "clean"
        shell = "tr -d x < in.txt"
        sources = ["in.txt"]
        [[steps]]
        name = "use"
        depends_on = ["clean"]
        shell = "echo used >> use.log; echo {{ steps.clean.output }}"
        cache = true
        """,
    )
    write(chdir, "in.txt", "hello\n")
    first, _ = project.run()
    assert statuses(first) == {"clean": Status.RAN, "use": Status.RAN}
    write(chdir, "in.txt", "hexllo\n")  # a new source, the same output
    second, report = project.run()
    assert statuses(second) == {"clean": Status.RAN, "use": Status.REUSED}
    assert second.results["clean"].reason == "source changed: in.txt"
    assert report.started() == ["clean"]
    assert (chdir / "use.log").read_text() == "used\n"


# -- cancellation -------------------------------------------------------------


def test_cancel_mid_run_interrupts_the_running_step_and_starts_nothing_new(
    chdir: Path,
) -> None:
    project = Project(
        chdir,
        f"""
        name = "w"
        [[steps]]
        name = "long"
        shell = "{waits_for("never.there")}"
        timeout = 20000
        [[steps]]
        name = "after"
        depends_on = ["long"]
        shell = "echo after"
        [[steps]]
        name = "other"
        depends_on = ["long"]
        shell = "echo other"
        """,
    )
    report = Collect()
    coordinator, db = project.coordinator(report)

    def cancel_once_long_runs() -> None:
        wait_for(lambda: "long" in report.started(), "the long step to start")
        coordinator.cancel()

    canceller = threading.Thread(target=cancel_once_long_runs)
    canceller.start()
    try:
        outcome = coordinator.run()
    finally:
        canceller.join()
        db.close()
    assert outcome.status is RunStatus.INTERRUPTED
    assert outcome.exit_code == 130
    assert statuses(outcome) == {
        "long": Status.INTERRUPTED,
        "after": Status.SKIPPED,
        "other": Status.SKIPPED,
    }
    assert report.started() == ["long"]
    assert coordinator.cancel() is False  # already stopping


# -- the reporter ---------------------------------------------------------------


def test_the_coordinator_ticks_its_reporter_while_it_waits_for_jobs(chdir: Path) -> None:
    from lokfile.events import Reporter

    class TouchOnTick(Collect):
        def tick(self) -> None:
            super().tick()
            (chdir / "ticked").touch()

    project = Project(
        chdir,
        f"""
        name = "w"
        [[steps]]
        name = "wait"
        shell = "{waits_for("ticked")}"
        timeout = 10000
        """,
    )
    report: Reporter = TouchOnTick()  # the protocol the engine calls: events and ticks
    assert isinstance(report, TouchOnTick)
    outcome, _ = project.run(report)
    assert outcome.results["wait"].status is Status.RAN
    assert report.ticks >= 1


# -- limits -------------------------------------------------------------------


def test_a_backends_concurrency_is_held_while_other_work_runs(chdir: Path) -> None:
    project = Project(
        chdir,
        """
        name = "w"
        [[steps]]
        name = "each"
        for_each = '["a", "b", "c", "d"]'
        backend = "one"
        prompt = "say {{ item }}"
        [[steps]]
        name = "shell"
        shell = "echo beside"
        """,
        """
        [backends.one]
        type = "test"
        latency_ms = 50
        concurrency = 1
        """,
    )
    outcome, report = project.run()
    assert outcome.status is RunStatus.SUCCEEDED, outcome.results["each"].error
    units = sorted(outcome.results["each"].units, key=lambda u: u.started)
    assert [u.output for u in sorted(units, key=lambda u: u.name)] == [
        "[one] say a",
        "[one] say b",
        "[one] say c",
        "[one] say d",
    ]
    for before, after in itertools.pairwise(units):
        assert after.started >= before.ended, "two jobs of a concurrency-1 backend overlapped"
    assert "shell" in report.started()


# -- statuses -----------------------------------------------------------------


def test_a_dry_run_marks_what_would_run_stale_in_results_units_and_events(chdir: Path) -> None:
    from lokfile.reporters import outcome_json

    project = Project(
        chdir,
        """
        name = "w"
        [[steps]]
        name = "a"
        shell = "echo a"
        [[steps]]
        name = "b"
        depends_on = ["a"]
        shell = "echo {{ steps.a.output }}"
        """,
    )
    outcome, report = project.run(dry_run=True)
    assert statuses(outcome) == {"a": Status.STALE, "b": Status.STALE}
    assert [u.status for u in outcome.results["a"].units] == [Status.STALE]
    assert outcome.results["b"].reason == "upstream a will run"
    finished = [e for e in report.events if isinstance(e, StepFinished)]
    assert [e.status for e in finished] == [Status.STALE, Status.STALE]
    assert all(isinstance(e.status, Status) for e in finished)
    doc = outcome_json(outcome)  # the JSON still says "stale"
    assert [s["status"] for s in doc["steps"]] == ["stale", "stale"]
    assert doc["plan"] == {"would_run": ["a", "b"], "fresh": [], "skipped": []}
    assert doc["counts"] == {"ran": 0, "reused": 0, "failed": 0, "skipped": 0, "stale": 2}
    assert report.started() == []


# -- records --------------------------------------------------------------------


def _records() -> list[type]:
    from lokfile.engine.units import Unit, UnitEnv, UnitSpec
    from lokfile.outcome import StepResult, UnitSummary, WorkflowSummary
    from lokfile.worker.jobs import EditSettings, Job, JobResult, QueryJob, ShellJob

    return [
        Job,
        JobResult,
        ShellJob,
        QueryJob,
        EditSettings,
        Unit,
        UnitSpec,
        UnitEnv,
        RunOptions,
        StepResult,
        RunOutcome,
        UnitSummary,
        WorkflowSummary,
    ]


@pytest.mark.parametrize("record", _records(), ids=lambda r: r.__name__)
def test_the_engines_wide_records_are_built_with_keywords_only(record: type) -> None:
    positional = [
        name
        for name, p in inspect.signature(record).parameters.items()
        if p.kind is not inspect.Parameter.KEYWORD_ONLY
    ]
    assert positional == []
