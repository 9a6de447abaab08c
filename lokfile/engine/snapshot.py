"""The no-op fast path: when nothing a run read has changed, record it again wholesale.

After a run in which every step succeeded, and every step is fully described
by files lok can stat (no volatile shell step, no `cache = false`, no glob
sources, no `{{ env.… }}`, no edits, no TTL), the coordinator writes a
snapshot: the (size, mtime_ns, inode) of every file the run depended on —
the workflow file and every file it extends, every place the workflow name
or the config could resolve to, each declared source and output — plus the
values of PATH and the declared env vars, the inodes of lok.db and the store
(a fresh `.lok` is another history), and what the run recorded. What is
checked comes first, on a line of its own, and the rest is parsed only when
all of it still holds. The result rows stay in lok.db: a replay copies those
of the run it repeats, as a normal no-op would record them.
A workflow with an `apply_edits` or `verify` step never gets a snapshot: the
files an edit touched are not among those stats, and a replayed no-op must
never hide an edit the tree has lost (the normal path re-applies it).

`replay()` is tried before anything is loaded. If every stat, env value and
artifact still matches, the result of a full no-op run is known without
parsing TOML, rendering templates or computing keys: a new run is recorded
with every step reused, exactly as the normal path would record it. Any
doubt (a missing or unreadable snapshot, one changed stat) falls back to the
normal path, which is always correct.

A replay writes O(1) filesystem entries: its run folder is one symlink to the
folder of the run that wrote the snapshot (`Store.alias_run`), which holds
exactly the outputs the replay repeats; only when that folder is gone does
it link every output again. Its rows in lok.db are those of a normal no-op,
so `lok runs show`, `runs diff` and the HTML report read it like any run.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from lokfile import __version__, hashing

VERSION = 2  # 2: a first line of what is checked, then the rest
# every wing whose code decides keys, freshness or what a run records: a change to any
# of their files (or to the ground floor) invalidates every snapshot
_ENGINE_WINGS = ("engine", "templates", "workflow", "config", "store", "worker")


def _stat(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _engine_stamp() -> list[Any]:
    from lokfile.codestamp import code_stamp

    return [__version__, VERSION, code_stamp(*_ENGINE_WINGS)]


def snapshot_file(
    root: Path, cwd: str, name: str, args: tuple[str, ...], config: str | None
) -> Path:
    """Where the snapshot of `lok run NAME ARGS…` from `cwd` lives."""
    ident = hashing.digest_json([cwd, name, list(args), config]).split(":", 1)[1][:24]
    return root / ".lok" / "state" / f"run-{ident}.json"


def candidates(root: Path, cwd: str, name: str, config_file: str | None) -> list[str]:
    """Every path whose existence or content could change what `lok run NAME` loads."""
    from lokfile.project import builtin_workflows_dir, user_dir

    stem = name[:-5] if name.endswith(".toml") else name
    users = user_dir()
    out = [os.path.join(cwd, name), str(root / name)]
    if "/" not in stem and stem:
        out += [
            str(root / ".lok" / "workflows" / f"{stem}.toml"),
            str(users / "workflows" / f"{stem}.toml"),
            str(builtin_workflows_dir() / f"{stem}.toml"),
        ]
    out += [str(users / "lok.toml"), str(root / "lok.toml")]
    if config_file:
        out.append(os.path.join(cwd, config_file))
    return out


def eligible(workflow: Any, config: Any) -> bool:
    """Can a no-op of this workflow be decided from file stats alone?"""
    if config.origins.get("cache.ttl_hours", "built-in") != "built-in" and config.cache.ttl_hours:
        return False
    for step in workflow.steps:
        if step.is_volatile or step.cache is False or step.apply_edits or step.verify:
            return False
        if any(ch in pattern for pattern in step.sources for ch in "*?["):
            return False
        texts = (step.prompt, step.shell, step.when, step.for_each, step.system)
        if any(t and "env" in t for t in texts):
            return False
    return True


def _identity(root: Path) -> list[int | None]:
    """Which history and store these are: the inodes of lok.db and of the objects folder
    (a `.lok/runs` or lok.db deleted or moved since is a new one, whatever it holds)."""
    out: list[int | None] = []
    for p in (root / ".lok" / "lok.db", root / ".lok" / "runs" / "objects"):
        try:
            out.append(os.stat(p).st_ino)
        except OSError:
            out.append(None)
    return out


def write(path: Path, head: dict[str, Any], body: dict[str, Any]) -> None:
    """Write a snapshot atomically: two lines of JSON, what `load` checks first (`head`:
    the engine, the stats, the env, the store) and the rest (`body`), so that a snapshot
    the world has moved on from is turned down without parsing the rest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    compact = (",", ":")  # json escapes every newline inside a string: one line each
    try:
        tmp.write_text(
            json.dumps(head, separators=compact) + "\n" + json.dumps(body, separators=compact)
        )
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def record(
    coordinator: Any,
    session_key: tuple[Path, str, str, tuple[str, ...], str | None],
    watched: list[str],
    started: float,
) -> None:
    """After a successful run, remember what it depended on (when that is all stat-able)."""
    root, cwd, name, args, config_file = session_key
    c = coordinator
    if not eligible(c.wf, c.config):
        return
    files: dict[str, list[int] | None] = {p: _stat(p) for p in watched}
    for p in c.wf.files:
        files[str(p)] = _stat(str(p))
    for p in c.config.files:
        files[str(p)] = _stat(str(p))
    # sources and outputs: only when unchanged since the run hashed or wrote them
    for step in c.wf.steps:
        for rel in (*step.sources, *step.outputs):
            full = os.path.join(root, rel)
            now = _stat(full)
            seen = c.fp.memo.get(os.path.normpath(rel))
            if now is not None and (seen is None or list(seen[0]) != now):
                return
            files[full] = now
    if any(
        st is not None and st[1] >= int(started * 1e9) - 1
        for p, st in files.items()
        if p.endswith(".toml")
    ):
        return  # a config or workflow file touched during the run: do not trust its stat
    # PATH decides `auto` and which CLIs run; HOME and XDG_CONFIG_HOME decide where the user
    # config and workflows are, whose paths the snapshot watches.
    env_names = sorted(
        {"PATH", "HOME", "XDG_CONFIG_HOME", *c.wf.env, *(v for s in c.wf.steps for v in s.env)}
    )
    from lokfile.engine.ready import settle_order

    steps = []
    for name_ in settle_order(c.wf):
        r = c.results[name_]
        steps.append(
            {
                "name": r.name,
                "digest": r.digest,
                "backend": r.backend,
                # when its work ran (now, or in the run that made a reused answer): what a
                # replay saves is these spans covered, not their sum
                "spans": [list(u.span) for u in r.units if getattr(u, "span", None)],
                "parsed": r.parsed,
                "filename": r.filename,
                # what its answers cost when they were made: all of it is saved by a replay
                "usage": r.usage.record(),
                "truncated": r.truncated,
                "units": [
                    {
                        "unit": u.name,
                        "digest": u.digest,
                        "backend": u.backend,
                        "usage": u.usage.record(),
                    }
                    for u in r.units
                    if u.name
                ],
            }
        )
    head = {
        "engine": _engine_stamp(),
        "store": _identity(root),
        "files": files,
        "env": {v: hashing.digest_text(os.environ.get(v, "\0unset")) for v in env_names},
    }
    body = {
        "folder": c.run_id,  # the run folder a replay's folder links to
        "workflow": {
            "name": c.wf.name,
            "path": c.wf.path,
            "description": c.wf.description,
            "order": list(c.wf.step_names),
        },
        "args": {"positional": list(c.opts.args), "named": c.opts.named},
        "steps": steps,
        "keys": sorted({u.key for r in c.results.values() for u in r.units if u.digest}),
        # a replay copies the result rows of the run it repeats (lok.db keeps them until a
        # `lok gc` forgets that run): how many there are, to know they are all still there
        "rows": c.db.count_results(c.run_id),
    }
    write(snapshot_file(root, cwd, name, args, config_file), head, body)


