"""`lok debate`: backends argue a question in rounds, then a judge gives a verdict.

One generated workflow, one run:

    round1-A  round1-B  round1-C        positions, all at once
        \\        |        /
    round2-A  round2-B  round2-C        each answers the others, all at once
        …
    verdict (+ verdict-retry)           a JSON judgement of the final positions

A participant whose answer fails drops out (its later rounds are skipped); a
round needs the participant's own previous position and at least one other.
The verdict is a judge's reading of the positions — consensus true or false
with a summary, agreements and disagreements — not a keyword count, and a
debate with fewer than two positions is reported as failed, never as consensus.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

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
    nonblank,
    nonblank_text,
    run,
    status_of,
    step_name,
    unique_names,
    workflow,
)
from lokfile.model import Config, Step, Workflow

VERDICT_SHAPE = (
    '{"consensus": true or false, "summary": "one paragraph", '
    '"agreements": ["point", …], "disagreements": ["point", …]}'
)


@dataclass(frozen=True)
class Position:
    """One participant's answer in one round."""

    backend: str
    round: int
    status: str  # ran / reused / failed / skipped
    text: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("ran", "reused")


@dataclass
class Debate:
    """Everything a debate produced."""

    topic: str
    backends: list[str]
    judge: str
    rounds: list[list[Position]]
    verdict: dict[str, Any] | None
    run_id: str
    counts: dict[str, int]
    calls: int
    problem: str | None = None  # why there is no verdict
    started: float = field(default_factory=time.time)

    @property
    def ok(self) -> bool:
        return self.verdict is not None


def round_steps(names: list[str], rounds: int) -> list[list[str]]:
    """Step names per round: `round1-NAME`, …, unique even if two names slug alike."""
    return [unique_names([step_name(f"round{k}", b) for b in names]) for k in range(1, rounds + 1)]


def _position_prompt(names: list[str], me: str) -> str:
    return (
        f"You are {lit(me)}, one of the AI assistants ({lit(', '.join(names))}) debating "
        "a question.\n\nThe question:\n\n{{ arg.topic }}\n\n"
        "State your position. Be specific and concise; cite files and lines where they "
        "matter, and say what you are unsure of.\n"
    )


def _reply_prompt(
    names: list[str], me: str, k: int, mine: str, others: list[tuple[str, str]]
) -> str:
    parts = [
        f"This is round {k} of a debate between AI assistants ({lit(', '.join(names))}). "
        f"You are {lit(me)}.\n\nThe question:\n\n{{{{ arg.topic }}}}\n\n"
        f"Your position in the previous round:\n\n{{{{ steps.{mine}.output }}}}\n\n"
        "The other participants' positions in the previous round:\n\n"
    ]
    for who, step in others:
        parts.append(
            f"{{% if steps.{step}.success %}}### {lit(who)}\n\n"
            f"{{{{ steps.{step}.output }}}}\n\n{{% endif %}}"
        )
    parts.append(
        "Answer them: where are they right, where are they wrong, and why? Correct your "
        "own mistakes if they showed you any. Then restate your position, updated, "
        "concisely.\n"
    )
    return "".join(parts)


def _verdict_prompt(finals: list[tuple[str, str]]) -> str:
    parts = [
        "You are the judge of a debate between AI assistants. Read their final positions "
        "and decide honestly whether they reached consensus: the same conclusion on the "
        "substance, even if worded differently. Differences of emphasis do not break "
        "consensus; a different conclusion or recommendation does.\n\n"
        "The question:\n\n{{ arg.topic }}\n\nThe final positions:\n\n"
    ]
    for who, step in finals:
        parts.append(
            f"{{% if steps.{step}.success %}}### {lit(who)}\n\n"
            f"{{{{ steps.{step}.output }}}}\n\n{{% endif %}}"
        )
    parts.append(
        "Reply with exactly one JSON object and nothing else, of this shape:\n"
        + lit(VERDICT_SHAPE)
        + "\n"
    )
    return "".join(parts)


def verdict_valid(step: str) -> str:
    """Template test for a usable verdict (mirrored by `read_verdict`)."""
    ref = field_ref(step, "consensus")
    return f"{defined(step, 'consensus')} and {ref} is boolean and {nonblank_text(step, 'summary')}"


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return []


def read_verdict(result: Any) -> dict[str, Any] | None:
    """The verdict in a step's answer, normalised; None when it fails `verdict_valid`."""
    obj = answer_object(result)
    if (
        obj is None
        or not isinstance(obj.get("consensus"), bool)
        or not nonblank(obj.get("summary"))
    ):
        return None
    return {
        "consensus": obj["consensus"],
        "summary": str(obj["summary"]).strip(),
        "agreements": _strings(obj.get("agreements")),
        "disagreements": _strings(obj.get("disagreements")),
    }


