"""Turning run events into text: plain lines, a live terminal view, the results block.

Progress goes to stderr (so `--json` keeps stdout for the document); the
results block — each step's output, as the original printed them — goes to
stdout or to `-o FILE`.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

from lokfile.events import (
    Event,
    Notice,
    ParallelStart,
    RunFinished,
    RunStarted,
    StepFinished,
    StepNote,
    UnitStarted,
)
from lokfile.outcome import RunStatus, Status, total

GLYPH = {
    Status.RAN: "✓",
    Status.REUSED: "=",
    Status.FAILED: "✗",
    Status.SKIPPED: "-",
    Status.INTERRUPTED: "!",
    Status.STALE: "~",
}


TRUNCATED = "answer cut at the token limit (max_tokens)"

def _fmt(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    return f"{seconds / 60:.1f}m"


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0][:200] if lines else ""


def money(dollars: float) -> str:
    """Dollars for a person, two significant digits below a dollar: `$0.31`, `$0.042`,
    `$0.00022`; cents above it: `$12.40`; nothing spent: `$0`."""
    if dollars <= 0:
        return "$0"
    if dollars >= 1:
        return f"${dollars:,.2f}"
    decimals = 1 - math.floor(math.log10(dollars))
    return f"${dollars:.{decimals}f}"


def cost_words(cost: dict[str, Any] | None) -> str:
    """`$0.042 spent, $0.31 saved` (and the calls nobody has a price for); "" when the run
    made and reused no LLM call."""
    if not cost or not (cost.get("calls") or cost.get("reused_calls")):
        return ""
    parts = [f"{money(cost.get('spent_usd') or 0.0)} spent"]
    if cost.get("reused_calls"):
        parts.append(f"{money(cost.get('saved_usd') or 0.0)} saved")
    unpriced = int(cost.get("unpriced_calls") or 0) + int(cost.get("unpriced_reused_calls") or 0)
    if unpriced:
        plural = "s" if unpriced > 1 else ""
        parts.append(f"{unpriced} call{plural} unpriced")
    return ", ".join(parts)


def estimate_words(cost: dict[str, Any] | None) -> str:
    """`; the 3 stale calls should cost about $0.013` for a dry run's summary ("" for none)."""
    if not cost:
        return ""
    parts = []
    calls = cost.get("stale_calls") or 0
    if calls:
        text = f"the {calls} stale call{'' if calls == 1 else 's'} should cost about "
        text += money(cost.get("estimated_usd") or 0.0)
        if cost.get("unpriced_stale_calls"):
            text += f", {cost['unpriced_stale_calls']} of them at an unknown price not counted"
        parts.append(text)
    if cost.get("not_estimated"):
        names = ", ".join(cost["not_estimated"])
        parts.append(f"not estimated: {names} (waiting for upstream answers)")
    return "".join(f"; {part}" for part in parts)


def summary_line(ev: RunFinished) -> str:
    """`3 ran, 1 reused, 0 failed, 1 skipped in 0.4s (saved 1.2s by reuse)`; for a dry
    run, what would run and what is fresh (nothing ran, so no time and no run id)."""
    n = {s: ev.counts.get(s.value, 0) for s in Status}
    if ev.dry_run:
        stale, fresh, skipped = n[Status.STALE], n[Status.REUSED], n[Status.SKIPPED]
        if stale == 0:
            return f"Dry run: nothing would run, every step is fresh ({fresh} fresh)"
        text = f"Dry run: {stale} would run, {fresh} fresh"
        if skipped:
            text += f", {skipped} skipped"
        return text + " — nothing was run" + estimate_words(ev.cost)
    text = (
        f"{n[Status.RAN]} ran, {n[Status.REUSED]} reused, {n[Status.FAILED]} failed, "
        f"{n[Status.SKIPPED]} skipped in {_fmt(ev.wall)}"
    )
    if ev.saved > 0:
        text += f" (saved {_fmt(ev.saved)} by reuse)"
    money_text = cost_words(ev.cost)
    if money_text:
        text += f" — {money_text}"
    if n[Status.RAN] == 0 and n[Status.FAILED] == 0 and ev.status is RunStatus.SUCCEEDED:
        text += " — nothing to do, every step is fresh"
    budget = (ev.extra or {}).get("budget") or {}
    if budget.get("stopped"):
        text += (
            f" — stopped by the budget: {money(budget['spent_usd'])} spent of the "
            f"{money(budget['max_cost_usd'])} cap; {budget['calls_not_made']} call(s) not made "
            f"({budget['reason']})"
        )
    if ev.status is RunStatus.INTERRUPTED:
        how = (ev.extra or {}).get("signal")
        by = {"SIGINT": " by Ctrl-C", None: ""}.get(how, f" by {how}")
        text += (
            f" — interrupted{by}: running steps were stopped, the run is recorded as interrupted"
        )
    return text


