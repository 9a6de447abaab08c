"""`lok debate`, `lok spawn`, `lok conduct`, `lok suggest`: the multi-LLM modes.

Each mode is a generated workflow run through the engine (see lokfile.agents),
so its calls are cached and its runs listed by `lok runs`. Progress goes to
stderr; stdout gets the result (Markdown, or one JSON document with --json).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from lokfile.cli import Session, backend_option
from lokfile.cli.common import emit_json

_BACKENDS_HELP = "Backends to use, comma-separated or repeated (default: every usable one)."


def _context(session: Session, as_json: bool, jobs: int | None) -> Any:
    """The mode context: project, config, a progress reporter on stderr, the job limit."""
    from lokfile import api
    from lokfile.agents.common import Ctx
    from lokfile.reporters import LiveReporter, PlainReporter

    api_ctx = api.open_project(session.directory, session.config_file)
    live = sys.stderr.isatty() and not as_json
    report = LiveReporter(sys.stderr) if live else PlainReporter(sys.stderr)
    return Ctx(api_ctx, report, jobs or api_ctx.config.defaults.jobs)


def _note(text: str) -> None:
    click.echo(text, err=True)


def _emit(doc_or_text: Any, as_json: bool) -> None:
    if as_json:
        emit_json(doc_or_text)
    else:
        sys.stdout.write(doc_or_text)
        sys.stdout.flush()


def _fail(
    problem: str | None, hint: str | None = None, ctx: Any = None, run_id: str | None = None
) -> None:
    """A mode that ran but produced no result: its run is recorded as failed (history
    agrees with the exit code), then Error/Hint on stderr, exit 1."""
    if ctx is not None and run_id:
        from lokfile import api

        api.mark_failed(ctx.api_ctx, run_id, problem or "failed")
    _note(f"Error: {problem or 'failed'}")
    if hint:
        _note(f"Hint: {hint}")
    sys.exit(1)


def _write(path: Path, text: str, what: str) -> None:
    from lokfile.errors import UsageError

    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(
            f"cannot write {what} to {path}: {exc.strerror}", "check the path"
        ) from None
    _note(f"✓ {what[0].upper()}{what[1:]} written to {path}")


def _text(words: tuple[str, ...], what: str) -> str:
    from lokfile.errors import UsageError

    text = " ".join(words).strip()
    if not text:
        raise UsageError(f"which {what}?", f"give the {what} as an argument, in quotes")
    return text


_backends_option = backend_option(_BACKENDS_HELP, "backends", multiple=True)
_json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON document on stdout."
)
_jobs_option = click.option(
    "-j", "--jobs", type=click.IntRange(1, 1024), help="Calls to run at once (default 8)."
)


@click.command()
@click.argument("topic", nargs=-1, required=True)
@_backends_option
@click.option(
    "--rounds",
    type=click.IntRange(1, 10),
    default=3,
    show_default=True,
    help="Rounds, the opening positions included.",
)
@click.option(
    "--judge",
    metavar="NAME",
    help="Backend that judges consensus (default: [conductor] backend, else the first).",
)
@click.option(
    "-o",
    "--output",
    "output_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the Markdown transcript to FILE.",
)
@_json_option
@_jobs_option
@click.pass_obj
def debate(
    session: Session,
    topic: tuple[str, ...],
    backends: tuple[str, ...],
    rounds: int,
    judge: str | None,
    output_file: Path | None,
    as_json: bool,
    jobs: int | None,
) -> None:
    """Let the backends debate TOPIC: positions, rebuttal rounds, a judged verdict.

    Every round's questions go out at once. A rerun of the same debate reuses
    every answer already given. Exit 1 when no verdict could be reached.
    """
    from lokfile.agents import debate as mode
    from lokfile.agents.common import choose_backends, lead_backend

    text = _text(topic, "topic")
    ctx = _context(session, as_json, jobs)
    config = ctx.api_ctx.config
    names = choose_backends(config, backends, 2, "debate")
    judge_name = lead_backend(config, judge, names, "--judge")
    _note(f"Debate: {', '.join(names)}; {rounds} round(s); judge {judge_name}")
    result = mode.debate(ctx, names, text, rounds, judge_name)
    doc = mode.transcript(result)
    if output_file is not None:
        _write(output_file, doc, "transcript")
    if as_json:
        _emit(mode.to_json(result, str(output_file) if output_file else None), True)
    elif output_file is None:
        _emit(doc, False)
    else:
        verdict = result.verdict
        summary = f"\n{verdict['summary']}\n" if verdict else ""
        _emit(f"Outcome: {mode.outcome_label(result)}\n{summary}", False)
    if not result.ok:
        _fail(
            result.problem,
            "`lok runs show` has every answer; rerunning reuses them",
            ctx,
            result.run_id,
        )


@click.command()
@click.argument("task", nargs=-1, required=True)
@click.option(
    "-a",
    "--agent",
    "agents",
    multiple=True,
    metavar="NAME:TASK",
    help="A subtask to run (repeatable); skips planning.",
)
@_backends_option
@click.option(
    "--planner",
    metavar="NAME",
    help="Backend that plans and summarises (default: [conductor] backend, else the first).",
)
@click.option(
    "-o",
    "--output",
    "output_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the Markdown report to FILE.",
)
@_json_option
@_jobs_option
@click.pass_obj
def spawn(
    session: Session,
    task: tuple[str, ...],
    agents: tuple[str, ...],
    backends: tuple[str, ...],
    planner: str | None,
    output_file: Path | None,
    as_json: bool,
    jobs: int | None,
) -> None:
    """Split TASK into subtasks, run them in parallel on the best-suited backends, summarise.

    Exit 1 when a subtask or the summary failed (the others are still shown).
    """
    from lokfile.agents import spawn as mode
    from lokfile.agents.common import choose_backends, lead_backend

    text = _text(task, "task")
    manual = mode.manual_subtasks(agents)
    ctx = _context(session, as_json, jobs)
    config = ctx.api_ctx.config
    names = choose_backends(config, backends, 1, "spawn")
    lead = lead_backend(config, planner, names, "--planner")
    _note(f"Spawn: backends {', '.join(names)}; planner {lead}")
    result = mode.spawn(ctx, text, names, lead, manual)
    for note in result.notes:
        _note(f"note: {note}")
    for a in result.agents:
        _note(f"  {a.name} → {a.backend}: {a.status}")
    doc = mode.report(result)
    if output_file is not None:
        _write(output_file, doc, "report")
    if as_json:
        _emit(mode.to_json(result, str(output_file) if output_file else None), True)
    elif output_file is None:
        _emit(doc, False)
    if not result.ok:
        failed = [a.name for a in result.agents if a.status not in ("ran", "reused")]
        what = f"subtask(s) failed: {', '.join(failed)}" if failed else "the summary failed"
        last = result.run_ids[-1] if result.run_ids else None
        _fail(what, "rerun the same command: finished subtasks are reused", ctx, last)


@click.command()
@click.argument("task", nargs=-1, required=True)
@_backends_option
@click.option(
    "--conductor",
    metavar="NAME",
    help="Backend that conducts (default: [conductor] backend, else the first).",
)
@click.option(
    "--max-rounds",
    type=click.IntRange(1, 100),
    help="Turns before giving up (default: [conductor] max_rounds).",
)
@click.option(
    "-o",
    "--output",
    "output_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write every turn and the answer, as Markdown, to FILE.",
)
@_json_option
@_jobs_option
@click.pass_obj
def conduct(
    session: Session,
    task: tuple[str, ...],
    backends: tuple[str, ...],
    conductor: str | None,
    max_rounds: int | None,
    output_file: Path | None,
    as_json: bool,
    jobs: int | None,
) -> None:
    """Let a conductor backend delegate TASK to the others, turn by turn, then answer.

    Any backend can conduct: it replies in JSON, asking a backend something or
    giving the final answer. stdout gets the answer; exit 1 when none came.
    """
    from lokfile.agents import conduct as mode
    from lokfile.agents.common import choose_backends, lead_backend

    text = _text(task, "task")
    ctx = _context(session, as_json, jobs)
    config = ctx.api_ctx.config
    names = choose_backends(config, backends, 1, "conduct")
    lead = lead_backend(config, conductor, names, "--conductor")
    tools = [n for n in names if n != lead] or [lead]
    limit = max_rounds or config.conductor.max_rounds
    _note(f"Conduct: conductor {lead}; backends {', '.join(tools)}; at most {limit} turns")
    result = mode.conduct(ctx, text, lead, tools, limit)
    for t in result.turns:
        _note(f"  turn {t.round}: asked {t.backend}: {t.status}")
    if output_file is not None:
        _write(output_file, mode.report(result), "transcript")
    if as_json:
        _emit(mode.to_json(result, str(output_file) if output_file else None), True)
    elif result.answer is not None:
        _emit(result.answer.rstrip("\n") + "\n", False)
    if not result.ok:
        last = result.run_ids[-1] if result.run_ids else None
        _fail(result.problem, result.hint, ctx, last)


@click.command()
@click.argument("task", nargs=-1, required=True)
@_backends_option
@_json_option
@click.pass_obj
def suggest(
    session: Session, task: tuple[str, ...], backends: tuple[str, ...], as_json: bool
) -> None:
    """Rank the configured backends for TASK (by keyword categories and backend profiles)."""
    from lokfile import api
    from lokfile.agents import suggest as mode
    from lokfile.agents.common import check_backend, split_names

    text = _text(task, "task")
    config = api.open_project(session.directory, session.config_file).config
    wanted = split_names(backends)
    cfgs = [check_backend(config, n) for n in wanted] if wanted else mode.enabled_backends(config)
    categories, ranked = mode.rank(text, cfgs)
    if as_json:
        doc = {
            "task": text,
            "categories": categories,
            "backends": [
                {
                    "name": r.name,
                    "type": r.type,
                    "score": r.score,
                    "style": r.style,
                    "matched": list(r.matched),
                }
                for r in ranked
            ],
        }
        _emit(doc, True)
        return
    lines = [f"Task categories: {', '.join(categories)}", "", "Recommended backends:"]
    for i, r in enumerate(ranked, start=1):
        lines.append(f"  {i}. {r.name} ({r.type}, score {r.score}) - {r.style}")
    if not ranked:
        lines.append("  (none configured)")
    _emit("\n".join(lines) + "\n", False)