def build(config: Config, names: list[str], rounds: int, judge: str, topic: str) -> Workflow:
    """The debate workflow for these participants, rounds and judge."""
    grid = round_steps(names, rounds)
    steps: list[Step] = []
    for i, me in enumerate(names):
        steps.append(llm_step(config, grid[0][i], me, _position_prompt(names, me), soft=True))
    for k in range(2, rounds + 1):
        prev = grid[k - 2]
        for i, me in enumerate(names):
            others = [(names[j], prev[j]) for j in range(len(names)) if j != i]
            anyone = " or ".join(f"steps.{s}.success" for _who, s in others)
            steps.append(
                llm_step(
                    config,
                    grid[k - 1][i],
                    me,
                    _reply_prompt(names, me, k, prev[i], others),
                    depends_on=tuple(prev),
                    when=f"steps.{prev[i]}.success and ({anyone})",
                    soft=True,
                )
            )
    finals = list(zip(names, grid[-1], strict=True))
    enough = (
        "["
        + ", ".join(f"steps.{s}.success" for _w, s in finals)
        + "] | select | list | length >= 2"
    )
    steps += json_pair(
        config,
        "verdict",
        judge,
        _verdict_prompt(finals),
        verdict_valid,
        VERDICT_SHAPE,
        depends_on=tuple(grid[-1]),
        when=enough,
    )
    short = topic.strip().splitlines()[0][:100] if topic.strip() else ""
    return workflow("debate", f"lok debate: {short}", steps, ("topic",))


def debate(ctx: Ctx, names: list[str], topic: str, rounds: int, judge: str) -> Debate:
    """Run the debate (reusing every answer already given) and read its outcome."""
    config: Config = ctx.api_ctx.config
    wf = build(config, names, rounds, judge, topic)
    outcome = run(ctx, wf, {"topic": topic})
    grid = round_steps(names, rounds)
    table: list[list[Position]] = []
    for k, row in enumerate(grid, start=1):
        line = []
        for who, step in zip(names, row, strict=True):
            r = outcome.results.get(step)
            text = r.output if r is not None and r.success else ""
            error = None
            if r is not None and not r.success:
                error = r.error or r.reason  # a skipped round says why it was skipped
            line.append(Position(who, k, status_of(r), text, error))
        table.append(line)
    verdict = read_verdict(outcome.results.get("verdict")) or read_verdict(
        outcome.results.get("verdict-retry")
    )
    problem = None
    if verdict is None:
        opening = sum(1 for p in table[0] if p.ok)
        final = sum(1 for p in table[-1] if p.ok)
        judged = outcome.results.get("verdict")
        if opening < 2:
            problem = f"only {opening} of {len(names)} backends gave a position; a debate needs two"
        elif final < 2:
            problem = f"only {final} participant(s) reached the last round; nothing to judge"
        elif judged is not None and status_of(judged) == "failed":
            problem = f"the judge ({judge}) failed: {judged.error or judged.reason}"
        else:
            problem = f"the judge ({judge}) did not give a readable verdict, even when asked again"
    return Debate(
        topic,
        names,
        judge,
        table,
        verdict,
        outcome.run_id,
        counts_of([outcome]),
        calls_made([outcome]),
        problem,
    )


def outcome_label(d: Debate) -> str:
    """Consensus / No consensus / Undetermined."""
    if d.verdict is None:
        return "Undetermined"
    return "Consensus" if d.verdict["consensus"] else "No consensus"


def transcript(d: Debate) -> str:
    """The debate as a Markdown document."""
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(d.started))
    out = [
        "# Lok Debate Transcript",
        "",
        f"**Date:** {when}  ",
        f"**Topic:** {d.topic.strip()}  ",
        f"**Participants:** {', '.join(d.backends)}  ",
        f"**Judge:** {d.judge}  ",
        f"**Outcome:** {outcome_label(d)}  ",
        f"**Run:** {d.run_id}",
        "",
        "---",
        "",
    ]
    for k, row in enumerate(d.rounds, start=1):
        title = "Opening positions" if k == 1 else "Responses"
        out += [f"## Round {k}: {title}", ""]
        for p in row:
            if p.ok:
                out += [f"### {p.backend}", "", p.text.strip(), ""]
            elif p.status == "failed":
                out += [f"### {p.backend}", "", f"_No answer: {p.error or 'failed'}_", ""]
    out += ["## Verdict", ""]
    if d.verdict is None:
        out += [f"_No verdict: {d.problem}_", ""]
    else:
        v = d.verdict
        out += [f"**{outcome_label(d)}** (judged by {d.judge})", "", v["summary"], ""]
        for title, key in (("Agreements", "agreements"), ("Disagreements", "disagreements")):
            if v[key]:
                out += [f"### {title}", ""] + [f"- {item}" for item in v[key]] + [""]
    return "\n".join(out).rstrip() + "\n"


def to_json(d: Debate, transcript_file: str | None) -> dict[str, Any]:
    """The `--json` document of a debate."""
    return {
        "mode": "debate",
        "status": "succeeded" if d.ok else "failed",
        "error": d.problem,
        "run_id": d.run_id,
        "topic": d.topic,
        "backends": d.backends,
        "judge": d.judge,
        "rounds": [
            {
                "round": k,
                "positions": [
                    {"backend": p.backend, "status": p.status, "output": p.text, "error": p.error}
                    for p in row
                ],
            }
            for k, row in enumerate(d.rounds, start=1)
        ],
        "verdict": d.verdict,
        "consensus": None if d.verdict is None else d.verdict["consensus"],
        "counts": d.counts,
        "calls": d.calls,
        "transcript": transcript_file,
    }
