"""Run history as people ask for it: the list of runs, one run in detail.

Runs are named by references (`latest`, `latest~N`, an id or its prefix,
`REF~N`), resolved by lokfile.store.refs. Everything here reads; nothing
writes the history.
"""

from __future__ import annotations

import time
from typing import Any

from lokfile.errors import UsageError
from lokfile.outcome import RunStatus, Status, Usage
from lokfile.project import Project
from lokfile.reporters import GLYPH, cost_words, money
from lokfile.store.artifacts import Store
from lokfile.store.rundb import RunDB

_TIMED = (Status.RAN, Status.FAILED)  # statuses whose time was spent in this run
PREVIEW_LINES = 6
MAX_ITEM_LINES = 8


TRUNCATED = "answer cut at the token limit (max_tokens)"


def open_db(project: Project) -> RunDB:
    """The project's run history; UsageError when nothing was ever recorded."""
    if not project.db_path.exists():
        raise UsageError(
            f"no runs recorded in {project.root}", "run a workflow first: lok run NAME"
        )
    return RunDB.open(project.db_path)


# -- formatting -------------------------------------------------------------


def when(ts: float | None) -> str:
    """A timestamp in local time, as `2026-11-22 14:03:07`."""
    if not ts:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def human(seconds: float | None) -> str:
    """A duration as a person reads it: `340ms`, `4.2s`, `3m 05s`, `2h 10m`."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m {int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h {int(seconds % 3600 // 60):02d}m"


def run_summary(row: dict[str, Any]) -> dict[str, Any]:
    """The JSON shape of one run in `lok runs list`."""
    ended = row.get("ended")
    return {
        "id": row["id"],
        "workflow": row["workflow"],
        "status": row["status"],
        "started": row["started"],
        "started_local": when(row["started"]),
        "ended": ended,
        "duration_s": round(ended - row["started"], 4) if ended else None,
        "ran": row.get("ran") or 0,
        "reused": row.get("reused") or 0,
        "failed": row.get("failed") or 0,
        "skipped": row.get("skipped") or 0,
        "saved_s": round(row.get("saved_s") or 0.0, 4),
        "resumed_from": row.get("resumed_from"),
        "args": _loads(row.get("args")),
        # spent, saved, calls, tokens (lokfile.outcome.cost_summary); null for a run
        # recorded before lok kept costs, or still running
        "cost": _loads(row.get("cost")),
    }


def render_list(summaries: list[dict[str, Any]]) -> str:
    """The table printed by `lok runs list`."""
    if not summaries:
        return "No runs yet.\n"
    head = ("RUN", "WORKFLOW", "WHEN", "STATUS", "RAN", "REUSED", "FAILED", "TIME", "COST")
    rows = [
        (
            s["id"],
            s["workflow"],
            s["started_local"],
            s["status"],
            str(s["ran"]),
            str(s["reused"]),
            str(s["failed"]),
            _took(s),
            cost_cell(s.get("cost")),
        )
        for s in summaries
    ]
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    right = {4, 5, 6, 7}
    lines = []
    for r in (head, *rows):
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def cost_cell(cost: dict[str, Any] | None) -> str:
    """A run's money in one cell: `$0.042`, `$0 ($0.31 saved)`, `-` when no LLM was asked."""
    if not cost or not (cost.get("calls") or cost.get("reused_calls")):
        return "-"
    text = money(cost.get("spent_usd") or 0.0)
    if cost.get("unpriced_calls"):
        text += "+?"  # some calls have no known price
    if cost.get("reused_calls"):
        text += f" ({money(cost.get('saved_usd') or 0.0)} saved)"
    return text


def _took(summary: dict[str, Any]) -> str:
    if summary["duration_s"] is not None:
        return human(summary["duration_s"])
    running = summary["status"] == RunStatus.RUNNING
    return RunStatus.RUNNING.value if running else "-"


# -- one run in detail --------------------------------------------------------


