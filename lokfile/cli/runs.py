"""`lok runs list/show/diff/verify/revert` and `lok gc`: the run history, read back."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from lokfile.cli import Session
from lokfile.cli.common import emit_json


def _open(session: Session) -> Any:
    from lokfile import api

    return api.open_project(session.directory, session.config_file)


def _order(ctx: Any, row: dict[str, Any]) -> list[str] | None:
    from lokfile import api

    return api.step_order(ctx, row)


def _emit_json(doc: Any) -> None:
    emit_json(doc)


def _color() -> bool:
    return sys.stdout.isatty()


@click.group()
def runs() -> None:
    """Run history: list, show, diff, verify, revert.

    \b
    Run references: latest, latest~1 (the run before it, same workflow),
    a run id, or a unique prefix of one.
    """


@runs.command("list")
@click.argument("workflow", required=False)
@click.option(
    "-n",
    "--limit",
    type=click.IntRange(1),
    default=20,
    show_default=True,
    metavar="N",
    help="Show the newest N runs.",
)
@click.option("--all", "show_all", is_flag=True, help="Every run, not only the newest N.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@click.pass_obj
def list_runs(
    session: Session, workflow: str | None, limit: int, show_all: bool, as_json: bool
) -> None:
    """List runs, newest first (of WORKFLOW only, when given)."""
    from lokfile.history.runs import render_list, run_summary
    from lokfile.store.rundb import RunDB

    ctx = _open(session)
    rows: list[dict[str, Any]] = []
    if ctx.project.db_path.exists():
        db = RunDB.open(ctx.project.db_path)
        try:
            rows = db.runs(workflow, None if show_all else limit)
        finally:
            db.close()
    summaries = [run_summary(r) for r in rows]
    if as_json:
        _emit_json({"runs": summaries})
    else:
        click.echo(render_list(summaries), nl=False)


@runs.command("show", short_help="One run: steps, reasons, timings, backends, outputs.")
@click.argument("run", required=False)
@click.option("-s", "--step", help="Only this step, with its whole output.")
@click.option("-w", "--workflow", help="Resolve RUN among this workflow's runs.")
@click.option("--outputs", "full", is_flag=True, help="Print every step's whole output.")
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a self-contained HTML report to FILE.",
)
@click.option("--diff", "diff_ref", metavar="RUN", help="With --html: include the diff from RUN.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@click.pass_obj
def show(
    session: Session,
    run: str | None,
    step: str | None,
    workflow: str | None,
    full: bool,
    html_file: Path | None,
    diff_ref: str | None,
    as_json: bool,
) -> None:
    """Show one run: every step's status, reason, timing, backend and output.

    Multi-backend steps list every backend's own answer. RUN is latest, latest~N,
    a run id or a unique prefix (default: latest).
    """
    from lokfile.errors import UsageError
    from lokfile.history.runs import open_db, render_show, run_detail
    from lokfile.store.artifacts import Store
    from lokfile.store.refs import resolve

    if diff_ref is not None and html_file is None:
        raise UsageError("--diff goes with --html", "lok runs show RUN --html FILE --diff OTHER")
    ctx = _open(session)
    store = Store(ctx.project.runs_dir)
    db = open_db(ctx.project)
    try:
        row = resolve(db, run, workflow)
        doc = run_detail(db, store, row, step, _order(ctx, row))
        if html_file is not None:
            _write_html(ctx, db, store, row, doc, diff_ref, html_file)
            if not as_json:
                return
    finally:
        db.close()
    if as_json:
        _emit_json(doc)
    else:
        click.echo(render_show(doc, full=full or step is not None), nl=False)


def _write_html(
    ctx: Any,
    db: Any,
    store: Any,
    row: dict[str, Any],
    doc: dict[str, Any],
    diff_ref: str | None,
    target: Path,
) -> None:
    from lokfile import api
    from lokfile.history.diff import diff_runs
    from lokfile.history.report import render_report, workflow_edges
    from lokfile.store.refs import resolve

    diff = None
    if diff_ref is not None:
        other = resolve(db, diff_ref, row["workflow"])
        diff = diff_runs(db, store, other, row, order=[s["name"] for s in doc["steps"]])
    edges = workflow_edges(doc, lambda path: api.load(ctx, path))
    html = render_report(doc, edges, diff)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(html, encoding="utf-8")
    click.echo(f"✓ Report written to {target}", err=True)


@runs.command("diff")
@click.argument("run_a", metavar="[A]", required=False)
@click.argument("run_b", metavar="[B]", required=False)
@click.option("-s", "--step", help="Only this step.")
@click.option("-w", "--workflow", help="Compare runs of this workflow (default: the latest's).")
@click.option("--stat", is_flag=True, help="Only a line per step with added/removed counts.")
@click.option("--exit-code", is_flag=True, help="Exit 1 when the runs differ, 0 when not.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@click.pass_obj
def diff(
    session: Session,
    run_a: str | None,
    run_b: str | None,
    step: str | None,
    workflow: str | None,
    stat: bool,
    exit_code: bool,
    as_json: bool,
) -> None:
    """What changed between run A and run B, step by step.

    Default: the two latest runs of the same workflow; with A only, A against
    the latest run of A's workflow. Per step: same, changed, only in A or only
    in B; which inputs of its key differ; a unified diff of text outputs and a
    diff by path of JSON outputs.
    """
    from lokfile.history.diff import diff_json, diff_runs, pick_runs, render
    from lokfile.history.runs import open_db
    from lokfile.store.artifacts import Store

    ctx = _open(session)
    store = Store(ctx.project.runs_dir)
    db = open_db(ctx.project)
    try:
        a, b = pick_runs(db, run_a, run_b, workflow)
        result = diff_runs(db, store, a, b, step, _order(ctx, b))
    finally:
        db.close()
    if as_json:
        _emit_json(diff_json(result))
    else:
        click.echo(render(result, stat=stat, color=_color()), nl=False)
    if exit_code and result.differ:
        sys.exit(1)


@runs.command("verify", short_help="Re-hash the store; report corrupt or missing artifacts.")
@click.option(
    "--repair",
    is_flag=True,
    help="Delete corrupt artifacts and forget cached results that need them (they rerun).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@click.pass_obj
def verify(session: Session, repair: bool, as_json: bool) -> None:
    """Re-hash every stored artifact; report corrupt and missing ones (exit 1 if any)."""
    from lokfile.history.sweep import render_verify, repair_store, verify_json, verify_store
    from lokfile.store.artifacts import Store
    from lokfile.store.rundb import RunDB

    ctx = _open(session)
    store = Store(ctx.project.runs_dir)
    db = RunDB.open(ctx.project.db_path) if ctx.project.db_path.exists() else None
    try:
        report = verify_store(store, db)
        if repair and not report.ok:
            repair_store(store, db, report)
    finally:
        if db is not None:
            db.close()
    if as_json:
        _emit_json(verify_json(report))
    else:
        click.echo(render_verify(report, store), nl=False)
    if not report.ok:
        sys.exit(1)


@runs.command("revert", short_help="Undo the file edits a step made in a run.")
@click.argument("run", required=False)
@click.option("-s", "--step", required=True, help="The step whose edits to undo.")
@click.option("--force", is_flag=True, help="Restore files even if they changed since the edit.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@click.pass_obj
def revert(session: Session, run: str | None, step: str, force: bool, as_json: bool) -> None:
    """Restore the files that STEP's edits replaced in RUN (default: latest).

    A file changed again since the edit is left alone unless --force.
    """
    from lokfile.history.revert import revert as revert_step
    from lokfile.history.runs import open_db
    from lokfile.store.artifacts import Store
    from lokfile.store.refs import resolve
    from lokfile.worker.snapshots import restored_by_journal

    ctx = _open(session)
    store = Store(ctx.project.runs_dir)
    db = open_db(ctx.project)
    try:
        row = resolve(db, run)
        restored: list[str] = revert_step(ctx.project, store, db, row["id"], step, force=force)
    finally:
        db.close()
    # a step lok was killed in: its journal put its files back when lok next started
    already = [] if restored else restored_by_journal(store, row["id"], step)
    if as_json:
        doc = {"run": row["id"], "step": step, "restored": restored}
        _emit_json({**doc, "already_restored": already} if already else doc)
        return
    if already:
        click.echo(
            f"Step {step} of run {row['id']} was stopped while editing; lok already put back "
            f"{', '.join(already)}. Nothing left to restore."
        )
    elif not restored:
        click.echo(f"Step {step} of run {row['id']} changed no files; nothing to restore.")
    for path in restored:
        click.echo(f"restored {path}")


@click.command()
@click.option(
    "--keep",
    type=click.IntRange(1),
    metavar="N",
    help="Keep the newest N runs of each workflow (default: every run).",
)
@click.option(
    "--max-size",
    metavar="SIZE",
    help="Then drop the oldest runs until the store fits (500M, 2G; K/M/G count in 1024s).",
)
@click.option("-n", "--dry-run", is_flag=True, help="Show what would go, and how many bytes.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@click.pass_obj
def gc(
    session: Session, keep: int | None, max_size: str | None, dry_run: bool, as_json: bool
) -> None:
    """Remove stored artifacts that no kept run reaches.

    The latest run of every workflow (and its latest successful run) is always
    kept, so rerunning it reuses everything.
    """
    from lokfile.history.sweep import apply_gc, gc_json, parse_size, plan_gc, render_gc
    from lokfile.store.artifacts import Store
    from lokfile.store.rundb import RunDB

    limit = parse_size(max_size) if max_size is not None else None
    ctx = _open(session)
    store = Store(ctx.project.runs_dir)
    if not ctx.project.db_path.exists() and not store.objects_dir.is_dir():
        if as_json:
            from lokfile.history.sweep import GcPlan

            _emit_json(gc_json(GcPlan(max_size=limit), dry_run))
        else:
            click.echo("Nothing to collect: no runs recorded yet.")
        return
    db = RunDB.open(ctx.project.db_path)
    try:
        plan = plan_gc(store, db, ctx.config, keep, limit)
        if not dry_run:
            apply_gc(store, db, plan)
    finally:
        db.close()
    if as_json:
        _emit_json(gc_json(plan, dry_run))
    else:
        click.echo(render_gc(plan, dry_run), nl=False)
