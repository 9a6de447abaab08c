"""`lok cache push | pull | status`: the team cache (`[cache] remote`), compared and moved."""

from __future__ import annotations

from typing import Any

import click

from lokfile.cli import Session
from lokfile.cli.common import emit_json


class _Notices:
    """A reporter that says only what a person should know (the team cache's warnings),
    not the steps of the dry run that `pull WF` makes to find what the workflow needs."""

    def __call__(self, event: Any) -> None:
        from lokfile.events import Notice

        if isinstance(event, Notice):
            click.echo(event.text, err=True)

    def tick(self) -> None:
        pass


def _reporter() -> _Notices:
    return _Notices()


@click.group()
def cache() -> None:
    """The team cache: results shared through [cache] remote (S3, a shared folder, …)."""


@cache.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@click.pass_obj
def push(session: Session, as_json: bool) -> None:
    """Upload every result this project has that the team cache lacks."""
    from lokfile import api

    ctx = api.open_project(session.directory, session.config_file)
    doc = api.cache_push(ctx, _reporter())
    if as_json:
        emit_json(doc)
        return
    results, artifacts = doc["results"], doc["artifacts"]
    click.echo(
        f"pushed {results['pushed']} results and {artifacts['pushed']} artifacts to "
        f"{doc['remote']} ({results['present']} results were there already)"
    )


@cache.command()
@click.argument("workflow", required=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@click.pass_obj
def pull(session: Session, workflow: str | None, args: tuple[str, ...], as_json: bool) -> None:
    """Fetch what WORKFLOW needs from the team cache (with no WORKFLOW: everything),
    each object checked against its digest."""
    from lokfile import api

    ctx = api.open_project(session.directory, session.config_file)
    wf = api.load(ctx, workflow) if workflow else None
    doc = api.cache_pull(ctx, _reporter(), wf, args)
    if as_json:
        emit_json(doc)
        return
    line = (
        f"pulled {doc['results']['pulled']} results and {doc['artifacts']['pulled']} "
        f"artifacts from {doc['remote']}"
    )
    if wf is not None:
        line += f"; {wf.name}: {doc['fresh']} steps fresh, {doc['stale']} to run"
    if doc["ignored"]:
        line += f" ({doc['ignored']} remote results ignored: they failed their checks)"
    click.echo(line)


@cache.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@click.pass_obj
def status(session: Session, as_json: bool) -> None:
    """Show how many results and artifacts are here only, in the team cache only, and in both."""
    from lokfile import api

    ctx = api.open_project(session.directory, session.config_file)
    doc = api.cache_status(ctx, _reporter())
    if as_json:
        emit_json(doc)
        return
    click.echo(f"team cache  {doc['remote']} ({doc['mode']})")
    click.echo(f"{'':10} {'local only':>10} {'remote only':>12} {'both':>6}")
    for kind in ("results", "artifacts"):
        row = doc[kind]
        click.echo(
            f"{kind:10} {row['local_only']:>10} {row['remote_only']:>12} {row['both']:>6}"
        )