def finished(outcome: Any) -> RunFinished:
    """The RunFinished event of a finished run (to print its summary after the results)."""
    return RunFinished(
        outcome.run_id,
        outcome.status,
        outcome.counts,
        outcome.wall,
        outcome.saved,
        _extra(outcome),
        dry_run=outcome.dry_run,
        cost=outcome.cost,
    )


def _extra(outcome: Any) -> dict[str, Any] | None:
    extra: dict[str, Any] = {"signal": outcome.stopped_by} if outcome.stopped_by else {}
    if getattr(outcome, "budget", None) is not None:
        extra["budget"] = outcome.budget
    return extra or None


class Silent:
    """A reporter that shows nothing (`lok status` prints its own table)."""

    def __call__(self, ev: Event) -> None:
        pass

    def tick(self) -> None:
        pass


def for_terminal(stream: TextIO, as_json: bool, summary: bool = True) -> PlainReporter:
    """The live view on a terminal (unless --json), plain lines elsewhere. With
    summary False the caller prints the summary itself, after the results."""
    if stream.isatty() and not as_json:
        return LiveReporter(stream, summary)
    return PlainReporter(stream, summary=summary)


class PlainReporter:
    """One line per event; for pipes, logs and agents.

    Each finished step carries `[done/total]`. A dry run prints no line per step
    (its plan is the results block); `summary` False leaves the summary line to the
    caller, which prints it last, after the results (`summary_last`).
    """

    def __init__(
        self, stream: TextIO | None = None, color: bool = False, summary: bool = True
    ) -> None:
        self.out = stream or sys.stderr
        self.color = color
        self.summary = summary
        self.total = 0
        self.done = 0
        self.dry_run = False

    def _c(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def __call__(self, ev: Event) -> None:
        line = self.render(ev)
        if line is not None:
            self.out.write(line + "\n")
            self.out.flush()

    def tick(self) -> None:
        """Nothing to redraw: a plain line is written when its event comes."""

    def summary_last(self, outcome: Any) -> None:
        """Print the run's summary line (the caller has printed the results)."""
        self.out.write(self._summary(finished(outcome)) + "\n")
        self.out.flush()

    def _summary(self, ev: RunFinished) -> str:
        if ev.dry_run:
            return self._c(summary_line(ev), "1")
        return self._c(summary_line(ev), "1") + self._c(f"  [run {ev.run_id}]", "2")

    def render(self, ev: Event) -> str | None:
        """The line for one event (None: nothing to print)."""
        if isinstance(ev, RunStarted):
            self.total, self.done, self.dry_run = ev.steps, 0, ev.dry_run
            head = f"Running workflow: {ev.workflow}" + (" (dry run)" if ev.dry_run else "")
            if ev.description:
                head += "\n" + self._c(ev.description, "2")
            return head
        if isinstance(ev, ParallelStart):
            if ev.limit and ev.limit < ev.size:
                return f"[parallel] {ev.size} steps ready, up to {ev.limit} at a time"
            return f"[parallel] Running {ev.size} steps in parallel"
        if isinstance(ev, UnitStarted):
            if self.dry_run:
                return None
            unit = f" {ev.unit}" if ev.unit else ""
            via = f" via {ev.backend}" if ev.backend else ""
            return f"[step] {ev.step}{unit}{via} ({ev.reason})"
        if isinstance(ev, StepNote):
            unit = f" {ev.unit}" if ev.unit else ""
            return f"  ↻ {ev.step}{unit}: {ev.text}"
        if isinstance(ev, StepFinished):
            self.done += 1
            if self.dry_run:
                return None
            return self._finished(ev) + self._c(f"  [{self.done}/{self.total}]", "2")
        if isinstance(ev, RunFinished):
            return self._summary(ev) if self.summary else None
        if isinstance(ev, Notice):
            return self._c(ev.text, "2")
        return None

    def _finished(self, ev: StepFinished) -> str:
        glyph = GLYPH.get(ev.status, "?")
        cut = f" — {TRUNCATED}" if ev.truncated else ""
        if ev.status is Status.RAN:
            each = ", ".join(f"{name} {_fmt(t)}" for name, t in ev.parts)
            times = f"{_fmt(ev.duration)}; {each}" if len(ev.parts) > 1 else _fmt(ev.duration)
            return self._c(f"  {glyph} {ev.step} ({times}){cut}", "33" if cut else "32")
        if ev.status is Status.REUSED:
            return self._c(f"  {glyph} {ev.step} reused{cut}", "2")
        if ev.status is Status.FAILED:
            return self._c(
                f"  {glyph} {ev.step} failed: {_first_line(ev.error) or ev.reason}", "31"
            )
        if ev.status is Status.STALE:
            return f"  {glyph} {ev.step} would run: {ev.reason}"
        return self._c(f"  {glyph} {ev.step} {ev.status.value}: {ev.reason}", "33")


class LiveReporter(PlainReporter):
    """On a terminal: finished lines scroll; at the bottom, the running steps with their
    elapsed time and one status line: `3/20 done · 4 running · up to 4 at a time`."""

    def __init__(self, stream: TextIO | None = None, summary: bool = True) -> None:
        super().__init__(stream, color=True, summary=summary)
        self.running: dict[tuple[str, str], float] = {}
        self.jobs = self.slots = 0
        self.drawn = 0
        self.last_draw = 0.0

    def __call__(self, ev: Event) -> None:
        self._clear()
        if isinstance(ev, RunStarted):
            self.jobs = self.slots = ev.jobs
        elif isinstance(ev, ParallelStart) and ev.limit:
            # throttled below what is ready (a backend's concurrency): say the real figure
            self.jobs = ev.limit if ev.limit < ev.size else self.slots
        if isinstance(ev, UnitStarted):
            self.running[(ev.step, ev.unit)] = time.monotonic()
        elif isinstance(ev, StepFinished):
            for key in [k for k in self.running if k[0] == ev.step]:
                del self.running[key]
        if not isinstance(ev, UnitStarted):
            line = self.render(ev)
            if line is not None:
                self.out.write(line + "\n")
        if not isinstance(ev, RunFinished):
            self._draw()
        else:
            self.out.flush()

    def tick(self) -> None:
        """Redraw elapsed times (called by the coordinator while it waits)."""
        if time.monotonic() - self.last_draw >= 0.2:
            self._clear()
            self._draw()

    def _clear(self) -> None:
        if self.drawn:
            self.out.write(f"\x1b[{self.drawn}F\x1b[J")
            self.drawn = 0

    def status(self) -> str:
        """The bottom line: how far the run is, what runs, how much may run at once."""
        parts = [f"{self.done}/{self.total} done"]
        if self.running:
            parts.append(f"{len(self.running)} running")
        if self.jobs:
            parts.append(f"up to {self.jobs} at a time")
        return "  " + " · ".join(parts)

    def _draw(self) -> None:
        now = time.monotonic()
        if self.total == 0 or self.dry_run:
            self.last_draw = now
            return
        rows = sorted(self.running.items(), key=lambda kv: kv[1])
        shown = rows[:12]
        for (step, unit), since in shown:
            label = f"{step} {unit}".strip()
            self.out.write(self._c(f"  ⋯ {label}  {_fmt(now - since)}", "36") + "\n")
        if len(rows) > len(shown):
            self.out.write(self._c(f"  ⋯ and {len(rows) - len(shown)} more", "36") + "\n")
        self.out.write(self._c(self.status(), "2") + "\n")
        self.drawn = len(shown) + (1 if len(rows) > len(shown) else 0) + 1
        self.out.flush()
        self.last_draw = now


def _in_order(outcome: Any) -> Iterator[tuple[str, Any, Status]]:
    """(name, result, status) of each step that has a result, in workflow order."""
    for name in outcome.workflow.step_names:
        r = outcome.results.get(name)
        if r is not None:
            yield name, r, r.status


REAPPLIED = "re-applied "  # how lokfile.engine.reasons.reapply() says it, once done
PLAN_LABEL = {Status.STALE: "would run", Status.REUSED: "fresh"}
RESULT_TAG = {
    Status.RAN: "OK",
    Status.REUSED: "OK",
    Status.FAILED: "FAIL",
    Status.SKIPPED: "SKIP",
    Status.INTERRUPTED: "STOP",
    Status.STALE: "STALE",
}


def plan_block(outcome: Any) -> str:
    """A dry run's plan: each step, whether it would run or is fresh, and why."""
    rows = []
    rules: dict[str, None] = {}
    for name, r, status in _in_order(outcome):
        label = PLAN_LABEL.get(status, status.value)
        reason = "" if status is Status.REUSED else r.reason
        estimates = [u.estimate for u in r.units if getattr(u, "estimate", None) is not None]
        if status is Status.STALE and estimates:
            reason += f"  — about {_estimate_text(estimates)}"
            rules.update(dict.fromkeys(rule for e in estimates for rule in e.how))
        rows.append((label, name, reason))
    width = max((len(n) for _, n, _ in rows), default=0)
    lines = ["", "Plan (dry run, nothing was run):", ""]
    for label, name, reason in rows:
        lines.append(f"  {label:<9}  {name:<{width}}  {reason}".rstrip())
    cost = outcome.cost
    if cost.get("stale_calls") or cost.get("not_estimated"):
        lines += ["", "Estimated:" + estimate_words(cost).removeprefix(";") + "."]
        lines += [f"  {rule}" for rule in rules]
    return "\n".join(lines) + "\n\n"


def _estimate_text(estimates: list[Any]) -> str:
    """`$0.0042 (1,204 in, 512 out tokens)`: what some units' calls should cost."""
    priced = [e.usage for e in estimates]
    unknown = sum(u.unpriced_calls for u in priced)
    dollars = money(sum(u.cost_usd for u in priced)) if unknown < len(priced) else "an unknown price"
    tokens_in, tokens_out = sum(u.input_tokens for u in priced), sum(u.output_tokens for u in priced)
    return f"{dollars} ({tokens_in:,} in, {tokens_out:,} out tokens)"


INLINE_DEPTH = 4  # a JSON value this deep goes on one line: a loop item of a run's steps


def json_text(document: Any) -> str:
    """The one way a command's JSON document is written: UTF-8 kept, indented by two
    spaces down to INLINE_DEPTH, where each value takes one line, written by json's C
    encoder (a run of 2000 loop items: 6 ms of text, against 17 for indent=2, which only
    json's Python encoder writes)."""
    import json

    inline = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode
    parts: list[str] = []

    def put(value: Any, depth: int) -> None:
        if depth >= INLINE_DEPTH or not isinstance(value, (dict, list, tuple)) or not value:
            parts.append(inline(value))
            return
        pad = "\n" + "  " * (depth + 1)
        if isinstance(value, dict):
            parts.append("{")
            for i, (k, v) in enumerate(value.items()):
                key = k if isinstance(k, str) else json.dumps(k)  # as json names 1, True, None
                parts.append(f"{',' if i else ''}{pad}{inline(key)}: ")
                put(v, depth + 1)
            parts.append("\n" + "  " * depth + "}")
        else:
            parts.append("[")
            for i, v in enumerate(value):
                parts.append(f"{',' if i else ''}{pad}")
                put(v, depth + 1)
            parts.append("\n" + "  " * depth + "]")

    put(document, 0)
    return "".join(parts) + "\n"


def results_block(outcome: Any) -> str:
    """The step outputs, as the original printed them after a run (a dry run: its plan)."""
    if outcome.dry_run:
        return plan_block(outcome)
    lines = ["", "Results:", ""]
    for name, r, status in _in_order(outcome):
        if status is Status.SKIPPED and r.reason == "condition not met":
            continue
        tag = RESULT_TAG.get(status, status.value.upper())
        note = ", reused" if status is Status.REUSED else ""
        if status is Status.RAN and r.reason.startswith(REAPPLIED):
            note = f", {r.reason}"  # stored edits written again: no backend was asked
        lines.append(f"[{tag}] {name} ({r.duration:.1f}s{note})")
        lines.append("")
        text = r.output if status is not Status.SKIPPED else f"Skipped: {r.reason}"
        for out_line in (text or "").splitlines() or [""]:
            lines.append(f"  {out_line}" if out_line else "")
        lines.append("")
    return "\n".join(lines) + "\n"


def _estimate_doc(estimates: list[Any]) -> dict[str, Any]:
    """A stale step's estimate in JSON: its units' together, with every rule they used."""
    if len(estimates) == 1:
        return dict(estimates[0].doc())
    doc = total(e.usage for e in estimates).doc()
    doc["input_from"] = sorted({e.how[0] for e in estimates})
    doc["output_from"] = sorted({e.how[1] for e in estimates})
    return doc


def outcome_json(outcome: Any) -> dict[str, Any]:
    """The `--json` document of a run."""
    steps = []
    for name, r, status in _in_order(outcome):
        item: dict[str, Any] = {
            "name": name,
            "status": status.value,
            "reason": r.reason,
            "success": r.success,
            "duration_s": round(r.duration, 4),
            "saved_s": round(r.saved, 4),
            "backend": r.backend,
            "digest": r.digest,
            "output": r.output,
            "error": r.error,
            "usage": r.usage.doc(),  # the answers its result is made of, made now or reused
        }
        if r.truncated:
            item["truncated"] = True  # an answer was cut at the token limit
        if r.parsed is not None:
            item["parsed"] = r.parsed
        estimates = [u.estimate for u in r.units if getattr(u, "estimate", None) is not None]
        if outcome.dry_run and status is Status.STALE and estimates:
            item["estimate"] = _estimate_doc(estimates)
        if len(r.units) > 1 or (r.units and r.units[0].name):
            item["units"] = [
                {
                    "unit": u.name,
                    "status": u.status.value,
                    "reason": u.reason,
                    "backend": u.backend,
                    "duration_s": round(getattr(u, "duration", 0.0), 4),
                    "digest": u.digest,
                    "output": u.output,
                    "error": u.error,
                    "usage": u.usage.doc(),
                    **({"truncated": True} if getattr(u, "truncated", False) else {}),
                }
                for u in r.units
            ]
        steps.append(item)
    doc: dict[str, Any] = {
        "run_id": None if outcome.dry_run else outcome.run_id,
        "workflow": outcome.workflow.name,
        "status": outcome.status.value,
        "exit_code": outcome.exit_code,
        "dry_run": outcome.dry_run,
        "counts": outcome.counts,
        "wall_s": round(outcome.wall, 4),
        "saved_s": round(outcome.saved, 4),
        "cost": outcome.cost,
        "steps": steps,
    }
    if getattr(outcome, "budget", None) is not None:
        doc["budget"] = outcome.budget
    if outcome.dry_run:
        order = list(_in_order(outcome))
        doc["plan"] = {
            key: [name for name, _r, status in order if status is wanted]
            for key, wanted in (
                ("would_run", Status.STALE),
                ("fresh", Status.REUSED),
                ("skipped", Status.SKIPPED),
            )
        }
    return doc
