"""What a run produced: statuses, step results and the run's outcome.

Plain classes (not dataclasses) on purpose: the no-op fast path builds these
without importing the engine or the model, and defining a dataclass costs
start-up time. Nothing here imports another lokfile module.
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Iterable
from typing import Any, NamedTuple


class Status(str, enum.Enum):
    """What happened to a step in a run."""

    RAN = "ran"  # executed and succeeded
    REUSED = "reused"  # fresh: the stored result was used
    FAILED = "failed"  # executed and failed (soft when continue_on_error)
    SKIPPED = "skipped"  # condition false, a dependency failed, or the run stopped first
    INTERRUPTED = "interrupted"
    STALE = "stale"  # a dry run or a plan: it would run (nothing ran)

    def __bool__(self) -> bool:
        return self in (Status.RAN, Status.REUSED)


class RunStatus(str, enum.Enum):
    """What happened to a run as a whole."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class Usage(NamedTuple):
    """What LLM calls consumed, and what they cost: one call's, or a sum of them.

    `input_tokens` counts every prompt token, cached or not (`cache_read_tokens` and
    `cache_write_tokens` are the parts of it read from and written to a prompt cache).
    `cost_usd` is the cost of the priced calls; `unpriced_calls` were made at a price
    nobody knows, so a sum that has any is not the whole cost and `cost` is None
    (never shown as free). `source` says where the price came from: `config` (the
    backend's `price`), `backend` (the CLI's own report, or a free backend), `genai-prices`,
    `mixed`, or "" (none). `estimated`: some token counts were approximated from text.
    """

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = 0
    source: str = ""
    estimated: bool = False

    @property
    def cost(self) -> float | None:
        """The whole cost, or None when some call's price is unknown."""
        return None if self.unpriced_calls else self.cost_usd

    def plus(self, other: Usage) -> Usage:
        """The two together."""
        if not other.calls:
            return self
        if not self.calls:
            return other
        return Usage(
            calls=self.calls + other.calls,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            cost_usd=self.cost_usd + other.cost_usd,
            unpriced_calls=self.unpriced_calls + other.unpriced_calls,
            source=self.source if self.source == other.source else "mixed",
            estimated=self.estimated or other.estimated,
        )

    def doc(self) -> dict[str, Any]:
        """The JSON shape: counts, and `cost_usd` null when not every call is priced."""
        out: dict[str, Any] = {
            "calls": self.calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "cost_usd": usd(self.cost),
            "unpriced_calls": self.unpriced_calls,
        }
        if self.source:
            out["priced_by"] = self.source
        if self.estimated:
            out["estimated"] = True
        return out

    @classmethod
    def from_doc(cls, doc: Any) -> Usage:
        """A Usage from its JSON shape (an empty one from anything else)."""
        if not isinstance(doc, dict) or not doc.get("calls"):
            return NO_USAGE
        calls = int(doc["calls"])
        unpriced = int(doc.get("unpriced_calls") or 0)
        cost = doc.get("cost_usd")
        if cost is None:  # an older or partial record: only the priced part is known
            cost = doc.get("priced_cost_usd") or 0.0
            unpriced = unpriced or calls
        return cls(
            calls=calls,
            input_tokens=int(doc.get("input_tokens") or 0),
            output_tokens=int(doc.get("output_tokens") or 0),
            cache_read_tokens=int(doc.get("cache_read_tokens") or 0),
            cache_write_tokens=int(doc.get("cache_write_tokens") or 0),
            cost_usd=float(cost),
            unpriced_calls=unpriced,
            source=str(doc.get("priced_by") or ""),
            estimated=bool(doc.get("estimated")),
        )

    def record(self) -> dict[str, Any]:
        """What the history keeps: the JSON shape plus the priced part of a partial cost."""
        out = self.doc()
        if self.unpriced_calls and self.cost_usd:
            out["priced_cost_usd"] = usd(self.cost_usd)
        return out


NO_USAGE = Usage()


def total(usages: Iterable[Usage]) -> Usage:
    """Every one of `usages` together."""
    out = NO_USAGE
    for u in usages:
        out = out.plus(u)
    return out


def usd(value: float | None) -> float | None:
    """Dollars as JSON shows them: rounded to a millionth of a cent (no float noise)."""
    return None if value is None else round(value, 8)


def cost_summary(spent: Usage, reused: Usage) -> dict[str, Any]:
    """The `cost` of a run document: what its calls cost now, what reuse saved."""
    return {
        "spent_usd": usd(spent.cost_usd),
        "saved_usd": usd(reused.cost_usd),
        "calls": spent.calls,
        "reused_calls": reused.calls,
        "input_tokens": spent.input_tokens,
        "output_tokens": spent.output_tokens,
        "cache_read_tokens": spent.cache_read_tokens,
        "unpriced_calls": spent.unpriced_calls,
        "unpriced_reused_calls": reused.unpriced_calls,
    }


def run_cost(results: Iterable[StepResult]) -> dict[str, Any]:
    """The `cost` of a run from its step results: spent by the calls made, saved by reuse."""
    rows = list(results)
    return cost_summary(total(r.spent for r in rows), total(r.reused for r in rows))