def run_detail(
    db: RunDB,
    store: Store,
    row: dict[str, Any],
    step: str | None = None,
    order: list[str] | None = None,
) -> dict[str, Any]:
    """Every step of a run (or only `step`) with status, reason, timings, output and units,
    in `order` (the workflow's step order) when given, else in the order they finished."""
    steps: dict[str, dict[str, Any]] = {}
    for r in db.results(row["id"]):
        if r["unit"] == "":
            steps[r["step"]] = _step_doc(r, store, row["started"])
    for r in db.results(row["id"]):
        if r["unit"] != "" and r["step"] in steps:
            doc = steps[r["step"]]
            doc["units"].append(_unit_doc(r, store, row["started"]))
            # a multi-unit step's own row lists its units; its units know the upstream steps
            upstream = (_loads(r.get("components")) or {}).get("upstream") or {}
            doc["upstream"] = sorted(set(doc["upstream"]) | set(upstream))
    if step is not None and step not in steps:
        known = ", ".join(steps) or "none"
        raise UsageError(f"run {row['id']} has no step '{step}'", f"its steps: {known}")
    doc = run_summary(row)
    doc["error"] = row.get("error")
    doc["path"] = row.get("workflow_path")
    names = sorted(steps, key=rank(order, list(steps)))
    doc["steps"] = [steps[n] for n in names if step is None or n == step]
    return doc


def rank(order: list[str] | None, recorded: list[str]) -> Any:
    """A sort key: position in `order`, then (for steps it lacks) the recorded position."""
    where = {n: i for i, n in enumerate(order or [])}
    seen = {n: i for i, n in enumerate(recorded)}
    return lambda n: (where.get(n, len(where)), seen.get(n, 0))


def _step_doc(r: dict[str, Any], store: Store, t0: float) -> dict[str, Any]:
    doc = _unit_doc(r, store, t0)
    doc.pop("unit")
    components = _loads(r.get("components"))
    doc["name"] = r["step"]
    doc["key"] = r.get("key") or None
    doc["upstream"] = sorted((components or {}).get("upstream") or {})
    doc["units"] = []
    return doc


def _unit_doc(r: dict[str, Any], store: Store, t0: float) -> dict[str, Any]:
    started, ended = r.get("started") or None, r.get("ended") or None
    output, missing = read_output(store, r.get("digest"))
    doc: dict[str, Any] = {
        "unit": r["unit"],
        "status": r["status"],
        "reason": r.get("reason") or "",
        "backend": r.get("backend"),
        "model": r.get("model"),
        "worker": r.get("worker"),  # where it ran: "local", a Dask worker; None when reused
        "attempts": r.get("attempts") or 0,
        "started": started,
        "ended": ended,
        "offset_s": round(started - t0, 4) if started else None,
        "duration_s": round(r.get("duration") or 0.0, 4),
        # a step's units may overlap: its wall time is first start to last end
        "wall_s": round(ended - started, 4) if started and ended else None,
        "digest": r.get("digest"),
        "output": output,
        "output_missing": missing,
        "error": r.get("error"),
        # the calls behind it: made in this run (ran, failed) or when the reused answer was made
        "usage": Usage.from_doc(_loads(r.get("usage"))).doc(),
    }
    if r.get("truncated"):  # cut at the token limit (schema 6)
        doc["truncated"] = True
    return doc


def read_output(store: Store, digest: str | None) -> tuple[str | None, bool]:
    """(text, missing) of an artifact; (None, False) when there is none."""
    if not digest:
        return None, False
    try:
        return store.get_text(digest), False
    except (FileNotFoundError, ValueError):
        return None, True


