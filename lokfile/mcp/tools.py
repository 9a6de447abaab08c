"""The tools `lok mcp` serves, as plain functions: no SDK, no asyncio.

Each tool returns a `Reply` — the JSON document the CLI prints with `--json`,
built by the same function (api, the agents, the history wing), and a short
summary for a person — or raises the LokError the CLI would report (message
and hint). Long outputs in run documents are cut, with a pointer to
`step_output`, which gives the whole text.

Safety: a workflow is named as `lok workflow list` shows it, or given as a path
that resolves (symlinks followed) inside the project root. Nothing else runs:
no tool takes a shell command or a backend configuration.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lokfile import api
from lokfile.errors import UsageError
from lokfile.mcp.background import Background, LiveRun
from lokfile.model import Workflow

OUTPUT_CUT = 4000  # characters of a step's output (or error) a run document carries
UNIT_CUT = 1000  # … of one unit's (a backend's answer, a for_each item)
CANCEL_WAIT_S = 30.0  # how long cancel_run waits for the run to record its end


@dataclass(frozen=True)
class Reply:
    """A tool's result: a one-line (or few-line) summary and the JSON document."""

    summary: str
    document: dict[str, Any]
    echo: bool = True  # also give the document as JSON text (step_output's text is the output)


class Tools:
    """The tools over one project; every call reads its config and history afresh."""

    def __init__(self, directory: Path, config_file: Path | None = None) -> None:
        self.directory = directory
        self.config_file = config_file
        self.background = Background()

    def context(self) -> api.Context:
        return api.open_project(self.directory, self.config_file)

    # -- workflows --------------------------------------------------------------

    def list_workflows(self) -> Reply:
        from lokfile.workflow.loader import list_workflows, workflows_document

        ctx = self.context()
        infos = list_workflows(ctx.project, ctx.config)
        if not infos:
            return Reply(
                "No workflows found; `lok init` writes an example to .lok/workflows/.",
                workflows_document(infos),
            )
        names = ", ".join(f"{i.name} ({i.origin}{', broken' if i.error else ''})" for i in infos)
        return Reply(f"{len(infos)} workflows: {names}", workflows_document(infos))

    def workflow_status(self, workflow: str, args: list[str], named: dict[str, str]) -> Reply:
        ctx = self.context()
        wf = resolve_workflow(ctx, workflow)
        check_named(wf, named)
        doc = api.status(ctx, wf, tuple(args), dict(named))
        counts = Counter(s["state"] for s in doc["steps"])
        stale = [f"{s['name']}: {s['reason']}" for s in doc["steps"] if not s["fresh"]]
        line = f"{wf.name}: " + ", ".join(f"{n} {state}" for state, n in counts.items())
        return Reply("\n  ".join([line, *stale]), doc)

    # -- runs -------------------------------------------------------------------

    def start_run(
        self, workflow: str, args: list[str], named: dict[str, str], force: bool
    ) -> LiveRun:
        """Start a run in the background (see background.py); it has an id on return."""
        ctx = self.context()
        wf = resolve_workflow(ctx, workflow)
        check_named(wf, named)
        options = api.RunOptions(
            args=tuple(args), named=dict(named), force_all=force, jobs=ctx.config.defaults.jobs
        )
        return self.background.start(ctx, wf, options)

    def live_reply(self, live: LiveRun) -> Reply:
        """A run this server started: its outcome once it ended, else what it did so far."""
        if not live.done:
            doc = live.document()
            rid = doc["run_id"]
            return Reply(
                f"run {rid} of {live.workflow} is running in the background "
                f"({doc['steps_done']} of {doc['steps_total']} steps done); "
                f"run_status(run_id='{rid}') follows it, cancel_run(run_id='{rid}') stops it",
                doc,
            )
        if live.outcome is None:
            assert live.error is not None
            raise live.error
        doc = cut_run(api.outcome_json(live.outcome), live.outcome.run_id)
        return Reply(run_line(doc), doc)

    def lookup(self, ref: str) -> tuple[dict[str, Any], LiveRun | None]:
        """(the history row `ref` names, the run if it is going on in this server).
        `ref` is a run id, a unique prefix, latest or latest~N, as `lok runs show` takes."""
        from lokfile.history.runs import open_db
        from lokfile.store.refs import resolve

        db = open_db(self.context().project)
        try:
            row = resolve(db, ref)
        finally:
            db.close()
        return row, self.background.get(row["id"])

    def run_status(self, run_id: str) -> Reply:
        """A run as `lok runs show RUN --json` documents it, outputs cut."""
        from lokfile.history.runs import open_db, run_detail
        from lokfile.store.artifacts import Store
        from lokfile.store.refs import resolve

        ctx = self.context()
        db = open_db(ctx.project)
        try:
            row = resolve(db, run_id)
            doc = run_detail(db, Store(ctx.project.runs_dir), row, None, api.step_order(ctx, row))
        finally:
            db.close()
        doc = cut_run(doc, row["id"])
        return Reply(run_line(doc), doc)

    def step_output(self, run_id: str, step: str, unit: str | None = None) -> Reply:
        """The whole output of one step (or of one of its units) of a run."""
        row, live = self.lookup(run_id)
        rid = row["id"]
        if live is not None and not live.done:
            result = live.result(step)
            if result is None:
                raise UsageError(
                    f"step '{step}' of run {rid} has not finished yet",
                    f"run_status(run_id='{rid}') shows the steps that have",
                )
            item = _live_item(result, unit, rid)
        else:
            item = self._recorded_item(row, step, unit)
        text = item.get("output") or ""
        doc = {"run_id": rid, "step": step, "unit": unit, **item, "chars": len(text)}
        if not text and item.get("error"):
            return Reply(f"(no output) error: {item['error']}", doc, echo=False)
        return Reply(text, doc, echo=False)

    def _recorded_item(self, row: dict[str, Any], step: str, unit: str | None) -> dict[str, Any]:
        from lokfile.history.runs import open_db, run_detail
        from lokfile.store.artifacts import Store

        ctx = self.context()
        db = open_db(ctx.project)
        try:
            doc = run_detail(db, Store(ctx.project.runs_dir), row, step)
        finally:
            db.close()
        found = doc["steps"][0]
        if unit is not None:
            units = {u["unit"]: u for u in found["units"]}
            if unit not in units:
                raise UsageError(
                    f"step '{step}' of run {row['id']} has no unit '{unit}'",
                    f"its units: {', '.join(units) or 'none (it is one unit)'}",
                )
            found = units[unit]
        keys = ("status", "reason", "backend", "output", "output_missing", "error")
        return {k: found.get(k) for k in keys}

    def list_runs(self, limit: int, workflow: str | None) -> Reply:
        from lokfile.history.runs import run_summary
        from lokfile.store.rundb import RunDB

        ctx = self.context()
        rows: list[dict[str, Any]] = []
        if ctx.project.db_path.exists():
            db = RunDB.open(ctx.project.db_path)
            try:
                rows = db.runs(workflow, limit)
            finally:
                db.close()
        doc = {"runs": [run_summary(r) for r in rows]}
        if not rows:
            return Reply("No runs yet.", doc)
        lines = [f"{s['id']}  {s['workflow']}  {s['status']}" for s in doc["runs"]]
        return Reply(f"{len(rows)} runs, newest first:\n" + "\n".join(lines), doc)

    def cancel_run(self, run_id: str) -> Reply:
        """Stop a run this server started, as Ctrl-C stops `lok run`; then its record."""
        from lokfile.history.runs import run_summary

        row, live = self.lookup(run_id)
        rid = row["id"]
        if live is None or live.done:
            if row["status"] == "running" and live is None:
                raise UsageError(
                    f"run {rid} is not running in this server",
                    "another lok process runs it: stop that one (Ctrl-C)",
                )
            doc = {**run_summary(row), "cancelled": False}
            return Reply(f"run {rid} already ended: {row['status']}", doc)
        live.cancel()
        live.wait_done(CANCEL_WAIT_S)
        reply = self.run_status(rid)
        return Reply(f"cancelled: {reply.summary}", {**reply.document, "cancelled": True})

    # -- backends ---------------------------------------------------------------

    def ask(self, prompt: str, backends: list[str]) -> Reply:
        from lokfile.agents import ask as asking

        ctx = self.context()
        wanted = asking.parse_names(",".join(backends)) if backends else None
        chosen = asking.choose(ctx.config, wanted)
        report = asking.ask_chosen(
            ctx.project, ctx.config, prompt, chosen, wanted is not None, str(ctx.project.root)
        )
        parts = [
            f"{r.name}: " + ("answered" + (" (cached)" if r.cached else "") if r.ok else "failed")
            for r in report.results
        ]
        summary = "; ".join(parts) or "no backend is available (doctor says why)"
        doc = report.to_json()
        if report.warnings:
            doc["warnings"] = list(report.warnings)
        return Reply(summary, doc)

    def doctor(self) -> Reply:
        from lokfile.agents.doctor import check_backends, doctor_document
        from lokfile.backends.ready import NO_BACKEND_HINT

        ctx = self.context()
        chosen, checks, ready = check_backends(ctx.config, None)
        doc = doctor_document(chosen, checks, ready)
        if not ready:
            return Reply(f"No backend is ready: {NO_BACKEND_HINT}.", doc)
        return Reply(
            f"{len(ready)} of {len(checks)} enabled backends ready: {', '.join(ready)}", doc
        )


