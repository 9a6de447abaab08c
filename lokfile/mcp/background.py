"""Runs that outlive the tool call that started them: one thread per run, in the server.

    run_workflow ──> Background.start ──> thread: api.run(…, report=LiveRun, started=…)
                          │ waits until the run has an id (or failed before it had one)
                          v
                     LiveRun ── events (steps finished, steps running) ──> progress, run_status
                          │ cancel() = Coordinator.cancel(): what one Ctrl-C does
                          v
                     done: the history holds the run (the coordinator wrote it)

Why a thread and not a `lok run` subprocess: the run is `api.run`, the same
call `lok run` makes, so it is incremental, cached and recorded by the one
code path; the run id is known the moment the coordinator exists (a
subprocess would have to be parsed for it); progress arrives as the engine's
own events, not as scraped lines; and a cancel is `Coordinator.cancel()`, the
stop the engine already offers other threads (watch mode uses it), which ends
the steps' process trees and records the run as interrupted. The steps still
execute in worker processes (lokfile/executors/local.py), so a step cannot
take the server down. The server's history writes are the same as any lok
process's: the run's own thread opens, writes and closes its connection.

Nothing here imports the MCP SDK.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from lokfile import api
from lokfile.errors import LokError
from lokfile.events import Event, StepFinished, UnitStarted
from lokfile.model import Workflow

SHUTDOWN_WAIT_S = 20.0  # how long a closing server waits for its cancelled runs to record


class LiveRun:
    """One run going on in the background: a Reporter for its events, and its end."""

    def __init__(self, workflow: str, steps: int) -> None:
        self.workflow = workflow
        self.steps = steps
        self.started = time.time()
        self.run_id: str | None = None
        self.outcome: api.RunOutcome | None = None
        self.error: LokError | None = None
        self.done = False
        self.finished: list[dict[str, Any]] = []  # the steps that ended, in that order
        self.running: dict[str, None] = {}  # the steps with a unit going on (ordered set)
        self._coordinator: Any = None
        self._cancelled = False
        self._changed = threading.Condition()

    # -- the engine's side (the run's thread) ---------------------------------

    def __call__(self, event: Event) -> None:
        with self._changed:
            if isinstance(event, UnitStarted):
                self.running.setdefault(event.step, None)
            elif isinstance(event, StepFinished):
                self.running.pop(event.step, None)
                self.finished.append(
                    {
                        "name": event.step,
                        "status": event.status.value,
                        "reason": event.reason,
                        "duration_s": round(event.duration, 4),
                        "backend": event.backend,
                        "error": event.error,
                    }
                )
            else:
                return
            self._changed.notify_all()

    def tick(self) -> None:
        """The coordinator waits for jobs: nothing to tell."""

    def attach(self, coordinator: Any) -> None:
        """The run has begun: its coordinator (and so its id) is known."""
        with self._changed:
            self._coordinator = coordinator
            self.run_id = coordinator.run_id
            if self._cancelled:
                coordinator.cancel()
            self._changed.notify_all()

    def end(self, outcome: api.RunOutcome | None, error: LokError | None) -> None:
        with self._changed:
            self.outcome, self.error, self.done = outcome, error, True
            self._changed.notify_all()

    # -- the server's side (any thread) ---------------------------------------

    def wait(self, seen: int, timeout: float) -> None:
        """Block until a step ends beyond the first `seen`, the run ends, or `timeout`."""
        with self._changed:
            self._changed.wait_for(lambda: self.done or len(self.finished) > seen, timeout)

    def wait_started(self) -> None:
        """Block until the run has an id, or ended before it got one."""
        with self._changed:
            self._changed.wait_for(lambda: self.done or self.run_id is not None)

    def wait_done(self, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.done, timeout)

    def cancel(self) -> None:
        """Stop the run as one Ctrl-C would: running steps are ended, the run is
        recorded as interrupted with everything that finished."""
        with self._changed:
            self._cancelled = True
            if self._coordinator is not None:
                self._coordinator.cancel()

    def result(self, step: str) -> Any:
        """The StepResult of a step that has ended in this run (None if it has not)."""
        with self._changed:
            names = {s["name"] for s in self.finished}
            coordinator = self._coordinator
        if coordinator is None or step not in names:
            return None
        return coordinator.results.get(step)

    def document(self) -> dict[str, Any]:
        """What a run still going on has done so far (a finished run reads its history)."""
        with self._changed:
            return {
                "run_id": self.run_id,
                "workflow": self.workflow,
                "status": "running",
                "elapsed_s": round(time.time() - self.started, 3),
                "steps_total": self.steps,
                "steps_done": len(self.finished),
                "running": list(self.running),
                "steps": [dict(s) for s in self.finished],
            }

    def events_since(self, seen: int) -> list[dict[str, Any]]:
        with self._changed:
            return [dict(s) for s in self.finished[seen:]]


class Background:
    """The runs this server started that have not ended, by run id."""

    def __init__(self) -> None:
        self._live: dict[str, LiveRun] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self, ctx: api.Context, workflow: Workflow, options: api.RunOptions) -> LiveRun:
        """Start `workflow` on a thread of its own; return once it has a run id.

        A bad request found before the run begins (a missing argument, no backend for
        `auto`, no place for history) is raised here, as `lok run` would report it.
        """
        live = LiveRun(workflow.name, len(workflow.steps))

        def work() -> None:
            outcome, error = None, None
            try:
                outcome = api.run(ctx, workflow, options, live, started=live.attach)
            except LokError as exc:
                error = exc
            except Exception as exc:  # the run's bug must not take the server down
                error = LokError(
                    f"internal error: {type(exc).__name__}: {exc}",
                    "the server keeps serving; run it with `lok --debug run` for the traceback",
                )
            finally:
                with self._lock:  # with start()'s check: a run that ended is never registered
                    if live.run_id is not None:
                        self._live.pop(live.run_id, None)
                    live.end(outcome, error)

        thread = threading.Thread(target=work, name=f"lok-run-{workflow.name}", daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        live.wait_started()
        with self._lock:
            if live.run_id is not None and not live.done:
                self._live[live.run_id] = live
        if live.run_id is None and live.error is not None:
            raise live.error
        return live

    def get(self, run_id: str) -> LiveRun | None:
        """The run with this id if it is still going on here."""
        with self._lock:
            return self._live.get(run_id)

    def shutdown(self, wait_s: float = SHUTDOWN_WAIT_S) -> None:
        """Cancel every run still going on and give them `wait_s` to record it."""
        with self._lock:
            live, threads = list(self._live.values()), list(self._threads)
        for run in live:
            run.cancel()
        deadline = time.monotonic() + wait_s
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
