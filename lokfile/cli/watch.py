"""`lok watch WF` and `lok run WF --watch`: run, then rerun whenever an input changes.

Each cycle runs in this process through `api.run` (so it records itself, and
only stale steps execute). Watcher threads feed a queue; the main thread owns
the runs, because the coordinator installs its Ctrl-C handler there.

Output: progress, a `changed:` line per cycle and errors on stderr; each
cycle's results block on stdout (with --json: one JSON document per cycle, one
per line).
"""

from __future__ import annotations

import json
import queue
import signal
import sys
from pathlib import Path
from typing import Any

import click

from lokfile.cli import Session

WAIT_TICK_S = 0.1  # how often an idle watch looks at the Ctrl-C flag


class _Loop:
    """One watch session: the current workflow, the watcher, the queue of changes."""

    def __init__(
        self,
        session: Session,
        name: str,
        args: tuple[str, ...],
        jobs: int | None,
        keep_going: bool,
        restart: bool,
        as_json: bool,
    ) -> None:
        from lokfile.watch import Watcher

        self.session = session
        self.name = name
        self.args = args
        self.jobs = jobs
        self.keep_going = keep_going
        self.restart = restart
        self.as_json = as_json
        self.changes: queue.Queue[set[str]] = queue.Queue()
        self.watcher = Watcher(self._on_change, self._on_watch_error)
        self.active: Any = None  # the running cycle's coordinator
        self.restarted = False
        self.stopping = False
        self.cycle = 0  # each attempt to run after a change, broken ones included
        self.changed: list[str] = []  # what started the current cycle
        self.ws: Any = None

    # -- called from other threads / signal handlers -------------------------

    def _on_change(self, paths: set[str]) -> None:
        self.changes.put(paths)
        if self.restart and _cancel(self.active):
            self.restarted = True

    def _on_watch_error(self, text: str) -> None:
        click.echo(f"Warning: {text}", err=True)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        # outside a run (the coordinator has its own handler during one)
        self.stopping = True
        _cancel(self.active)

    # -- the loop ------------------------------------------------------------

    def main(self) -> int:
        """Run, then rerun on every change until Ctrl-C; the exit code (130)."""
        stops = (signal.SIGINT, signal.SIGTERM)  # SIGTERM is Ctrl-C
        previous = {sig: signal.signal(sig, self._on_sigint) for sig in stops}
        try:
            return self._cycles()
        finally:
            self.watcher.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _cycles(self) -> int:
        loaded = self._load(initial=True)
        while not self.stopping:
            if loaded is not None:
                outcome = self._run(*loaded)
                if self.stopping or (outcome.exit_code == 130 and not self.restarted):
                    return 130  # Ctrl-C: the run recorded itself as interrupted
                if outcome.exit_code == 130:
                    self.changed = self._drain(set())
                    click.echo(f"↻ restarting, changed: {self._show()}", err=True)
                    loaded = self._load()
                    continue
            click.echo(f"Watching {self.ws.describe()} for changes (Ctrl-C to stop)", err=True)
            got = self._wait()
            if got is None:
                break
            self.changed = got
            click.echo(f"↻ changed: {self._show()}", err=True)
            loaded = self._load()
        return 130

    def _load(self, initial: bool = False) -> tuple[Any, Any] | None:
        """(context, workflow), or None after printing why the workflow does not load."""
        from lokfile import api
        from lokfile.backends.ready import forget
        from lokfile.errors import LokError, UsageError
        from lokfile.watch import watch_set

        self.cycle += 1
        forget()  # a server may have started or stopped since the last cycle: ask again
        ctx = wf = None
        try:
            ctx = api.open_project(self.session.directory, self.session.config_file)
            wf = api.load(ctx, self.name)
        except LokError as exc:
            if initial and isinstance(exc, UsageError):
                raise  # no such workflow at all: nothing to watch
            self._broken(exc)
        if self.stopping:
            return None
        if wf is not None and ctx is not None:
            self.ws = watch_set(ctx.project.root, wf, ctx.config, self._explicit())
            self.watcher.watch(self.ws)
            return ctx, wf
        if self.ws is None:  # broken from the start: watch what we can name
            self.ws = self._fallback_set(ctx)
            self.watcher.watch(self.ws)
        click.echo("Waiting for a fix…", err=True)
        return None

    def _broken(self, exc: Any) -> None:
        """Say why this cycle cannot run (stderr; with --json also a document on stdout)."""
        from lokfile.cli import report_error

        report_error(exc)
        if self.as_json:
            doc = {
                "cycle": self.cycle,
                "changed": [self.ws.show(p) for p in self.changed] if self.ws else [],
                "error": {"message": exc.message, "hint": exc.hint},
            }
            sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")
            sys.stdout.flush()

    def _explicit(self) -> list[Path]:
        from lokfile.project import Project, find_root

        root = find_root(self.session.directory or Path.cwd())
        extra = [Project(root).config_path]
        if self.session.config_file is not None:
            extra.append(self.session.config_file)
        return extra

    def _fallback_set(self, ctx: Any) -> Any:
        from lokfile.project import Project, find_root
        from lokfile.watch import watch_set
        from lokfile.workflow.loader import find_workflow

        project = (
            ctx.project
            if ctx is not None
            else Project(find_root(self.session.directory or Path.cwd()))
        )
        extra = self._explicit()
        try:
            extra.append(find_workflow(self.name, project)[0])
        except Exception:  # the workflow file itself is missing: the config is all we have
            pass
        return watch_set(project.root, None, None, extra)

    def _run(self, ctx: Any, wf: Any) -> Any:
        """One cycle: run the workflow, print its results; the RunOutcome."""
        from lokfile import api
        from lokfile.cli.common import emit_outcome, reporter

        positional, named = api.split_args(wf, self.args)
        options = api.RunOptions(
            args=positional,
            named=named,
            jobs=self.jobs or ctx.config.defaults.jobs,
            keep_going=self.keep_going,
        )
        self.restarted = False

        def started(coordinator: Any) -> None:
            self.active = coordinator
            if self.stopping:
                _cancel(coordinator)

        report = reporter(self.as_json)
        try:
            outcome = api.run(ctx, wf, options, report, started)
        finally:
            self.active = None
        if self.as_json:
            doc = api.outcome_json(outcome)
            doc["cycle"] = self.cycle
            doc["changed"] = [self.ws.show(p) for p in self.changed]
            doc["restarted"] = bool(outcome.exit_code == 130 and self.restarted)
            sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")
            sys.stdout.flush()
            report.summary_last(outcome)
        elif not (outcome.exit_code == 130 and self.restarted and not self.stopping):
            emit_outcome(outcome, False, None, report)
        else:
            report.summary_last(outcome)
        return outcome

    def _wait(self) -> list[str] | None:
        """The paths changed by the next batch (and whatever queued with it); None on Ctrl-C."""
        while not self.stopping:
            try:
                first = self.changes.get(timeout=WAIT_TICK_S)
            except queue.Empty:
                continue
            return self._drain(first)
        return None

    def _drain(self, paths: set[str]) -> list[str]:
        while True:
            try:
                paths |= self.changes.get_nowait()
            except queue.Empty:
                return sorted(paths)

    def _show(self) -> str:
        return ", ".join(self.ws.show(p) for p in self.changed)