def load(root: Path, path: Path) -> dict[str, Any] | None:
    """The snapshot at `path` if it still describes the world exactly; else None."""
    try:
        with open(path, "rb") as f:
            head: dict[str, Any] = json.loads(f.readline())
            if head.get("engine") != _engine_stamp() or head.get("store") != _identity(root):
                return None
            for p, st in head["files"].items():
                if _stat(p) != st:
                    return None
            for v, digest in head["env"].items():
                if hashing.digest_text(os.environ.get(v, "\0unset")) != digest:
                    return None
            body: dict[str, Any] = json.loads(f.read())
    except (OSError, ValueError, KeyError, AttributeError):
        return None
    return {**head, **body}


# the snapshot the last replay turned down, as (path, its stat): `lok run` tries the fast
# path before the CLI is imported and again inside it, and the second try of the same file
# in the same state is not made (once: a long-lived process checks afresh the time after)
_declined: tuple[str, list[int] | None] | None = None


def replay(
    root: Path, cwd: str, name: str, args: tuple[str, ...], config_file: str | None, report: Any
) -> Any:
    """Record a no-op run from the snapshot, or return None when the normal path must run."""
    global _declined
    path = snapshot_file(root, cwd, name, args, config_file)
    seen = (str(path), _stat(str(path)))
    if seen[1] is None:
        return None
    if _declined == seen:
        _declined = None
        return None
    _declined = seen
    outcome = _replay(root, path, report)
    if outcome is not None:
        _declined = None
    return outcome