def resolve_workflow(ctx: api.Context, given: str) -> Workflow:
    """The workflow `given` names: a name `lok workflow list` shows, or a path that
    resolves inside the project root (relative to it); UsageError for anything else."""
    from lokfile.workflow.loader import find_listed, find_workflow, load_file

    name = given.strip()
    hint = "name a workflow that list_workflows shows, or a .toml file inside the project"
    if not name or "\0" in name:
        raise UsageError(f"{given!r} is not a workflow name", hint)
    root = ctx.project.root.resolve()
    slash = "/" in name or os.sep in name
    if slash or (name.endswith(".toml") and (root / name).exists()):
        path = (root / name).resolve()
        if not path.is_relative_to(root):
            raise UsageError(f"workflow {given}: {path} is outside the project {root}", hint)
        if not path.is_file():
            raise UsageError(
                f"workflow file {given} not found",
                f"a path is taken from the project root ({root}); {hint}",
            )
        return load_file(path, "path", ctx.project, ctx.config)
    name = name[:-5] if name.endswith(".toml") else name
    found = find_listed(name, ctx.project)
    if found is None:
        find_workflow(name, ctx.project, cwd=root)  # the CLI's "not found (did you mean …)"
        raise UsageError(f"workflow '{name}' not found", hint)
    return load_file(found[0], found[1], ctx.project, ctx.config)


