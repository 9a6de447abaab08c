"""`lok run` and `lok status`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from lokfile.cli import Session
from lokfile.cli.common import emit_json, emit_outcome, reporter


def _resume_args(
    ctx: Any, run_ref: str, workflow: str | None
) -> tuple[str, str, tuple[str, ...]]:
    """(run id, workflow, raw args) of the run to resume: the one `run_ref` names, as
    `lok runs show` reads it (lokfile.store.refs), or with no RUN the last one that
    did not succeed."""
    from lokfile.errors import UsageError
    from lokfile.store.refs import last_unfinished, resolve
    from lokfile.store.rundb import RunDB

    if not ctx.project.db_path.exists():
        raise UsageError("there is no run to resume", "run a workflow first: lok run NAME")
    db = RunDB.open(ctx.project.db_path)
    try:
        chosen = resolve(db, run_ref, workflow) if run_ref else last_unfinished(db, workflow)
        args = json.loads(chosen["args"] or "{}")
        raw = tuple(args.get("positional", [])) + tuple(
            f"{k}={v}" for k, v in args.get("named", {}).items()
        )
        return chosen["id"], chosen["workflow_path"] or chosen["workflow"], raw
    finally:
        db.close()


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("workflow", required=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option(
    "--force",
    "force",
    multiple=True,
    is_flag=False,
    flag_value="*",
    metavar="[STEP]",
    help="Rebuild every step, or only STEP (repeatable).",
)
@click.option("--dry-run", "-n", is_flag=True, help="Print the plan with reasons; call nothing.")
@click.option(
    "-j", "--jobs", type=click.IntRange(1, 1024), help="Steps to run at once (default 8)."
)
@click.option(
    "-k", "--keep-going", is_flag=True, help="After a failure, still run every independent branch."
)
@click.option(
    "--resume",
    "resume",
    is_flag=False,
    flag_value="",  # no RUN: the last run that did not succeed
    default=None,
    metavar="[RUN]",
    help="Continue an earlier run (default: the last one that did not succeed), with its "
    "workflow and arguments: a step that succeeded in it is not run again (volatile ones "
    "included) while its key is unchanged. "
    "RUN is latest, latest~N, a run id or a unique prefix, as in `lok runs show`.",
)
@click.option(
    "--executor",
    metavar="WHERE",
    help="Where stale jobs run: local (worker processes here, the default) or "
    "dask://HOST:PORT (a Dask scheduler; overrides [executor] in lok.toml).",
)
@click.option(
    "--max-cost",
    "max_cost",
    type=click.FloatRange(min=0),
    metavar="USD",
    help="Stop before a call would take the run's spending past USD dollars "
    "(over [budget] max_cost_usd); every backend asked must have a price.",
)
@click.option("--watch", is_flag=True, help="After the run, rerun whenever an input changes.")
@click.option("--restart", is_flag=True, help="With --watch: a change during a run restarts it.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@click.option(
    "-o",
    "--output",
    "output_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the results block to FILE instead of stdout.",
)
@click.pass_obj
def run(
    session: Session,
    workflow: str | None,
    args: tuple[str, ...],
    force: tuple[str, ...],
    dry_run: bool,
    jobs: int | None,
    keep_going: bool,
    resume: str | None,
    executor: str | None,
    max_cost: float | None,
    watch: bool,
    restart: bool,
    as_json: bool,
    output_file: Path | None,
) -> None:
    """Run WORKFLOW (a name or a path), rebuilding only the steps whose inputs changed.

    Arguments after WORKFLOW are workflow arguments: positional ({{ arg.1 }}) or
    NAME=value for declared [args]. Put lok's own options before WORKFLOW.
    """
    from lokfile.errors import UsageError

    force_steps = [f for f in force if f != "*"]
    if workflow is None and force_steps and resume is None:
        workflow = force_steps.pop()  # `lok run --force WF`: the value was the workflow
    force_all = "*" in force or (bool(force) and not force_steps)
    plain = workflow and not (force or dry_run or resume is not None or watch)
    report = reporter(as_json)
    if plain:
        assert workflow is not None
        outcome = _replay(session, workflow, args, report)
        if outcome is not None:  # nothing changed since the last run: recorded without loading
            emit_outcome(outcome, as_json, output_file, report)
            sys.exit(outcome.exit_code)
    from lokfile import api

    ctx = api.open_project(session.directory, session.config_file)
    make = api.choose_executor(ctx.config, executor)  # a bad --executor: exit 2, before anything
    resumed_from = None
    if resume is not None:
        resumed_from, recorded_wf, recorded_args = _resume_args(ctx, resume, workflow)
        workflow = workflow or recorded_wf
        args = args or recorded_args
    if not workflow:
        raise UsageError("which workflow?", "lok run NAME (see `lok workflow list`)")
    if watch:
        from lokfile.cli.watch import watch_loop

        if max_cost is not None:
            raise UsageError(
                "--max-cost does not go with --watch",
                "set [budget] max_cost_usd in lok.toml: every rerun of the watch keeps to it",
            )

        watch_loop(session, workflow, args, jobs, keep_going, restart, as_json)
        return
    wf = api.load(ctx, workflow)
    unknown = [s for s in force_steps if s not in wf.step_names]
    if unknown:
        raise UsageError(
            f"--force {unknown[0]}: no step '{unknown[0]}' in workflow '{wf.name}'",
            f"steps: {', '.join(wf.step_names)}",
        )
    positional, named = api.split_args(wf, args)
    options = api.RunOptions(
        args=positional,
        named=named,
        force_all=force_all,
        force_steps=frozenset(force_steps),
        dry_run=dry_run,
        jobs=jobs or ctx.config.defaults.jobs,
        keep_going=keep_going,
        resumed_from=resumed_from,
        max_cost_usd=max_cost,
    )
    outcome = api.run(
        ctx,
        wf,
        options,
        report,
        snapshot_key=_snapshot_key(session, workflow, args),
        executor=make,
    )
    emit_outcome(outcome, as_json, output_file, report)
    sys.exit(outcome.exit_code)


def _snapshot_key(
    session: Session, workflow: str, args: tuple[str, ...]
) -> tuple[str, str, tuple[str, ...], str | None]:
    return (
        os.getcwd(),
        workflow,
        tuple(args),
        str(session.config_file) if session.config_file else None,
    )


def _replay(session: Session, workflow: str, args: tuple[str, ...], report: Any) -> Any:
    """The no-op fast path (lokfile.engine.snapshot); None when the normal path must run."""
    from lokfile.engine import snapshot
    from lokfile.project import find_root
    from lokfile.worker import journal

    cwd, name, raw, config_file = _snapshot_key(session, workflow, args)
    root = find_root(session.directory or Path(cwd))
    journal.recover(root)  # before anything: an edit lok died in is put back
    return snapshot.replay(root, cwd, name, raw, config_file, report)


@click.command()
@click.argument("workflow")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@click.pass_obj
def status(session: Session, workflow: str, args: tuple[str, ...], as_json: bool) -> None:
    """Show each step of WORKFLOW as fresh or stale, with the reason. Runs nothing."""
    from lokfile import api

    ctx = api.open_project(session.directory, session.config_file)
    wf = api.load(ctx, workflow)
    doc = api.status(ctx, wf, *api.split_args(wf, args))
    if as_json:
        emit_json(doc)
        return
    width = max((len(n) for n in wf.step_names), default=4)
    for step in doc["steps"]:
        click.echo(f"{step['name'].ljust(width)}  {step['state']:6}  {step['reason']}")
