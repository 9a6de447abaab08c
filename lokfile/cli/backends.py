"""`lok ask`, `lok doctor` and `lok backends`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from lokfile.agents.doctor import where
from lokfile.cli import Session, backend_option
from lokfile.cli.common import emit_json


def _session(ctx: click.Context) -> Session:
    found = ctx.find_object(Session)
    return found if found is not None else Session(directory=None, config_file=None, debug=False)


def _open(ctx: click.Context) -> tuple[Any, Any, Path]:
    """(project, config, working directory) for the global options."""
    from lokfile.config import load_config
    from lokfile.errors import UsageError
    from lokfile.project import Project, find_root

    session = _session(ctx)
    cwd = Path.cwd()
    if session.directory is not None:
        if not session.directory.is_dir():
            raise UsageError(
                f"-C {session.directory}: no such directory", "give an existing folder"
            )
        cwd = session.directory.absolute()
    project = Project(find_root(cwd))
    return project, load_config(project, session.config_file), cwd


def _emit(document: Any) -> None:
    emit_json(document)


# --------------------------------------------------------------------------
# lok backends
# --------------------------------------------------------------------------


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def backends(ctx: click.Context, as_json: bool) -> None:
    """List the configured backends: type, enabled, where, model.

    Keys are never shown, only the name of the variable that holds one.
    `lok doctor` checks whether each one actually works.
    """
    _, config, _ = _open(ctx)
    rows = [config.backends[name] for name in sorted(config.backends)]
    if as_json:
        _emit({"backends": [_backend_json(b) for b in rows]})
        return
    if not rows:
        click.echo("No backends configured. Add a [backends.NAME] table to lok.toml.")
        return
    table = [("NAME", "TYPE", "ENABLED", "WHERE", "MODEL")] + [
        (b.name, b.type, "yes" if b.enabled else "no", where(b), b.model or "-") for b in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:4])]
        click.echo("  ".join([*cells, row[4]]).rstrip())


def _backend_json(b: Any) -> dict[str, Any]:
    return {
        "name": b.name,
        "type": b.type,
        "enabled": b.enabled,
        "where": where(b),
        "command": b.command,
        "url": b.url,
        "args": list(b.args),
        "model": b.model,
        "api_key_env": b.api_key_env,
        "timeout": b.timeout_s,
    }


# --------------------------------------------------------------------------
# lok doctor
# --------------------------------------------------------------------------


@click.command()
@click.option("--probe", is_flag=True, help="Also send each backend a one-line prompt.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@backend_option("Check only these backends, comma-separated.", "names")
@click.pass_context
def doctor(ctx: click.Context, probe: bool, as_json: bool, names: str | None) -> None:
    """Check every configured, enabled backend: can it answer now (the check `auto`
    and `lok ask` make: CLI installed, server reachable, local model present, key
    variable set), then its version and models.

    Checks run in parallel. Exits 1 when no backend is ready, 0 otherwise.
    """
    from lokfile.agents.doctor import check_backends, doctor_document

    _, config, _ = _open(ctx)
    chosen, checks, ready = check_backends(config, names, probe)
    if as_json:
        _emit(doctor_document(chosen, checks, ready))
    else:
        _print_doctor(chosen, checks, ready)
    if not ready:
        sys.exit(1)  # not ctx.exit: lok runs click with standalone_mode=False, which drops it


def _print_doctor(chosen: list[Any], checks: dict[str, Any], ready: list[str]) -> None:
    from lokfile.agents import doctor
    from lokfile.backends import registry

    width = max((len(b.name) for b in chosen), default=0)
    warned = 0
    for b in chosen:
        check = checks.get(b.name)
        if check is None:
            click.echo(f"  {click.style('○', dim=True)} {b.name:<{width}}  disabled")
            continue
        verdict, health = check
        if health is None:
            mark, parts = click.style("✗", fg="red"), [verdict.detail]
        elif not verdict.ready:  # --probe: it did not answer
            mark, parts = click.style("✗", fg="red"), [health.detail]
        else:
            mark = click.style("✓", fg="green")
            if not health.ready:  # `auto` may pick it, but the deeper check found a problem
                mark = click.style("!", fg="yellow")
                warned += 1
            parts = [p for p in (health.version, health.detail) if p]
        key_set = doctor.key_set(b)
        var = b.api_key_env or registry.key_env(b.type) or "the key variable"
        if key_set is not None and var not in " ".join(parts):
            parts.append(f"{var} {'set' if key_set else 'NOT set'}")
        click.echo(f"  {mark} {b.name:<{width}}  {b.type}: {'; '.join(parts) or 'ready'}")
    enabled = sum(1 for b in chosen if b.name in checks)
    if ready:
        note = f" ({warned} with a warning: !)" if warned else ""
        click.echo(f"{len(ready)} of {enabled} enabled backend(s) ready{note}.")
    else:
        from lokfile.backends.ready import NO_BACKEND_HINT

        click.echo(f"No backend is ready: {NO_BACKEND_HINT}.")


# --------------------------------------------------------------------------
# lok ask
# --------------------------------------------------------------------------


@click.command()
@click.argument("prompt")
@backend_option(
    "Ask only these backends, comma-separated, in this order (default: every ready one).",
    "names",
)
@click.option(
    "-d",
    "--dir",
    "workdir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Run the backends in DIR (default: the current directory).",
)
@click.option("--no-cache", is_flag=True, help="Neither read nor write cached answers.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def ask(
    ctx: click.Context,
    prompt: str,
    names: str | None,
    workdir: Path | None,
    no_cache: bool,
    as_json: bool,
) -> None:
    """Ask every backend that can answer now PROMPT, in parallel, and print each answer.

    Without -b that is every enabled backend `lok doctor` calls ready (an
    installed CLI, a reachable server, the embedded model); with -b, the named
    ones whatever their state. Answers are cached by prompt and backend
    configuration (never by key or directory): asking again is free until
    `[cache] ttl_hours` passes. A failed answer is never cached. Exits 1 when
    every backend failed, 2 when none can answer.
    """
    from lokfile.agents import ask as asking
    from lokfile.errors import EXIT_FAILED

    project, config, cwd = _open(ctx)
    wanted = asking.parse_names(names)
    chosen = asking.choose(config, wanted)
    not_ready = chosen[1]
    if not_ready and not as_json:
        click.echo(
            f"(not ready, not asked: {', '.join(not_ready)}; `lok doctor` says why)", err=True
        )
    report = asking.ask_chosen(
        project,
        config,
        prompt,
        chosen,
        wanted is not None,
        str((workdir or cwd).absolute()),
        no_cache,
        notify=_retrying,
    )
    for r in report.skipped:
        why = r.error.summary() if r.error is not None else "not available"
        click.echo(f"warning: backend {r.name} is not available: {why}", err=True)
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        _emit(report.to_json())
    else:
        _print_results(report.results)
        if not report.results:
            click.echo("Error: no backend is available", err=True)
            click.echo("Hint: `lok doctor` shows what each backend is missing", err=True)
    if not report.ok:
        sys.exit(EXIT_FAILED)


def _retrying(backend: str, text: str) -> None:
    """A backend waits out a transient failure (stderr, so --json keeps stdout clean)."""
    click.echo(f"  ↻ {backend}: {text}", err=True)


def _print_results(results: list[Any]) -> None:
    """The original's blocks: blank line, `=== NAME ===`, blank line, the output."""
    for r in results:
        colour = "green" if r.ok else "red"
        header = click.style(f"=== {r.name} ===", fg=colour, bold=True)
        if r.cached:
            header += " " + click.style("(cached)", dim=True)
        click.echo("")
        click.echo(header)
        click.echo("")
        click.echo(r.text if r.ok else f"Error: {r.error.summary()}")
    if results:
        click.echo("")