def _replay(root: Path, path: Path, report: Any) -> Any:
    doc = load(root, path)
    if doc is None:
        return None
    from lokfile.store.artifacts import Store

    store = Store(root / ".lok" / "runs")
    digests = {
        d for s in doc["steps"] for d in [s["digest"], *(u["digest"] for u in s["units"])] if d
    }
    objects = str(store.objects_dir)
    for d in digests:
        algo, _, hexpart = d.partition(":")
        if not os.path.isfile(f"{objects}/{algo}/{hexpart[:2]}/{hexpart[2:]}"):
            return None
    from lokfile.store.rundb import RunDB
    from lokfile.store.seams import LocalActionCache

    db = RunDB.open(root / ".lok" / "lok.db")
    try:
        if not LocalActionCache(db).has_all(doc["keys"]):
            return None
        return _record_replay(root, doc, store, db, report)
    finally:
        db.close()


def _record_replay(root: Path, doc: dict[str, Any], store: Any, db: Any, report: Any) -> Any:
    from lokfile.events import RunFinished, RunStarted, StepFinished
    from lokfile.outcome import (
        RunOutcome,
        RunStatus,
        Status,
        StepResult,
        UnitSummary,
        Usage,
        WorkflowSummary,
        covered,
        new_run_id,
    )

    t0 = time.time()
    wf_doc = doc["workflow"]
    workflow = WorkflowSummary(
        name=wf_doc["name"],
        step_names=tuple(wf_doc["order"]),
        description=wf_doc["description"],
        path=wf_doc["path"],
    )
    run_id = new_run_id()
    results: dict[str, StepResult] = {}
    spans: list[tuple[float, float]] = []
    for s in doc["steps"]:
        units = [
            UnitSummary(
                name=u["unit"],
                digest=u["digest"],
                backend=u["backend"],
                output=store.get_text(u["digest"]) if u["digest"] else "",
                usage=Usage.from_doc(u.get("usage")),
            )
            for u in s["units"]
        ]
        output = store.get_text(s["digest"]) if s["digest"] else ""
        results[s["name"]] = StepResult(
            name=s["name"],
            status=Status.REUSED,
            reason="fresh",
            output=output,
            digest=s["digest"],
            backend=s["backend"],
            saved=covered(tuple(span) for span in s["spans"]),
            parsed=s["parsed"],
            units=units,
            filename=s["filename"],
            reused=Usage.from_doc(s.get("usage")),
            truncated=bool(s.get("truncated")),
        )
        spans += [(a, b) for a, b in s["spans"]]
    saved = covered(spans)
    args = doc["args"]
    outcome = RunOutcome(
        run_id=run_id,
        workflow=workflow,
        status=RunStatus.SUCCEEDED,
        results=results,
        wall=0.0,
        saved=saved,
    )
    try:
        with db.transaction():
            db.mark_abandoned_runs()
            db.start_run(run_id, workflow.name, workflow.path, args, None)
            if db.replay_results(doc["folder"], run_id) != doc["rows"]:
                raise LookupError  # a `lok gc` forgot that run since: all of this rolls back
            counts = {Status.REUSED.value: len(results)}
            db.finish_run(run_id, RunStatus.SUCCEEDED.value, counts, saved, None, outcome.cost)
    except LookupError:
        return None
    report(RunStarted(run_id, workflow.name, workflow.description, len(workflow.step_names)))
    base = doc.get("folder")
    if not (base and store.alias_run(run_id, base)):
        _write_folder(store, run_id, workflow, args, t0, results, outcome)
    store.set_latest(run_id)
    for r in results.values():
        parts = max(1, len(r.units))
        report(
            StepFinished(
                r.name, Status.REUSED, "fresh", 0.0, r.backend, None, parts, (), r.truncated
            )
        )
    outcome.wall = wall = time.time() - t0
    report(RunFinished(run_id, RunStatus.SUCCEEDED, outcome.counts, wall, saved, cost=outcome.cost))
    return outcome


def _write_folder(
    store: Any, run_id: str, workflow: Any, args: Any, t0: float, results: Any, outcome: Any
) -> None:
    """A full run folder (one link per output and run.json), when there is none to alias."""
    from lokfile.engine.rundoc import run_document
    from lokfile.outcome import RunStatus

    for r in results.values():
        if r.digest and r.filename:
            store.link_output(run_id, r.filename, r.digest)
    document = run_document(
        run_id=run_id,
        workflow=workflow.name,
        path=workflow.path,
        args=args,
        status=RunStatus.SUCCEEDED,
        started=t0,
        ended=time.time(),
        resumed_from=None,
        steps=results.values(),
        cost=outcome.cost,
    )
    store.write_run_json(run_id, document)
