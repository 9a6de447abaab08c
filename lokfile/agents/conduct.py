"""`lok conduct`: a conductor backend decides, turn by turn, whom to ask what.

Any backend can conduct: the protocol is JSON in the prompt, not one vendor's
tool API. Each turn the conductor answers

    {"action": "ask", "backend": NAME, "prompt": TEXT}     or
    {"action": "answer", "text": TEXT}

Each turn is one run of a small generated workflow:

    conductor (+ conductor-retry)      the decision; a reply that is not a valid
         |                             decision is re-asked once, in the same run
    ask-A  ask-B  …                    one step per backend; only the chosen one runs

The conversation so far travels in the `brief` argument, so a rerun of the
same task replays every turn from the cache and calls nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from lokfile.agents import suggest
from lokfile.agents.common import (
    Ctx,
    answer_object,
    calls_made,
    counts_of,
    field_ref,
    json_pair,
    llm_step,
    nonblank,
    nonblank_text,
    one_line,
    run,
    status_of,
    step_name,
    unique_names,
    workflow,
)
from lokfile.model import Config, Step, Workflow


@dataclass(frozen=True)
class Turn:
    """One question the conductor asked, and the answer it got."""

    round: int
    backend: str
    prompt: str
    status: str
    output: str
    error: str | None


@dataclass
class Conduct:
    """Everything a conducted task produced."""

    task: str
    conductor: str
    tools: list[str]
    max_rounds: int
    turns: list[Turn] = field(default_factory=list)
    answer: str | None = None
    run_ids: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    calls: int = 0
    problem: str | None = None
    hint: str | None = None

    @property
    def ok(self) -> bool:
        return self.answer is not None


def decision_shape(tools: list[str]) -> str:
    """The two JSON forms the conductor may reply with."""
    names = " | ".join(json.dumps(t) for t in tools)
    return (
        f'{{"action": "ask", "backend": {names}, "prompt": "a complete, self-contained request"}}'
        '\nor\n{"action": "answer", "text": "your final answer to the task"}'
    )


def _is(step: str, key: str, value: str) -> str:
    ref = field_ref(step, key)
    return f"{ref} is defined and {ref} == {json.dumps(value)}"


def answers(step: str) -> str:
    """Template test: the step's reply is a final answer."""
    return f"({_is(step, 'action', 'answer')} and {nonblank_text(step, 'text')})"


def asks(step: str, tool: str) -> str:
    """Template test: the step's reply asks `tool` something."""
    return (
        f"({_is(step, 'action', 'ask')} and {_is(step, 'backend', tool)} "
        f"and {nonblank_text(step, 'prompt')})"
    )


def valid_for(tools: list[str]) -> Any:
    """Template test of a usable decision, for `json_pair`."""

    def valid(step: str) -> str:
        return "(" + " or ".join([answers(step)] + [asks(step, t) for t in tools]) + ")"

    return valid


def decide(result: Any, tools: list[str]) -> tuple[str, str, str] | None:
    """(action, backend, text) of a reply, mirroring the template tests; None if unusable."""
    obj = answer_object(result)
    if obj is None:
        return None
    action = obj.get("action")
    if action == "answer" and nonblank(obj.get("text")):
        return "answer", "", str(obj["text"])
    backend = obj.get("backend")
    if (
        action == "ask"
        and isinstance(backend, str)
        and backend in tools
        and nonblank(obj.get("prompt"))
    ):
        return "ask", backend, str(obj["prompt"])
    return None


def tool_steps(tools: list[str]) -> list[str]:
    """The step name asking each tool."""
    return unique_names([step_name("ask", t) for t in tools])


def round_workflow(config: Config, conductor: str, tools: list[str]) -> Workflow:
    """The workflow of one turn."""
    steps: list[Step] = json_pair(
        config,
        "conductor",
        conductor,
        "{{ arg.brief }}",
        valid_for(tools),
        decision_shape(tools),
    )
    first, retry = "conductor", "conductor-retry"
    for tool, name in zip(tools, tool_steps(tools), strict=True):
        chose_first = f"steps.{first}.success and {asks(first, tool)}"
        chose_retry = f"steps.{retry}.success and {asks(retry, tool)}"
        prompt = (
            f"{{% if {chose_first} %}}{{{{ {field_ref(first, 'prompt')} }}}}"
            f"{{% else %}}{{{{ {field_ref(retry, 'prompt')} }}}}{{% endif %}}"
        )
        steps.append(
            llm_step(
                config,
                name,
                tool,
                prompt,
                depends_on=(first, retry),
                when=f"({chose_first}) or ({chose_retry})",
                soft=True,
            )
        )
    return workflow("conduct", "lok conduct: one turn", steps, ("brief",))


