"""`lok workflow list|show|validate` and `lok init`."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from lokfile.cli import Session
from lokfile.cli.common import emit_json


def _session(ctx: click.Context) -> Session:
    found = ctx.find_object(Session)
    return found if found is not None else Session(directory=None, config_file=None, debug=False)


def _cwd(session: Session) -> Path:
    from lokfile.errors import UsageError

    if session.directory is None:
        return Path.cwd()
    if not session.directory.is_dir():
        raise UsageError(f"-C {session.directory}: no such directory", "give an existing folder")
    return session.directory.absolute()


def _open(ctx: click.Context) -> tuple[Any, Any, Path]:
    """(project, config, cwd) for the global options."""
    from lokfile.config import load_config
    from lokfile.project import Project, find_root

    session = _session(ctx)
    cwd = _cwd(session)
    project = Project(find_root(cwd))
    return project, load_config(project, session.config_file), cwd


def _emit(document: Any) -> None:
    emit_json(document)


@click.group()
def workflow() -> None:
    """List, show and validate workflows."""


@workflow.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def list_cmd(ctx: click.Context, as_json: bool) -> None:
    """Every workflow `lok run NAME` can reach, and where it comes from.

    Project workflows (.lok/workflows) hide user ones (~/.config/lok/workflows),
    which hide the built-ins. A file that does not load is listed with its error.
    """
    from lokfile.workflow.loader import list_workflows, workflows_document

    project, config, _ = _open(ctx)
    infos = list_workflows(project, config)
    if as_json:
        _emit(workflows_document(infos))
        return
    if not infos:
        click.echo("No workflows found. `lok init` writes an example to .lok/workflows/.")
        return
    width = max(len(info.name) for info in infos)
    for info in infos:
        origin = info.origin + (f", overrides {'/'.join(info.overrides)}" if info.overrides else "")
        click.echo(f"{info.name:<{width}}  ({origin})")
        if info.error:
            click.echo("  " + click.style(f"broken: {info.error}", fg="red"))
        elif info.description:
            click.echo("  " + click.style(info.description, dim=True))


def step_json(step: Any) -> dict[str, Any]:
    """A step as plain JSON values."""
    data = asdict(step)
    data["kind"] = step.kind.value
    return data


def workflow_json(wf: Any) -> dict[str, Any]:
    """A loaded workflow as plain JSON values."""
    data = asdict(wf)
    data["steps"] = [step_json(s) for s in wf.steps]
    return data


@workflow.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def show(ctx: click.Context, name: str, as_json: bool) -> None:
    """The resolved steps of workflow NAME (after `extends`)."""
    from lokfile.durations import format_ms
    from lokfile.workflow.loader import load_workflow

    project, config, cwd = _open(ctx)
    wf = load_workflow(name, project, config, cwd=cwd)
    if as_json:
        _emit(workflow_json(wf))
        return
    click.echo(click.style(wf.name, bold=True) + f"  ({wf.origin}: {wf.path})")
    if wf.description:
        click.echo(f"  {wf.description}")
    if len(wf.files) > 1:
        click.echo("  extends: " + " <- ".join(reversed(wf.files[1:])))
    for arg in wf.args:
        default = f" = {arg.default!r}" if arg.default is not None else ""
        required = " (required)" if arg.required else ""
        click.echo(f"  arg {arg.name}{default}{required}  {arg.description}".rstrip())
    for index, step in enumerate(wf.steps, start=1):
        text: str | None
        if step.shell is not None:
            kind, text = "shell", step.shell
        else:
            kind, text = f"llm: {', '.join(step.backends)}", step.prompt
        click.echo(f"{index:>3}. {step.name}  [{kind}] {_first_line(text)}")
        details = [
            ("depends_on", ", ".join(step.depends_on)),
            ("when", step.when or ""),
            ("for_each", step.for_each or ""),
            ("sources", ", ".join(step.sources)),
            ("outputs", ", ".join(step.outputs)),
            ("env", ", ".join(step.env)),
            ("timeout", format_ms(step.timeout_ms) if step.timeout_ms != 120_000 else ""),
            ("retries", str(step.retries) if step.retries else ""),
            ("continue_on_error", "true" if step.continue_on_error else ""),
            ("consensus", step.consensus if len(step.backends) > 1 else ""),
            ("output_format", step.output_format if step.output_format != "text" else ""),
        ]
        for key, value in details:
            if value:
                click.echo(f"       {key}: {value}")


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    first = lines[0] if lines else ""
    more = " …" if len(lines) > 1 or len(first) > 70 else ""
    return first[:70] + more


@workflow.command("validate")
@click.argument("targets", nargs=-1, required=True, metavar="NAME|PATH...")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def validate(ctx: click.Context, targets: tuple[str, ...], as_json: bool) -> None:
    """Check workflows without running anything: keys, types, the step graph,
    backends and templates. Exit 0 when all are valid, 2 otherwise."""
    from lokfile.errors import LokError, WorkflowError
    from lokfile.workflow.loader import load_workflow

    project, config, cwd = _open(ctx)
    results: list[dict[str, Any]] = []
    failed = False
    for target in targets:
        try:
            wf = load_workflow(target, project, config, cwd=cwd)
        except LokError as exc:
            failed = True
            problems = exc.problems if isinstance(exc, WorkflowError) else []
            results.append(
                {
                    "target": target,
                    "ok": False,
                    "error": exc.message,
                    "hint": exc.hint,
                    "problems": [p._asdict() for p in problems],
                }
            )
            if not as_json:
                for line in exc.lines():
                    click.echo(line, err=True)
            continue
        results.append(
            {
                "target": target,
                "ok": True,
                "name": wf.name,
                "path": wf.path,
                "origin": wf.origin,
                "steps": len(wf.steps),
                "files": list(wf.files),
            }
        )
        if not as_json:
            count = len(wf.steps)
            click.echo(f"✓ {wf.name}: {count} step{'s' if count != 1 else ''}")
    if as_json:
        _emit({"ok": not failed, "results": results})
    if failed:
        # not ctx.exit: lok's entry point runs click with standalone_mode=False, which drops it
        sys.exit(2)


# --------------------------------------------------------------------------
# lok init
# --------------------------------------------------------------------------


@click.command()
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
@click.pass_context
def init(ctx: click.Context, force: bool) -> None:
    """Create lok.toml (every setting explained), an example workflow that works
    offline, and .lok/.gitignore, in the current directory (or -C DIR)."""
    from lokfile.cli.init_files import FILES
    from lokfile.errors import UsageError
    from lokfile.project import gitignore_update

    root = _cwd(_session(ctx))
    targets = [(root / rel, text) for rel, text in FILES]
    existing = [path for path, _ in targets if path.exists()]
    if existing and not force:
        names = ", ".join(str(path.relative_to(root)) for path in existing)
        one = len(existing) == 1
        raise UsageError(
            f"{names} already exist{'s' if one else ''}",
            f"lok init --force overwrites {'it' if one else 'them'}",
        )
    for path, text in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        click.echo(f"wrote {path.relative_to(root)}")
    ignore = root / ".lok" / ".gitignore"
    # merged, not overwritten: it may already hold the user's own lines
    current = ignore.read_text(encoding="utf-8") if ignore.exists() else None
    merged = gitignore_update(current)
    if merged is not None:
        ignore.write_text(merged, encoding="utf-8")
        click.echo("wrote .lok/.gitignore" if not current else "updated .lok/.gitignore")
    click.echo("\nNext: lok run example    (and again: nothing reruns)\n      lok workflow list")