def estimate_summary(results: Iterable[Any], llm_steps: set[str]) -> dict[str, Any]:
    """What a dry run's stale calls should cost (each stale unit's `estimate`), and the
    stale steps that could not be estimated (their prompt needs an upstream answer)."""
    estimates = {  # one call per key: two units with one key make one call
        u.key: u.estimate.usage
        for r in results
        for u in r.units
        if r.status is Status.STALE and getattr(u, "estimate", None) is not None
    }
    planned = total(estimates.values())
    waiting = [
        r.name for r in results if r.status is Status.STALE and not r.units and r.name in llm_steps
    ]
    return {
        "estimated_usd": usd(planned.cost_usd),
        "stale_calls": planned.calls,
        "unpriced_stale_calls": planned.unpriced_calls,
        "estimated_input_tokens": planned.input_tokens,
        "estimated_output_tokens": planned.output_tokens,
        "not_estimated": waiting,
    }


class StepResult:
    """The outcome of one step in one run."""

    def __init__(
        self,
        *,
        name: str,
        status: Status,
        reason: str,
        output: str = "",
        digest: str | None = None,
        error: str | None = None,
        backend: str | None = None,
        duration: float = 0.0,
        saved: float = 0.0,
        parsed: Any = None,
        units: list[Any] | None = None,
        filename: str = "",
        spent: Usage = NO_USAGE,
        reused: Usage = NO_USAGE,
        truncated: bool = False,
    ) -> None:
        self._truncated = truncated  # a replayed run's word for it (its units are not kept)
        self.name = name
        self.status = status
        self.reason = reason
        self.output = output
        self.digest = digest
        self.error = error
        self.backend = backend
        self.duration = duration
        self.saved = saved
        self.parsed = parsed
        self.units: list[Any] = units if units is not None else []  # units.Unit, or UnitSummary
        self.filename = filename
        self.spent = spent  # the calls made for it in this run
        self.reused = reused  # what the reused answers it is made of cost when they were made

    @property
    def truncated(self) -> bool:
        """An answer it is made of was cut at the token limit (max_tokens)."""
        return self._truncated or any(getattr(u, "truncated", False) for u in self.units)

    @property
    def success(self) -> bool:
        return self.status in (Status.RAN, Status.REUSED)

    @property
    def usage(self) -> Usage:
        """The answers its result is made of, made now or reused."""
        return self.spent.plus(self.reused)

    def __repr__(self) -> str:
        return f"StepResult({self.name!r}, {self.status!r}, {self.reason!r})"


class UnitSummary:
    """A unit as a replayed run reports it (the fields `--json` shows)."""

    def __init__(
        self,
        *,
        name: str,
        digest: str | None,
        backend: str | None,
        output: str,
        usage: Usage = NO_USAGE,
    ) -> None:
        self.usage = usage
        self.name = name
        self.status = Status.REUSED
        self.reason = "fresh"
        self.digest = digest
        self.backend = backend
        self.output = output
        self.error: str | None = None


class WorkflowSummary:
    """What reporting needs of a workflow: its name and step order."""

    def __init__(
        self,
        *,
        name: str,
        step_names: tuple[str, ...],
        description: str = "",
        path: str | None = None,
    ) -> None:
        self.name = name
        self.step_names = step_names
        self.description = description
        self.path = path


class RunOutcome:
    """One run: its status and every step's result."""

    def __init__(
        self,
        *,
        run_id: str,
        workflow: Any,  # model.Workflow or WorkflowSummary
        status: RunStatus,
        results: dict[str, StepResult],
        wall: float,
        saved: float,
        dry_run: bool = False,
        stopped_by: str | None = None,
        budget: dict[str, Any] | None = None,
    ) -> None:
        self.run_id = run_id
        self.workflow = workflow
        self.status = status
        self.results = results
        self.wall = wall
        self.saved = saved
        self.dry_run = dry_run
        self.stopped_by = stopped_by  # the signal that interrupted the run, if one did
        self.budget = budget  # the cap, what was spent against it, whether it stopped the run

    @property
    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in (Status.RAN, Status.REUSED, Status.FAILED, Status.SKIPPED)}
        for r in self.results.values():
            out[r.status.value] = out.get(r.status.value, 0) + 1
        return out

    @property
    def cost(self) -> dict[str, Any]:
        """The run's `cost` document (lokfile.outcome.cost_summary)."""
        rows = self.results.values()
        cost = run_cost(rows)
        if not self.dry_run:
            return cost
        steps = getattr(self.workflow, "steps", ())
        llm = {st.name for st in steps if getattr(st.kind, "value", "") == "llm"}
        return {**cost, **estimate_summary(rows, llm)}

    @property
    def exit_code(self) -> int:
        if self.status is RunStatus.INTERRUPTED:
            return 130
        return 0 if self.status is RunStatus.SUCCEEDED else 1


def covered(spans: Any) -> float:
    """Seconds covered by the (start, end) spans together, overlaps counted once: the
    wall time of work done in parallel (two 10 s answers side by side took 10 s)."""
    total = 0.0
    reach = float("-inf")
    for start, end in sorted(spans):
        if end <= reach:
            continue
        total += end - max(start, reach)
        reach = end
    return total


def new_run_id() -> str:
    """Sortable, unique: UTC time plus random hex."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + os.urandom(3).hex()