def brief(
    config: Config, task: str, tools: list[str], turns: list[Turn], k: int, limit: int
) -> str:
    """The conductor's prompt for turn `k`: role, backends, protocol, task, history."""
    lines = [
        "You are the conductor of a team of AI backends. Work out the task below by asking "
        "the backends focused questions, one per turn, reading their answers, and then "
        "giving the final answer yourself.",
        "",
        "Backends you can ask:",
    ]
    for name in tools:
        cfg = config.backends[name]
        style = suggest.profile(cfg.type)[1]
        lines.append(f"- {name} ({cfg.type}): {style}")
    lines += [
        "",
        "Reply with exactly one JSON object and nothing else, in one of these forms:",
        decision_shape(tools),
        "",
        f"This is turn {k} of at most {limit}."
        + (" It is the last one: answer now." if k == limit else ""),
        "",
        "The task:",
        "",
        task.strip(),
    ]
    for t in turns:
        lines += ["", f"## Turn {t.round}: you asked {t.backend}", "", t.prompt.strip(), ""]
        if t.status in ("ran", "reused"):
            lines += [f"## {t.backend} answered", "", t.output.strip()]
        else:
            lines += [f"## {t.backend} failed", "", t.error or "no answer"]
    return "\n".join(lines) + "\n"


def conduct(ctx: Ctx, task: str, conductor: str, tools: list[str], max_rounds: int) -> Conduct:
    """Turn after turn until the conductor answers or `max_rounds` runs out."""
    config: Config = ctx.api_ctx.config
    wf = round_workflow(config, conductor, tools)
    names = dict(zip(tools, tool_steps(tools), strict=True))
    result = Conduct(task, conductor, tools, max_rounds)
    outcomes: list[Any] = []
    for k in range(1, max_rounds + 1):
        outcome = run(ctx, wf, {"brief": brief(config, task, tools, result.turns, k, max_rounds)})
        outcomes.append(outcome)
        result.run_ids.append(outcome.run_id)
        first = outcome.results.get("conductor")
        choice = decide(first, tools) or decide(outcome.results.get("conductor-retry"), tools)
        if choice is None:
            if first is not None and status_of(first) == "failed":
                result.problem = (
                    f"the conductor ({conductor}) failed: {one_line(first.error or first.reason)}"
                )
                result.hint = "check it with `lok doctor`, or pick another with --conductor"
            else:
                last = outcome.results.get("conductor-retry") or first
                said = one_line(last.output if last is not None else "", 200)
                result.problem = (
                    f"the conductor ({conductor}) did not reply with a valid decision, "
                    f"even when asked again; it said: {said!r}"
                )
                result.hint = "try another conductor with --conductor ([conductor] backend)"
            break
        action, backend, text = choice
        if action == "answer":
            result.answer = text
            break
        r = outcome.results.get(names[backend])
        ok = r is not None and r.success
        result.turns.append(
            Turn(
                k,
                backend,
                text,
                status_of(r),
                r.output if ok and r is not None else "",
                None if ok or r is None else (r.error or r.reason),
            )
        )
    else:
        result.problem = (
            f"the conductor ({conductor}) did not give a final answer within "
            f"{max_rounds} round{'s' if max_rounds != 1 else ''}"
        )
        result.hint = "raise [conductor] max_rounds in lok.toml, or pass --max-rounds"
    result.counts = counts_of(outcomes)
    result.calls = calls_made(outcomes)
    return result


def report(c: Conduct) -> str:
    """The conducted task as a Markdown document."""
    head = c.task.strip().splitlines()[0] if c.task.strip() else "task"
    out = [
        f"# Conduct: {head}",
        "",
        f"Conductor: {c.conductor}; backends: {', '.join(c.tools)}",
        "",
    ]
    for t in c.turns:
        out += [f"## Turn {t.round}: asked {t.backend}", "", t.prompt.strip(), ""]
        body = t.output.strip() if t.status in ("ran", "reused") else f"_failed: {t.error}_"
        out += [f"### {t.backend} answered", "", body, ""]
    out += ["## Answer", ""]
    out += [c.answer.strip() if c.answer is not None else f"_No answer: {c.problem}_", ""]
    return "\n".join(out).rstrip() + "\n"


def to_json(c: Conduct, output_file: str | None) -> dict[str, Any]:
    """The `--json` document of a conducted task."""
    return {
        "mode": "conduct",
        "status": "succeeded" if c.ok else "failed",
        "error": c.problem,
        "task": c.task,
        "conductor": c.conductor,
        "backends": c.tools,
        "max_rounds": c.max_rounds,
        "turns": [
            {
                "round": t.round,
                "backend": t.backend,
                "prompt": t.prompt,
                "status": t.status,
                "output": t.output,
                "error": t.error,
            }
            for t in c.turns
        ],
        "answer": c.answer,
        "run_ids": c.run_ids,
        "counts": c.counts,
        "calls": c.calls,
        "output_file": output_file,
    }
