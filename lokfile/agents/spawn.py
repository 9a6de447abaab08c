"""`lok spawn`: plan a task into subtasks, run them in parallel, summarise.

Two generated workflows, two runs:

    spawn-plan:  plan (+ plan-retry)            JSON {"subtasks": [{name, task}, …]}
    spawn:       agent-NAME  agent-NAME  …      one per subtask, all at once, each on
                         \\     |     /           the backend `suggest` ranks best for it
                          summary                one answer to the whole task

`-a name:task` skips planning. Reading the plan is forgiving (the original's
`AGENT: name | task` lines, bullets, a bare JSON array all work) and a plan
with nothing usable in it is an error that shows what the planner said.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from lokfile.agents import suggest
from lokfile.agents.common import (
    Ctx,
    answer_object,
    calls_made,
    counts_of,
    defined,
    field_ref,
    json_pair,
    lit,
    llm_step,
    mode_failed,
    one_line,
    run,
    status_of,
    workflow,
)
from lokfile.errors import UsageError
from lokfile.model import Config, Step, Workflow

MIN_SUBTASKS, MAX_SUBTASKS = 2, 6
PLAN_SHAPE = '{"subtasks": [{"name": "short-name", "task": "what this worker must do"}, …]}'
_SLUG = re.compile(r"[^a-z0-9]+")
_LINE = re.compile(
    r"^\s*(?:[-*+]|\d+[.)])?\s*(?:\*\*)?(?:agent\s*:\s*)?(?P<name>[^|:\n*]{1,60}?)(?:\*\*)?\s*[|:]\s*(?P<task>\S.*)$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Subtask:
    name: str
    task: str


@dataclass(frozen=True)
class AgentResult:
    name: str
    task: str
    backend: str
    status: str
    output: str
    error: str | None


@dataclass
class Spawn:
    """Everything a spawn produced."""

    task: str
    planned_by: str | None  # None when the subtasks were given with -a
    agents: list[AgentResult]
    summary: str | None
    summary_backend: str
    run_ids: list[str]
    counts: dict[str, int]
    calls: int
    notes: list[str]

    @property
    def ok(self) -> bool:
        return self.summary is not None and all(a.status in ("ran", "reused") for a in self.agents)


# --------------------------------------------------------------------------
# Subtasks
# --------------------------------------------------------------------------


def slug(name: str) -> str:
    """A subtask name fit for a step name: lowercase letters, digits, dashes."""
    return _SLUG.sub("-", name.lower()).strip("-")[:40].strip("-") or "task"


def _dedupe(subtasks: list[Subtask]) -> list[Subtask]:
    seen: dict[str, int] = {}
    out = []
    for s in subtasks:
        base = slug(s.name)
        seen[base] = seen.get(base, 0) + 1
        out.append(Subtask(base if seen[base] == 1 else f"{base}-{seen[base]}", s.task))
    return out


def manual_subtasks(values: tuple[str, ...]) -> list[Subtask]:
    """`-a name:task` values; a value without `name:` is a usage error, never dropped."""
    out = []
    for value in values:
        name, sep, task = value.partition(":")
        if not sep or not name.strip() or not task.strip():
            raise UsageError(
                f"-a '{value}': expected NAME:TASK",
                'for example: -a tests:"write the missing unit tests"',
            )
        out.append(Subtask(name.strip(), task.strip()))
    if len(out) > MAX_SUBTASKS * 2:
        raise UsageError(f"-a: {len(out)} agents is too many", f"give at most {MAX_SUBTASKS * 2}")
    return _dedupe(out)


def _entries(value: Any) -> list[Subtask]:
    out = []
    for i, entry in enumerate(value if isinstance(value, list) else [], start=1):
        if isinstance(entry, dict):
            name = entry.get("name") or entry.get("agent") or entry.get("title") or f"task-{i}"
            task = entry.get("task") or entry.get("description") or entry.get("prompt")
        else:
            name, task = f"task-{i}", entry
        if isinstance(task, str) and task.strip():
            out.append(Subtask(str(name), task.strip()))
    return out


def plan_valid(step: str) -> str:
    """Template test for a usable plan (the strict reading `strict_plan` mirrors)."""
    ref = field_ref(step, "subtasks")
    return (
        f"{defined(step, 'subtasks')} and {ref} is sequence and {ref} is not string "
        f"and {ref} is not mapping and {ref} | length > 0"
    )


def strict_plan(result: Any) -> list[Subtask]:
    """The subtasks of a `{"subtasks": [...]}` answer."""
    obj = answer_object(result)
    return _entries(obj.get("subtasks")) if obj is not None else []


def loose_plan(text: str) -> list[Subtask]:
    """Subtasks from whatever a planner wrote: a JSON array or object, or lines like
    `AGENT: name | task`, `- name: task`, `1. **name** | task`."""
    from lokfile.outputs import MISSING, json_anywhere

    value = json_anywhere(text)
    if isinstance(value, dict):
        for key in ("subtasks", "agents", "tasks", "plan"):
            if isinstance(value.get(key), list):
                value = value[key]
                break
    found = _entries(value) if value is not MISSING else []
    if found:
        return found
    out = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if m and m.group("name").strip():
            out.append(Subtask(m.group("name").strip(), m.group("task").strip()))
    return out


# --------------------------------------------------------------------------
# Workflows
# --------------------------------------------------------------------------


def plan_workflow(config: Config, planner: str) -> Workflow:
    """One planning step (and its repair step)."""
    prompt = (
        "Split the task below into between "
        f"{MIN_SUBTASKS} and {MAX_SUBTASKS} subtasks that independent workers can do "
        "in parallel, each self-contained and clearly scoped. Give each a short name.\n\n"
        "The task:\n\n{{ arg.task }}\n\n"
        "Reply with exactly one JSON object and nothing else, of this shape:\n"
        + lit(PLAN_SHAPE)
        + "\n"
    )
    steps = json_pair(config, "plan", planner, prompt, plan_valid, PLAN_SHAPE)
    return workflow("spawn-plan", "lok spawn: planning", steps, ("task",))


def exec_workflow(
    config: Config, subtasks: list[Subtask], backends: list[str], lead: str
) -> Workflow:
    """One step per subtask on its backend, then the summary."""
    steps: list[Step] = []
    count = len(subtasks)
    for i, (sub, backend) in enumerate(zip(subtasks, backends, strict=True), start=1):
        prompt = (
            f"You are one of {count} workers running in parallel on parts of one task. "
            "Stay within your part; the others cover the rest.\n\n"
            "The whole task:\n\n{{ arg.task }}\n\n"
            f"Your part ({sub.name}):\n\n{{{{ arg.part{i} }}}}\n"
        )
        steps.append(llm_step(config, f"agent-{sub.name}", backend, prompt, soft=True))
    names = [f"agent-{s.name}" for s in subtasks]
    parts = [
        "Workers did parts of one task in parallel. Combine their results into one answer "
        "to the whole task: what was found or done, where they conflict, and what is left "
        "to do.\n\nThe whole task:\n\n{{ arg.task }}\n\n"
    ]
    for i, (sub, step) in enumerate(zip(subtasks, names, strict=True), start=1):
        parts.append(
            f"{{% if steps.{step}.success %}}## {sub.name}: {{{{ arg.part{i} }}}}\n\n"
            f"{{{{ steps.{step}.output }}}}\n\n{{% endif %}}"
        )
    steps.append(
        llm_step(
            config, "summary", lead, "".join(parts), depends_on=tuple(names), min_deps_success=1
        )
    )
    args = ("task", *(f"part{i}" for i in range(1, count + 1)))
    return workflow("spawn", "lok spawn: agents and summary", steps, args)


def assign(config: Config, subtasks: list[Subtask], candidates: list[str]) -> list[str]:
    """The backend for each subtask: the best-ranked among the candidates; among equally
    ranked ones, the one given the fewest subtasks so far (so ties spread the work)."""
    cfgs = [config.backends[n] for n in candidates]
    load = dict.fromkeys(candidates, 0)
    out = []
    for sub in subtasks:
        _categories, ranked = suggest.rank(sub.task, cfgs)
        if not ranked:
            choice = min(candidates, key=lambda n: load[n])
        else:
            top = [r.name for r in ranked if r.score == ranked[0].score]
            choice = min(top, key=lambda n: load[n])
        load[choice] += 1
        out.append(choice)
    return out


# --------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------


def plan(ctx: Ctx, task: str, planner: str) -> tuple[list[Subtask], str, list[str]]:
    """(subtasks, plan run id, notes) from the planner."""
    outcome = run(ctx, plan_workflow(ctx.api_ctx.config, planner), {"task": task})
    first, retry = outcome.results.get("plan"), outcome.results.get("plan-retry")
    found = strict_plan(first) or strict_plan(retry)
    for r in (first, retry):
        if not found and r is not None and r.success:
            found = loose_plan(r.output)
    if not found:
        if first is not None and status_of(first) == "failed":
            raise mode_failed(
                ctx,
                outcome.run_id,
                f"the planner ({planner}) failed: {one_line(first.error or first.reason)}",
                "check it with `lok doctor`, pick another with --planner, or give -a NAME:TASK",
            )
        said = one_line((retry or first).output if (retry or first) else "", 300)
        raise mode_failed(
            ctx,
            outcome.run_id,
            f"the planner ({planner}) gave no usable subtasks; it said: {said!r}",
            "try another planner with --planner, or give the subtasks with -a NAME:TASK",
        )
    notes = []
    if len(found) > MAX_SUBTASKS:
        notes.append(f"the plan had {len(found)} subtasks; running the first {MAX_SUBTASKS}")
        found = found[:MAX_SUBTASKS]
    return _dedupe(found), outcome.run_id, notes


def spawn(ctx: Ctx, task: str, candidates: list[str], lead: str, manual: list[Subtask]) -> Spawn:
    """Plan (unless given), run every subtask in parallel, summarise."""
    config: Config = ctx.api_ctx.config
    run_ids: list[str] = []
    outcomes: list[Any] = []
    notes: list[str] = []
    if manual:
        subtasks, planned_by = manual, None
    else:
        subtasks, plan_run, notes = plan(ctx, task, lead)
        run_ids.append(plan_run)
        planned_by = lead
    backends = assign(config, subtasks, candidates)
    named = {"task": task} | {f"part{i}": s.task for i, s in enumerate(subtasks, start=1)}
    outcome = run(ctx, exec_workflow(config, subtasks, backends, lead), named)
    outcomes.append(outcome)
    run_ids.append(outcome.run_id)
    agents = []
    for sub, backend in zip(subtasks, backends, strict=True):
        r = outcome.results.get(f"agent-{sub.name}")
        ok = r is not None and r.success
        agents.append(
            AgentResult(
                sub.name,
                sub.task,
                backend,
                status_of(r),
                r.output if ok and r is not None else "",
                None if ok or r is None else (r.error or r.reason),
            )
        )
    summary_result = outcome.results.get("summary")
    summary = (
        summary_result.output if summary_result is not None and summary_result.success else None
    )
    if summary is None and summary_result is not None:
        notes.append(f"no summary: {one_line(summary_result.error or summary_result.reason)}")
    return Spawn(
        task,
        planned_by,
        agents,
        summary,
        lead,
        run_ids,
        counts_of(outcomes),
        calls_made(outcomes),
        notes,
    )


def report(s: Spawn) -> str:
    """The spawn as a Markdown document."""
    head = s.task.strip().splitlines()[0] if s.task.strip() else "task"
    origin = f"planned by {s.planned_by}" if s.planned_by else "given with -a"
    out = [f"# Spawn: {head}", "", f"## Plan ({origin})", ""]
    for i, a in enumerate(s.agents, start=1):
        out.append(f"{i}. **{a.name}** → {a.backend}: {a.task}")
    out.append("")
    for a in s.agents:
        out += [f"## {a.name} ({a.backend})", ""]
        if a.status in ("ran", "reused"):
            out += [a.output.strip(), ""]
        else:
            out += [f"_{a.status}: {a.error or 'no answer'}_", ""]
    out += [f"## Summary ({s.summary_backend})", ""]
    out += [s.summary.strip() if s.summary is not None else "_No summary._", ""]
    return "\n".join(out).rstrip() + "\n"


def to_json(s: Spawn, output_file: str | None) -> dict[str, Any]:
    """The `--json` document of a spawn."""
    return {
        "mode": "spawn",
        "status": "succeeded" if s.ok else "failed",
        "task": s.task,
        "planned_by": s.planned_by,
        "run_ids": s.run_ids,
        "agents": [
            {
                "name": a.name,
                "task": a.task,
                "backend": a.backend,
                "status": a.status,
                "output": a.output,
                "error": a.error,
            }
            for a in s.agents
        ],
        "summary": s.summary,
        "summary_backend": s.summary_backend,
        "notes": s.notes,
        "counts": s.counts,
        "calls": s.calls,
        "output_file": output_file,
    }
