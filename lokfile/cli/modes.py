"""Commands that run a built-in workflow: hunt, audit, explain, diff, ci, fix.

Each one loads the workflow of the same name (a project's own
`.lok/workflows/NAME.toml` wins), adapts it (`-b`, `[tasks.*]` prompts, the
detected stack), runs it through `lokfile.api` like `lok run` would (so it is
cached, recorded and resumable), and prints the answers, or one JSON document
with `--json`. The agent modes (debate, spawn, conduct, suggest) live in
`lokfile.cli.agents`, not here.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import click

from lokfile.cli import Session, backend_option
from lokfile.cli.common import emit_json, reporter

# ---------------------------------------------------------------------------
# built-in workflow commands
# ---------------------------------------------------------------------------

_DIR = click.Path(exists=True, file_okay=False, path_type=Path)
_backend_option = backend_option("Backends to ask, comma-separated (or all); default: auto.")
_json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
_force_option = click.option(
    "--force", is_flag=True, help="Ask again even when a cached answer is fresh."
)


def _prepare(
    session: Session, directory: Path | None, name: str, backend: str | None, task: str = ""
) -> tuple[Any, Any]:
    """(context, workflow) for a built-in command run from `directory`."""
    from lokfile import api
    from lokfile.agents import builtin as builtins

    ctx = api.open_project(directory or session.directory, session.config_file)
    wf = api.load(ctx, name)
    names = builtins.parse_backends(backend, ctx.config)
    if task:
        wf = builtins.with_task_prompts(wf, ctx.config, task)
        names = names or builtins.task_backends(ctx.config, task)
    return ctx, builtins.with_backends(wf, names)


def _run(
    ctx: Any,
    wf: Any,
    positional: tuple[str, ...] = (),
    named: dict[str, str] | None = None,
    as_json: bool = False,
    force: bool = False,
    dry_run: bool = False,
) -> Any:
    from lokfile import api

    options = api.RunOptions(
        args=positional,
        named=named or {},
        force_all=force,
        dry_run=dry_run,
        # `[defaults] parallel = false`: one backend call (one step) at a time
        jobs=ctx.config.defaults.jobs if ctx.config.defaults.parallel else 1,
    )
    return api.run(ctx, wf, options, reporter(as_json))


def _result(outcome: Any, step: str) -> Any:
    return outcome.results.get(step)


def _status(result: Any) -> str:
    if result is None:
        return "missing"
    return str(getattr(result.status, "value", result.status))


def _ok(result: Any) -> bool:
    return _status(result) in ("ran", "reused")


def _block(title: str, result: Any) -> str:
    backend = f" ({result.backend})" if getattr(result, "backend", None) else ""
    text = result.output if _ok(result) else f"Error: {result.error or result.output}"
    return f"\n=== {title}{backend} ===\n\n{(text or '').rstrip()}\n"


def _finish(
    outcome: Any,
    as_json: bool,
    shown: list[str],
    extra: dict[str, Any] | None = None,
    footer: str = "",
    code: int | None = None,
) -> None:
    """Print the answers of `shown` steps (or the JSON document) and exit with the run's code."""
    from lokfile import api

    if as_json:
        doc = api.outcome_json(outcome)
        doc.update(extra or {})
        emit_json(doc)
    else:
        if outcome.dry_run:
            for name in outcome.workflow.step_names:
                r = _result(outcome, name)
                if r is not None:
                    click.echo(f"{name}: {_status(r)} ({r.reason})")
        else:
            for name in shown:
                r = _result(outcome, name)
                if r is not None and _status(r) != "skipped":
                    click.echo(_block(name, r))
        for name in outcome.workflow.step_names:
            r = _result(outcome, name)
            if _status(r) == "failed" and name not in shown:
                first = (r.error or r.output or "failed").strip().splitlines()
                click.echo(f"Error: step {name} failed: {first[0] if first else ''}", err=True)
                for more in first[1:4]:
                    click.echo(f"  {more}", err=True)
        if footer:
            click.echo(footer)
    sys.stdout.flush()
    reporter(as_json).summary_last(outcome)  # last, after the answers
    sys.exit(outcome.exit_code if code is None else code)


def _llm_steps(outcome: Any) -> list[str]:
    from lokfile.model import StepKind

    return [s.name for s in outcome.workflow.steps if s.kind is StepKind.LLM]


def _final_or_all(outcome: Any, final: str, verbose: bool) -> list[str]:
    """The final step's answer, or every LLM step's when asked (or when the final failed)."""
    steps = _llm_steps(outcome)
    if verbose or not _ok(_result(outcome, final)):
        return steps
    return [final]