def check_named(workflow: Workflow, named: dict[str, str]) -> None:
    """Named values only for the arguments the workflow declares."""
    declared = [a.name for a in workflow.args]
    for key in named:
        if key not in declared:
            raise UsageError(
                f"workflow '{workflow.name}' declares no argument '{key}'",
                f"its arguments: {', '.join(declared) or 'none'}; positional values go in args",
            )


def cut_run(doc: dict[str, Any], run_id: str) -> dict[str, Any]:
    """A run document with every long output (and error) cut, pointing at step_output."""
    for step in doc.get("steps", []):
        name = step.get("name")
        _cut(step, OUTPUT_CUT, f"step_output(run_id='{run_id}', step='{name}')")
        for unit in step.get("units") or []:
            where = f"step_output(run_id='{run_id}', step='{name}', unit='{unit.get('unit')}')"
            _cut(unit, UNIT_CUT, where)
    return doc


def _cut(item: dict[str, Any], limit: int, pointer: str) -> None:
    for key in ("output", "error"):
        text = item.get(key)
        if isinstance(text, str) and len(text) > limit:
            item[key] = text[:limit]
            item[f"{key}_cut"] = {"chars": len(text), "shown": limit, "full": pointer}
    if "output_cut" in item and "parsed" in item:
        item["parsed"] = None  # the parsed JSON of a cut output would be as long


def run_line(doc: dict[str, Any]) -> str:
    """One line for a run document (either shape: `lok run --json`, `lok runs show --json`),
    and a line for each failed step."""
    rid = doc.get("run_id") or doc.get("id")
    steps = doc.get("steps", [])
    counts = Counter(s["status"] for s in steps)
    done = ", ".join(f"{n} {status}" for status, n in counts.items()) or "no steps"
    lines = [f"run {rid} of {doc.get('workflow')} {doc.get('status')}: {done}"]
    for s in steps:
        if s["status"] == "failed":
            error = (s.get("error") or "").strip().splitlines()
            lines.append(f"  {s['name']} failed: {error[0] if error else s.get('reason', '')}")
    return "\n".join(lines)


def _live_item(result: Any, unit: str | None, run_id: str) -> dict[str, Any]:
    """step_output's fields from a StepResult of a run still going on."""
    found: Any = result
    if unit is not None:
        units = {u.name: u for u in result.units if getattr(u, "name", "")}
        if unit not in units:
            raise UsageError(
                f"step '{result.name}' of run {run_id} has no unit '{unit}'",
                f"its units: {', '.join(units) or 'none (it is one unit)'}",
            )
        found = units[unit]
    return {
        "status": found.status.value,
        "reason": found.reason,
        "backend": found.backend,
        "output": found.output,
        "output_missing": False,
        "error": found.error,
    }