def render_show(doc: dict[str, Any], full: bool = False) -> str:
    """The text of `lok runs show`: a header, one line per step, backend answers, outputs."""
    dur = {RunStatus.RUNNING.value: "still running", "-": "an unknown time"}.get(
        _took(doc), _took(doc)
    )
    lines = [
        f"Run {doc['id']}  {doc['workflow']}  {doc['status']}",
        f"  started {doc['started_local']}, took {dur}"
        + (f", saved {human(doc['saved_s'])} by reuse" if doc["saved_s"] else ""),
        f"  {doc['ran']} ran, {doc['reused']} reused, {doc['failed']} failed, "
        f"{doc['skipped']} skipped",
    ]
    money_text = cost_words(doc.get("cost"))
    if money_text:
        cost = doc["cost"]
        made = []
        if cost["calls"]:
            tokens = f"{cost['input_tokens']:,} in / {cost['output_tokens']:,} out tokens"
            made.append(f"{cost['calls']} calls, {tokens}")
        if cost["reused_calls"]:
            made.append(f"{cost['reused_calls']} calls reused")
        lines.append(f"  {money_text} ({'; '.join(made)})")
    if doc.get("resumed_from"):
        lines.append(f"  resumed from {doc['resumed_from']}")
    args = doc.get("args") or {}
    if args.get("positional") or args.get("named"):
        shown = [
            *args.get("positional", []),
            *(f"{k}={v}" for k, v in args.get("named", {}).items()),
        ]
        lines.append(f"  args: {' '.join(shown)}")
    if doc.get("error"):
        lines.append(f"  error: {doc['error']}")
    lines.append("")
    rows: list[tuple[str, ...]] = []
    for st in doc["steps"]:
        rows.append(_step_cells(st, ""))
        units = st["units"]
        items = [u for u in units if u["unit"].startswith("item:")]
        if len(items) > MAX_ITEM_LINES:  # a loop of 500: counts, not 500 lines
            units = [u for u in units if u not in items]
            counts: dict[str, int] = {}
            for u in items:
                counts[u["status"]] = counts.get(u["status"], 0) + 1
            summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
            rows.append((f"  … {len(items)} items", summary, "", "", "", ""))
        rows += [_step_cells({**u, "name": u["unit"]}, "  ") for u in units]
    widths = [max((len(r[i]) for r in rows), default=0) for i in range(5)]
    for r in rows:
        cells = [c.ljust(w) for c, w in zip(r[:5], widths, strict=True)]
        text = "  " + "  ".join(c for c, w in zip(cells, widths, strict=True) if w)
        lines.append(f"{text}  — {r[5]}" if r[5] else text.rstrip())
    for st in doc["steps"]:
        lines.extend(_outputs(st, full))
    return "\n".join(lines).rstrip() + "\n"


def took(s: dict[str, Any]) -> float:
    """The wall time of a step or unit (its duration when no times were recorded)."""
    wall = s.get("wall_s")
    return float(wall if wall is not None else s["duration_s"])


def usage_cell(s: dict[str, Any]) -> str:
    """What a step's or unit's calls cost: `$0.042`, `saved $0.31` (reused), `price unknown`."""
    usage = s.get("usage") or {}
    if not usage.get("calls"):
        return ""
    cost = usage.get("cost_usd")
    shown = money(cost) if cost is not None else "price unknown"
    return f"saved {shown}" if s["status"] == Status.REUSED and cost is not None else shown


def _step_cells(s: dict[str, Any], indent: str) -> tuple[str, ...]:
    """(name, status, timing, backend, cost, reason) of one step or unit line."""
    timing = human(took(s)) if s["status"] in _TIMED else ""
    if s.get("offset_s") is not None and timing:
        timing = f"+{human(s['offset_s'])} {timing}"
    via = s.get("backend") or ""
    if s.get("model"):
        via += f" ({s['model']})"
    reason = s.get("reason") or ""
    if s["status"] == Status.FAILED and s.get("error"):
        reason = _first_line(s["error"])
    if s.get("truncated"):
        reason = "; ".join(p for p in (reason, TRUNCATED) if p)
    name = f"{indent}{GLYPH.get(s['status'], '?')} {s['name']}"
    return name, s["status"], timing, via, usage_cell(s), reason


def _outputs(s: dict[str, Any], full: bool) -> list[str]:
    out: list[str] = []
    answers = [
        u for u in s["units"] if u["unit"].startswith("backend:") or u["unit"] == "synthesis"
    ]
    if full or answers:
        out += ["", f"── {s['name']} " + "─" * max(3, 60 - len(s["name"]))]
    if full:
        out += _block(s.get("output"), s.get("output_missing"), full=True)
    for u in answers:
        label = u["unit"].removeprefix("backend:")
        timing = f", {human(took(u))}" if u["status"] in _TIMED else ""
        out += ["", f"  [{label}] {u['status']}{timing}"]
        out += _block(u.get("output"), u.get("output_missing"), full=full)
    return out


def _block(text: str | None, missing: bool | None, full: bool) -> list[str]:
    if missing:
        return ["    (artifact missing from the store; `lok runs verify` checks it)"]
    lines = (text or "").splitlines() or ["(empty)"]
    if not full and len(lines) > PREVIEW_LINES:
        more = len(lines) - PREVIEW_LINES
        lines = [*lines[:PREVIEW_LINES], f"… {more} more line(s); --step NAME shows it all"]
    return ["    " + ln if ln else "" for ln in lines]


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0][:200] if lines else ""


def _loads(text: Any) -> Any:
    import json

    if not text:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None
