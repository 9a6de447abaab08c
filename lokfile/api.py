"""The library facade: what the CLI (and any other caller) uses to drive lok."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lokfile.engine.coordinator import Coordinator, Reporter, RunOptions, RunOutcome
from lokfile.model import Config, Workflow
from lokfile.project import Project, find_root
from lokfile.reporters import outcome_json

if TYPE_CHECKING:
    from lokfile.executors import Executor, ExecutorFactory
    from lokfile.store.artifacts import Store
    from lokfile.store.rundb import RunDB
    from lokfile.store.tiered import TieredCache

__all__ = [
    "Context",
    "RunOptions",
    "RunOutcome",
    "choose_executor",
    "load",
    "open_project",
    "outcome_json",
    "run",
    "team_cache",
]


@dataclass(frozen=True)
class Context:
    """A project with its merged config."""

    project: Project
    config: Config


def open_project(
    directory: Path | None = None,
    config_file: Path | None = None,
    say: Callable[[str], None] | None = None,
) -> Context:
    """Find the project root from `directory` (or the cwd) and load its config.

    First, the files of an edit step lok died in are put back (lokfile.worker.journal);
    `say` (default: a line on stderr) tells the user.
    """
    from lokfile.config import load_config
    from lokfile.worker import journal

    root = find_root(directory or Path.cwd())
    journal.recover(root, say)
    project = Project(root)
    return Context(project, load_config(project, config_file))


def load(ctx: Context, name_or_path: str) -> Workflow:
    """Resolve and load a workflow by name or path."""
    from lokfile.workflow.loader import load_workflow

    return load_workflow(name_or_path, ctx.project, ctx.config)


def split_args(workflow: Workflow, raw: tuple[str, ...]) -> tuple[tuple[str, ...], dict[str, str]]:
    """Workflow arguments: `NAME=value` for declared named args, everything else positional."""
    declared = {a.name for a in workflow.args}
    positional: list[str] = []
    named: dict[str, str] = {}
    for arg in raw:
        key, sep, value = arg.partition("=")
        if sep and key in declared:
            named[key] = value
        else:
            positional.append(arg)
    return tuple(positional), named


def check_required_args(workflow: Workflow, named: dict[str, str]) -> None:
    """UsageError (exit 2) naming every `required = true` argument that has neither a
    value in `named` nor a default, before anything runs."""
    missing = [a for a in workflow.args if a.required and a.default is None and a.name not in named]
    if not missing:
        return
    from lokfile.errors import UsageError

    what = "; ".join(
        f"'{a.name}'" + (f" ({a.description})" if a.description else "") for a in missing
    )
    example = " ".join(f"{a.name}=VALUE" for a in missing)
    plural = "s" if len(missing) > 1 else ""
    raise UsageError(
        f"workflow '{workflow.name}' needs the argument{plural} {what}",
        f"add {example} after the workflow name or path (lok run {workflow.name} {example})",
    )


def check_positional(workflow: Workflow, positional: tuple[str, ...]) -> None:
    """UsageError (exit 2) when a step that always renders reads `{{ arg.N }}` beyond
    the arguments given: bad input, said before anything runs, not a step failure."""
    from lokfile.errors import UsageError
    from lokfile.model import StepKind
    from lokfile.templates.render import positional_needed

    for step in workflow.steps:
        if step.when is not None or step.for_each is not None:
            continue  # it may never render: the step's own failure says so if it does
        text = step.shell if step.kind is StepKind.SHELL else step.prompt
        needs = positional_needed(text or "", step.kind.value)
        if needs > len(positional):
            where = f"{workflow.path}:{step.line}: " if workflow.path and step.line else ""
            given = "none was" if not positional else f"only {len(positional)} {_were(positional)}"
            words = " ".join(f"ARG{n}" for n in range(1, needs + 1))
            raise UsageError(
                f"{where}step '{step.name}' reads {{{{ arg.{needs} }}}}: workflow "
                f"'{workflow.name}' needs {needs} positional argument{'s' if needs > 1 else ''}, "
                f"{given} given",
                f"lok run {workflow.name} {words}",
            )


def _check_auto(config: Config, workflow: Workflow) -> None:
    """A workflow that asks `auto` needs a backend that can answer: NoBackend (exit 2)
    before anything runs, rather than a failed step per prompt."""
    from lokfile.model import StepKind

    if any("auto" in s.backends for s in workflow.steps if s.kind is StepKind.LLM):
        from lokfile.backends.ready import pick_auto

        pick_auto(config)


def _were(positional: tuple[str, ...]) -> str:
    return "was" if len(positional) == 1 else "were"


def run(
    ctx: Context,
    workflow: Workflow,
    options: RunOptions,
    report: Reporter,
    started: Callable[[Coordinator], None] | None = None,
    snapshot_key: tuple[str, str, tuple[str, ...], str | None] | None = None,
    executor: ExecutorFactory | None = None,
) -> RunOutcome:
    """Run `workflow` incrementally and record it (unless options say not to).

    `started` sees the coordinator before it runs (watch mode keeps it to cancel a run).
    `executor` makes where its jobs run: by default what `[executor]` says (worker
    processes, lokfile/executors/local.py, unless it names a Dask scheduler);
    `lokfile.executors.inline.InlineExecutor` runs them on threads of this process.
    With `[cache] remote`, results are looked up there too, and written there
    (lokfile/store/tiered.py).
    """
    from lokfile.store.artifacts import Store
    from lokfile.store.rundb import RunDB

    check_required_args(workflow, options.named)
    check_positional(workflow, options.args)
    _check_auto(ctx.config, workflow)
    project = ctx.project
    store = Store(project.runs_dir)
    if options.record and not options.dry_run:
        _ensure_lok_dir(project, report)
    needs_db = (options.record and not options.dry_run) or project.db_path.exists()
    db = RunDB.open(project.db_path) if needs_db else None
    team = None
    try:
        team = team_cache(ctx, store, db, report)
        make = executor or choose_executor(ctx.config)
        coordinator = Coordinator(
            workflow, ctx.config, project.root, store, db, options, report, make, cache=team
        )
        if started is not None:
            started(coordinator)
        t0 = time.time()
        outcome = coordinator.run()
        if snapshot_key is not None and db is not None and _replayable(outcome, options):
            from lokfile.engine import snapshot

            cwd, name, _args, config_file = snapshot_key
            watched = snapshot.candidates(project.root, cwd, name, config_file)
            try:
                snapshot.record(coordinator, (project.root, *snapshot_key), watched, t0)
            except OSError:
                pass  # only the next no-op's fast path is lost (a full disk, say)
        return outcome
    finally:
        if team is not None:
            team.close()  # the uploads finish before the history closes
        if db is not None:
            db.close()


def status(
    ctx: Context, workflow: Workflow, positional: tuple[str, ...], named: dict[str, str]
) -> dict[str, Any]:
    """The `lok status --json` document: each step fresh or stale, with its reason.
    Computes keys and calls nothing; records nothing."""
    from lokfile.outcome import Status
    from lokfile.reporters import Silent

    options = RunOptions(args=positional, named=named, dry_run=True, record=False)
    outcome = run(ctx, workflow, options, Silent())
    state = {Status.REUSED: "fresh", Status.STALE: "stale", Status.SKIPPED: "skip"}
    return {
        "workflow": workflow.name,
        "steps": [
            {
                "name": n,
                "fresh": r.status is Status.REUSED,
                "state": state.get(r.status, r.status.value),
                "reason": r.reason,
            }
            for n in workflow.step_names
            if (r := outcome.results.get(n)) is not None
        ],
    }


def step_order(ctx: Context, row: dict[str, Any]) -> list[str] | None:
    """A recorded run's workflow's step order, when its file still loads (history keeps
    the order steps finished in): `lok runs show` lists steps in it."""
    try:
        return list(load(ctx, row.get("workflow_path") or row["workflow"]).step_names)
    except Exception:  # changed or gone since: the recorded order will do
        return None


def team_cache(ctx: Context, store: Store, db: RunDB | None, report: Reporter) -> TieredCache | None:
    """The team cache over this project's action cache, when `[cache] remote` is set;
    a remote that cannot be opened is said once (a Notice) and left out."""
    from lokfile.store.remote import RemoteError

    if not ctx.config.cache.remote or db is None:
        return None
    try:
        return _tiered(ctx, store, db, report, strict=False)
    except RemoteError:  # not raised: strict=False
        return None


def _tiered(ctx: Context, store: Store, db: RunDB, report: Reporter, strict: bool) -> TieredCache:
    """The tiered cache; a remote that cannot be opened raises (`strict`) or is said."""
    from lokfile.events import Notice
    from lokfile.store.remote import Remote, RemoteError
    from lokfile.store.seams import LocalActionCache
    from lokfile.store.tiered import TieredCache

    settings = ctx.config.cache
    assert settings.remote is not None

    def say(text: str) -> None:
        report(Notice(text))

    remote: Remote | None
    try:
        remote = Remote(settings.remote, settings.storage_options)
    except RemoteError as exc:
        if strict:
            raise
        say(f"lok: team cache: {exc.message}; going on with the local cache only")
        remote = None
    writable = settings.remote_mode == "read-write"
    return TieredCache(LocalActionCache(db), store, remote, writable=writable, say=say)


def open_team_cache(
    ctx: Context, report: Reporter, create: bool = False
) -> tuple[TieredCache, Store, RunDB]:
    """The team cache of `lok cache …`: a UsageError (exit 2) when none is configured,
    a RemoteError (exit 1) when it cannot be opened. `create` makes `.lok/` if needed."""
    from lokfile.errors import UsageError
    from lokfile.store.artifacts import Store
    from lokfile.store.rundb import RunDB

    if not ctx.config.cache.remote:
        raise UsageError(
            "no team cache: [cache] remote is not set",
            'add to lok.toml:  [cache]  remote = "s3://bucket/prefix"  (or "file:///shared/lok")',
        )
    project = ctx.project
    if create:
        _ensure_lok_dir(project, report)
    store = Store(project.runs_dir)
    db = RunDB.open(project.db_path)
    try:
        return _tiered(ctx, store, db, report, strict=True), store, db
    except BaseException:
        db.close()
        raise


def cache_push(ctx: Context, report: Reporter) -> dict[str, Any]:
    """`lok cache push`: upload every local result the team cache lacks."""
    from lokfile.errors import UsageError
    from lokfile.store import tiered

    if ctx.config.cache.remote_mode == "read-only":
        raise UsageError(
            f"the team cache {ctx.config.cache.remote} is read-only here ([cache] remote_mode)",
            'set remote_mode = "read-write" in [cache] where results may be written (CI)',
        )
    cache, _store, db = open_team_cache(ctx, report)
    try:
        return tiered.push(cache, db)
    finally:
        cache.close()
        db.close()


def cache_status(ctx: Context, report: Reporter) -> dict[str, Any]:
    """`lok cache status`: results and artifacts here only, there only, in both."""
    from lokfile.store import tiered

    cache, store, db = open_team_cache(ctx, report)
    try:
        return tiered.status(cache, db, store)
    finally:
        db.close()


def cache_pull(
    ctx: Context, report: Reporter, workflow: Workflow | None = None, args: tuple[str, ...] = ()
) -> dict[str, Any]:
    """`lok cache pull [WF]`: fetch what the workflow needs (its units whose keys the team
    cache answers, step after step, as a dry run finds them), or everything."""
    from lokfile.store import tiered
    from lokfile.store.remote import RemoteError

    cache, store, db = open_team_cache(ctx, report, create=True)
    try:
        if workflow is None:
            return tiered.pull_all(cache, db)
        remote = cache.remote
        assert remote is not None
        positional, named = split_args(workflow, args)
        options = RunOptions(args=positional, named=named, dry_run=True, record=False)
        coordinator = Coordinator(
            workflow, ctx.config, ctx.project.root, store, db, options, report, _pool, cache=cache
        )
        outcome = coordinator.run()
        if cache.remote is None:
            raise RemoteError(f"pulling from {remote.url} stopped: the remote could not be read")
        from lokfile.outcome import Status

        doc = tiered.pulled(cache, remote)
        fresh = [n for n, r in outcome.results.items() if r.status is Status.REUSED]
        doc["workflow"] = workflow.name
        doc["fresh"] = len(fresh)
        doc["stale"] = len(outcome.results) - len(fresh)
        return doc
    finally:
        cache.close()
        db.close()


def choose_executor(config: Config, choice: str | None = None) -> ExecutorFactory:
    """Where jobs run: `choice` (`--executor`: local, or dask://HOST:PORT) over `[executor]`."""
    address = config.executor.address if config.executor.type == "dask" else None
    if choice is not None and choice != "local":
        from lokfile.config.sharing import dask_address
        from lokfile.errors import UsageError
        from lokfile.tomlfile import BadValue

        try:
            address = dask_address(choice)
        except BadValue:
            raise UsageError(
                f"--executor {choice}: not an executor",
                "--executor local (worker processes here) or --executor dask://HOST:PORT "
                "(a Dask scheduler; see `dask scheduler`)",
            ) from None
    elif choice == "local":
        address = None
    if address is None:
        return _pool

    def dask(slots: int, warm: tuple[str, ...]) -> Executor:
        from lokfile.executors.dask import DaskExecutor

        return DaskExecutor(slots, warm, address=address)

    return dask


def mark_failed(ctx: Context, run_id: str, error: str) -> None:
    """A recorded run whose command still failed (exit 1): history and run.json say
    `failed`, with `error`, so `lok runs list` agrees with the exit code."""
    import json

    from lokfile.store.artifacts import Store
    from lokfile.store.rundb import RunDB

    project = ctx.project
    if not project.db_path.exists():
        return
    db = RunDB.open(project.db_path)
    try:
        with db.transaction():
            db.fail_run(run_id, error)
    finally:
        db.close()
    store = Store(project.runs_dir)
    path = store.run_dir(run_id) / "run.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if doc.get("status") == "succeeded":
        doc.update(status="failed", error=error)
        store.write_run_json(run_id, doc)


def _replayable(outcome: RunOutcome, options: RunOptions) -> bool:
    """A run whose every step is now fresh: its no-op successor can be replayed."""
    return (
        options.record
        and not options.dry_run
        and outcome.exit_code == 0
        and all(r.success for r in outcome.results.values())
    )


def _ensure_lok_dir(project: Project, report: Reporter) -> None:
    """Where a run may keep its history: an existing `.lok/`, else one made here when
    this folder is a lok project (lok.toml) or inside a git repository, said once on
    stderr. Anywhere else (a home folder, /tmp) lok refuses rather than strew `.lok/`
    folders: `lok init` makes the folder a project."""
    from lokfile.errors import UsageError
    from lokfile.events import Notice
    from lokfile.project import gitignore_update, in_git_repository

    if not project.lok_dir.is_dir():
        if not (project.config_path.is_file() or in_git_repository(project.root)):
            raise UsageError(
                f"{project.root} is neither a lok project nor inside a git repository, "
                "so lok keeps no run history here",
                "run `lok init` to make this folder a project (lok.toml and .lok/), "
                "or run lok inside a project or a git repository",
            )
        project.lok_dir.mkdir(parents=True, exist_ok=True)
        report(
            Notice(
                f"lok: created {project.lok_dir} for run history and stored outputs "
                "(.lok/.gitignore keeps them out of git)"
            )
        )
    path = project.lok_dir / ".gitignore"
    try:
        current: str | None = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        current = None
    except (OSError, UnicodeDecodeError):
        return  # not ours to read: leave it as it is
    text = gitignore_update(current)  # None: it already ignores all of lok's own
    if text is not None:
        from lokfile.errors import disk_full

        try:
            project.lok_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            full = disk_full(exc, ".gitignore", project.lok_dir)
            if full is None:
                raise
            if current is None:
                path.unlink(missing_ok=True)
            raise full from exc


def _pool(slots: int, warm: tuple[str, ...]) -> Executor:
    """The worker pool, imported only when some step must execute."""
    from lokfile.executors.local import WorkerPool

    return WorkerPool(slots, warm)