@click.command()
@click.argument("directory", required=False, type=_DIR)
@_backend_option
@click.option("--issues", is_flag=True, help="File the findings as GitHub issues (with gh).")
@click.option("-y", "--yes", is_flag=True, help="With --issues: do not ask before filing.")
@click.option("-v", "--verbose", is_flag=True, help="Show every hunt's answer, not only the list.")
@_force_option
@_json_option
@click.pass_obj
def hunt(
    session: Session,
    directory: Path | None,
    backend: str | None,
    issues: bool,
    yes: bool,
    verbose: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Hunt for bugs, performance problems and dead code in DIR (default: the project)."""
    from lokfile.agents import builtin as builtins

    ctx, wf = _prepare(session, directory, "hunt", backend, task="hunt")
    root = ctx.project.root
    if issues:
        from lokfile.agents.gh import require_gh

        require_gh(root)
    named = {
        "path": builtins.relative_dir(root, directory),
        "context": builtins.context_note(root, "hunt"),
    }
    outcome = _run(ctx, wf, named=named, as_json=as_json, force=force)
    extra: dict[str, Any] = {}
    code = None
    if issues and outcome.exit_code == 0:
        extra["issues"] = _file_issues(outcome, root, yes, as_json)
        failed = [i["title"] for i in extra["issues"] if i["status"] == "failed"]
        if failed:
            code = 1
            from lokfile import api

            api.mark_failed(ctx, outcome.run_id, f"could not file {len(failed)} issue(s)")
    shown = [] if issues and not as_json else _final_or_all(outcome, "synthesize", verbose)
    _finish(outcome, as_json, shown, extra, code=code)


def _file_issues(outcome: Any, root: Path, yes: bool, as_json: bool) -> list[dict[str, str]]:
    from lokfile.agents import gh as ghissues

    final = _result(outcome, "synthesize")
    sources = [final] if _ok(final) else [
        _result(outcome, n) for n in _llm_steps(outcome) if _ok(_result(outcome, n))
    ]
    findings = ghissues.dedupe(
        [f for r in sources for f in ghissues.parse_findings(r.output, r.backend)]
    )
    out = sys.stderr if as_json else sys.stdout
    if not findings:
        click.echo("No findings to file.", file=out)
        return []
    click.echo(f"\n{len(findings)} finding(s):", file=out)
    for n, f in enumerate(findings, 1):
        click.echo(f"  {n}. {f.title}", file=out)
    if not yes:
        try:
            go = click.confirm("Create these issues?", default=False, err=True)
        except click.Abort:
            go = False
        if not go:
            click.echo("Aborted: no issues created.", file=out)
            return [{"title": f.title, "status": "not filed", "detail": ""} for f in findings]
    filed = []
    for f in findings:
        done = ghissues.create_issue(f, root)
        mark = {"created": "✓", "skipped": "-", "failed": "✗"}[done.status]
        note = (
            f"skipped (similar issue exists: {done.detail})"
            if done.status == "skipped"
            else done.detail
        )
        click.echo(f"  {mark} {f.title}: {note}", file=out)
        filed.append({"title": f.title, "status": done.status, "detail": done.detail})
    created = sum(1 for d in filed if d["status"] == "created")
    skipped = sum(1 for d in filed if d["status"] == "skipped")
    click.echo(f"Created {created} issue(s), skipped {skipped}.", file=out)
    return filed


@click.command()
@click.argument("directory", required=False, type=_DIR)
@_backend_option
@click.option("-v", "--verbose", is_flag=True, help="Show every audit's answer, not only the report.")
@_force_option
@_json_option
@click.pass_obj
def audit(
    session: Session,
    directory: Path | None,
    backend: str | None,
    verbose: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Security audit of DIR (default: the project): injection, auth, secrets."""
    from lokfile.agents import builtin as builtins

    ctx, wf = _prepare(session, directory, "audit", backend, task="audit")
    root = ctx.project.root
    named = {
        "path": builtins.relative_dir(root, directory),
        "context": builtins.context_note(root, "audit"),
    }
    outcome = _run(ctx, wf, named=named, as_json=as_json, force=force)
    _finish(outcome, as_json, _final_or_all(outcome, "synthesize", verbose))


@click.command()
@click.argument("directory", required=False, type=_DIR)
@_backend_option
@click.option("-f", "--focus", metavar="TOPIC", help="What to focus the explanation on.")
@_force_option
@_json_option
@click.pass_obj
def explain(
    session: Session,
    directory: Path | None,
    backend: str | None,
    focus: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Explain the codebase in DIR (default: the project): purpose, architecture, key files."""
    from lokfile.agents import builtin as builtins

    ctx, wf = _prepare(session, directory, "explain", backend)
    root = ctx.project.root
    named = {
        "path": builtins.relative_dir(root, directory),
        "focus": focus or "",
        "context": builtins.context_note(root, "explain"),
    }
    outcome = _run(ctx, wf, named=named, as_json=as_json, force=force)
    _finish(outcome, as_json, _llm_steps(outcome))


@click.command()
@click.argument("spec", required=False)
@click.option("-d", "--dir", "directory", type=_DIR, help="The repository (default: here).")
@_backend_option
@click.option("--unstaged", is_flag=True, help="Review unstaged changes instead of staged ones.")
@_force_option
@_json_option
@click.pass_obj
def diff(
    session: Session,
    spec: str | None,
    directory: Path | None,
    backend: str | None,
    unstaged: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Review a git diff: staged changes, --unstaged ones, or SPEC (e.g. main..HEAD)."""
    from lokfile.errors import UsageError
    from lokfile.project import in_git_repository

    ctx, wf = _prepare(session, directory, "diff", backend)
    if not in_git_repository(ctx.project.root):
        raise UsageError(
            f"lok diff reviews git changes, and {ctx.project.root} is not inside a git repository",
            "run it in a git repository (or give one with -d DIR)",
        )
    what = f"git diff {spec}" if spec else ("unstaged changes" if unstaged else "staged changes")
    click.echo(f"Reviewing {what}", err=True)
    outcome = _run(
        ctx,
        wf,
        positional=(spec,) if spec else (),
        named={"unstaged": "true" if unstaged else "false"},
        as_json=as_json,
        force=force,
    )
    got = _result(outcome, "get-diff")
    footer = ""
    extra: dict[str, Any] = {}
    if _ok(got):
        lines = got.output.splitlines()
        added = sum(1 for x in lines if x.startswith("+") and not x.startswith("+++"))
        removed = sum(1 for x in lines if x.startswith("-") and not x.startswith("---"))
        extra = {"added": added, "removed": removed, "empty": not got.output.strip()}
        if not got.output.strip():
            footer = "No changes to review."
            if not spec and not unstaged:
                footer += " (Nothing is staged: try --unstaged, or a range such as main..HEAD.)"
        elif not as_json:
            click.echo(f"{added} line(s) added, {removed} removed", err=True)
    _finish(outcome, as_json, ["review"], extra, footer)


_CHECK_MARKS = {
    "SUCCESS": "✓",
    "FAILURE": "✗",
    "IN_PROGRESS": "○",
    "QUEUED": "○",
    "PENDING": "○",
    "CANCELLED": "-",
    "SKIPPED": "-",
}


def _need_gh() -> None:
    from lokfile.errors import UsageError

    if shutil.which("gh") is None:
        raise UsageError(
            "this command needs the GitHub CLI (gh), which is not on PATH",
            "install it from https://cli.github.com and run `gh auth login`",
        )


@click.command()
@click.argument("pr")
@click.option("-d", "--dir", "directory", type=_DIR, help="The repository (default: here).")
@_backend_option
@_force_option
@_json_option
@click.pass_obj
def ci(
    session: Session,
    pr: str,
    directory: Path | None,
    backend: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Find the root cause of the failed CI checks of pull request PR (with gh)."""
    from lokfile.agents import builtin as builtins

    ref = builtins.parse_ref(pr, "pr")
    _need_gh()
    ctx, wf = _prepare(session, directory, "ci", backend)
    outcome = _run(ctx, wf, positional=(ref,), as_json=as_json, force=force)
    checks = _result(outcome, "checks")
    footer = ""
    if _ok(checks) and isinstance(checks.parsed, list):
        if not as_json:
            for c in checks.parsed:
                state = str(c.get("state", "?"))
                click.echo(f"  {_CHECK_MARKS.get(state, '?')} {c.get('name', '?')} ({state})")
        if _status(_result(outcome, "analyze")) == "skipped":
            footer = "No failed checks to analyze."
    _finish(outcome, as_json, ["analyze"], footer=footer)


@click.command()
@click.argument("issue")
@click.option("-d", "--dir", "directory", type=_DIR, help="The repository (default: here).")
@_backend_option
@click.option("--comment", is_flag=True, help="Post the proposal as a comment on the issue.")
@click.option("-n", "--dry-run", is_flag=True, help="Show what would run, and why; ask nothing.")
@_force_option
@_json_option
@click.pass_obj
def fix(
    session: Session,
    issue: str,
    directory: Path | None,
    backend: str | None,
    comment: bool,
    dry_run: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Propose a fix for GitHub issue ISSUE (with gh). Files are never changed."""
    from lokfile.agents import builtin as builtins

    ref = builtins.parse_ref(issue, "issue")
    _need_gh()
    ctx, wf = _prepare(session, directory, "fix", backend)
    outcome = _run(
        ctx,
        wf,
        positional=(ref,),
        named={"comment": "true" if comment else "false"},
        as_json=as_json,
        force=force,
        dry_run=dry_run,
    )
    info = _result(outcome, "issue")
    if not as_json and _ok(info) and isinstance(info.parsed, dict):
        d = info.parsed
        click.echo(f"Issue #{d.get('number')}: {d.get('title')}")
        if d.get("state") and d.get("state") != "OPEN":
            click.echo(f"  warning: the issue is {d.get('state')}")
    footer = ""
    if not dry_run and _ok(_result(outcome, "propose")):
        posted = _ok(_result(outcome, "comment"))
        footer = (
            "Posted the proposal on the issue."
            if posted
            else "No files were changed. --comment posts the proposal on the issue."
        )
    _finish(outcome, as_json, ["propose"], footer=footer)
