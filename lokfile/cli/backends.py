"""`lok ask`, `lok doctor` and `lok backends`."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import click

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


def where(backend: Any) -> str:
    """Where a backend lives, for a person: its url, or its command line."""
    from lokfile.backends import registry

    if registry.family(backend.type) == "http" or (backend.url and not backend.command):
        return str(backend.url or backend.command or "(default)")
    if backend.command:
        return shlex.join([*shlex.split(backend.command), *backend.args])
    return f"{backend.type} (default)"


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


def _check(backend: Any, probe: bool) -> tuple[Any, Any]:
    """(readiness, Health or None): the shared quick verdict (lokfile.backends.ready),
    then, for a backend that can answer, its own deeper check (version, model list)."""
    from lokfile.backends import create
    from lokfile.backends.base import BackendError, Health
    from lokfile.backends.ready import readiness

    verdict = readiness(backend)
    if not verdict.ready:
        return verdict, None
    try:
        return verdict, create(backend).health(probe=probe)
    except BackendError as exc:
        return verdict, Health(ready=False, detail=exc.message)
    except Exception as exc:  # a plugin's bug: report it, check the others
        return verdict, Health(
            ready=False, detail=f"health check crashed: {type(exc).__name__}: {exc}"
        )


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
    from concurrent.futures import ThreadPoolExecutor

    from lokfile.agents.ask import parse_names, select

    _, config, _ = _open(ctx)
    wanted = parse_names(names)
    if wanted is None:
        chosen = [config.backends[n] for n in sorted(config.backends)]
    else:
        chosen = [b for b in select(config, wanted)]
    enabled = [b for b in chosen if b.enabled]
    with ThreadPoolExecutor(max_workers=max(1, len(enabled))) as pool:
        checks = dict(
            zip(
                [b.name for b in enabled],
                pool.map(lambda b: _check(b, probe), enabled),
                strict=True,
            )
        )
    ready = [b.name for b in enabled if checks[b.name][0].ready]
    if as_json:
        _emit(
            {
                "backends": [_health_json(b, checks.get(b.name)) for b in chosen],
                "ready": ready,
                "ok": bool(ready),
            }
        )
    else:
        _print_doctor(chosen, checks, ready)
    if not ready:
        sys.exit(1)  # not ctx.exit: lok runs click with standalone_mode=False, which drops it


def _health_json(backend: Any, check: tuple[Any, Any] | None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": backend.name,
        "type": backend.type,
        "enabled": backend.enabled,
        "where": where(backend),
    }
    if check is None:
        return {**doc, "ready": False, "checked": False}
    verdict, health = check
    return {
        **doc,
        "checked": True,
        "ready": verdict.ready,
        "healthy": health.ready if health is not None else False,
        "found": health.found if health is not None else False,
        "version": health.version if health is not None else None,
        "detail": health.detail if health is not None else verdict.detail,
        "key_set": _key_set(backend),
        "api_key_env": backend.api_key_env,
    }


def _key_set(backend: Any) -> bool | None:
    import os

    from lokfile.backends import registry

    var = backend.api_key_env or registry.key_env(backend.type)
    return None if not var else bool(os.environ.get(var, "").strip())


def _print_doctor(chosen: list[Any], checks: dict[str, Any], ready: list[str]) -> None:
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
        else:
            mark = click.style("✓", fg="green")
            if not health.ready:  # `auto` may pick it, but the deeper check found a problem
                mark = click.style("!", fg="yellow")
                warned += 1
            parts = [p for p in (health.version, health.detail) if p]
        key_set = _key_set(b)
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
    chosen = asking.select(config, wanted)
    not_ready: dict[str, Any] = {}
    if wanted is None:
        chosen, not_ready = _ready_only(config, chosen)
        if not_ready and not as_json:
            click.echo(
                f"(not ready, not asked: {', '.join(not_ready)}; `lok doctor` says why)", err=True
            )
    cache = None if no_cache or not config.cache.enabled else _open_cache(project, config)
    try:
        results = asking.ask(
            prompt, chosen, config, str((workdir or cwd).absolute()), cache, notify=_retrying
        )
    finally:
        if cache is not None:
            cache.close()
    skipped: list[Any] = []
    if wanted is None:
        # not named: a backend that is not there at all is just not available
        skipped = [r for r in results if r.error is not None and asking.unavailable(r.error)]
        results = [r for r in results if r not in skipped]
        for r in skipped:
            click.echo(f"warning: backend {r.name} is not available: {r.error.summary()}", err=True)
    for warning in cache.warnings if cache is not None else []:
        click.echo(f"warning: {warning}", err=True)
    ok = any(r.ok for r in results)
    if as_json:
        _emit(
            {
                "prompt": prompt,
                "ok": ok,
                "results": [r.to_json() for r in results],
                "skipped": [{"backend": n, "summary": v.detail} for n, v in not_ready.items()]
                + [{"backend": r.name, "summary": r.error.summary()} for r in skipped],
            }
        )
    else:
        _print_results(results)
        if not results:
            click.echo("Error: no backend is available", err=True)
            click.echo("Hint: `lok doctor` shows what each backend is missing", err=True)
    if not ok:
        sys.exit(EXIT_FAILED)


def _retrying(backend: str, text: str) -> None:
    """A backend waits out a transient failure (stderr, so --json keeps stdout clean)."""
    click.echo(f"  ↻ {backend}: {text}", err=True)


def _ready_only(config: Any, enabled: list[Any]) -> tuple[list[Any], dict[str, Any]]:
    """(the backends that can answer now, the others' verdicts); NoBackend when none can."""
    from lokfile.backends.ready import check_all, no_backend

    verdicts = check_all(enabled)
    ready = [b for b in enabled if verdicts[b.name].ready]
    if not ready:
        raise no_backend(config, verdicts, "this prompt")
    return ready, {b.name: verdicts[b.name] for b in enabled if not verdicts[b.name].ready}


def _open_cache(project: Any, config: Any) -> Any:
    """The ask cache: the project's .lok/, or the user's cache outside a lok project."""
    from lokfile.agents.ask import AskCache
    from lokfile.project import Project

    if not (project.lok_dir.is_dir() or project.config_path.is_file()):
        # not a lok project: keep answers in the user's cache rather than strew .lok/ folders
        project = Project(user_cache_dir() / "ask")
    return AskCache(project.runs_dir, project.db_path, config.cache.ttl_hours, config.cache.salt)


def user_cache_dir() -> Path:
    """`~/.cache/lok` (honouring XDG_CACHE_HOME)."""
    import os

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lok"


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