def _cancel(coordinator: Any) -> bool:
    """Stop a running cycle as one Ctrl-C would; False when it was already stopping."""
    return coordinator is not None and bool(coordinator.cancel())


def watch_loop(
    session: Session,
    workflow: str,
    args: tuple[str, ...],
    jobs: int | None,
    keep_going: bool,
    restart: bool,
    as_json: bool,
) -> None:
    """Run `workflow`, then rerun it on every change until Ctrl-C (exit 130)."""
    loop = _Loop(session, workflow, args, jobs, keep_going, restart, as_json)
    code = loop.main()
    click.echo("Interrupted.", err=True)
    sys.exit(code)


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("workflow")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option(
    "-j", "--jobs", type=click.IntRange(1, 1024), help="Steps to run at once (default 8)."
)
@click.option(
    "-k", "--keep-going", is_flag=True, help="After a failure, still run every independent branch."
)
@click.option("--restart", is_flag=True, help="A change during a run restarts it (default: queue).")
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON document per cycle, one per line."
)
@click.pass_obj
def watch(
    session: Session,
    workflow: str,
    args: tuple[str, ...],
    jobs: int | None,
    keep_going: bool,
    restart: bool,
    as_json: bool,
) -> None:
    """Run WORKFLOW, then rerun it whenever its sources, its files or the config change.

    Only stale steps run again. A change during a run waits for it to end
    (or restarts it, with --restart). Ctrl-C or SIGTERM stops watching (exit 130).
    """
    watch_loop(session, workflow, args, jobs, keep_going, restart, as_json)
