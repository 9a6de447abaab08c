"""What changed between two runs: per step same / changed / only in A / only in B.

A step is *changed* when its output artifact or its status differs. Beside
that, the key components recorded for each unit tell *why* (prompt, upstream,
sources, backend…), and the outputs themselves are compared: a unified diff
for text, and for JSON a structural diff by path (`.findings[2].severity`).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lokfile.errors import UsageError
from lokfile.history.runs import read_output
from lokfile.outcome import Status
from lokfile.store.artifacts import Store
from lokfile.store.refs import resolve
from lokfile.store.rundb import RunDB

SAME, CHANGED, ONLY_A, ONLY_B = "same", "changed", "only_a", "only_b"
_MARK = {SAME: "=", CHANGED: "~", ONLY_A: "-", ONLY_B: "+"}
_LABEL = {SAME: "same", CHANGED: "changed", ONLY_A: "only in A", ONLY_B: "only in B"}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_MISSING = object()
Paint = Callable[[str, str], str]


@dataclass
class StepDiff:
    """How one step compares across the two runs."""

    name: str
    state: str
    status_a: str | None = None
    status_b: str | None = None
    digest_a: str | None = None
    digest_b: str | None = None
    inputs: list[str] = field(default_factory=list)  # key components that differ, described
    unified: list[str] = field(default_factory=list)  # unified diff lines (text outputs)
    json_changes: list[dict[str, Any]] | None = None  # None: the outputs are not both JSON
    added: int = 0
    removed: int = 0
    note: str | None = None


@dataclass
class RunDiff:
    a: dict[str, Any]
    b: dict[str, Any]
    steps: list[StepDiff]

    @property
    def differ(self) -> bool:
        """True when any step is not the same."""
        return any(s.state != SAME for s in self.steps)


def pick_runs(
    db: RunDB, ref_a: str | None, ref_b: str | None, workflow: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two runs to compare: given, or A and the latest run of its workflow, or the last two."""
    if ref_a is not None and ref_b is not None:
        return resolve(db, ref_a, workflow), resolve(db, ref_b, workflow)
    if ref_a is None:
        b = resolve(db, "latest", workflow)
        return _previous(db, b), b
    a = resolve(db, ref_a, workflow)
    b = resolve(db, "latest", a["workflow"])
    if b["id"] == a["id"]:
        return _previous(db, a), a
    return a, b


def _previous(db: RunDB, row: dict[str, Any]) -> dict[str, Any]:
    try:
        return resolve(db, f"{row['id']}~1")
    except UsageError:
        raise UsageError(
            f"workflow '{row['workflow']}' has only one run ({row['id']}): nothing to compare",
            "run it again, or name two runs: lok runs diff A B",
        ) from None


def diff_runs(
    db: RunDB,
    store: Store,
    a: dict[str, Any],
    b: dict[str, Any],
    step: str | None = None,
    order: list[str] | None = None,
) -> RunDiff:
    """Compare every step (or only `step`) of run `a` with run `b`, in `order` when given."""
    from lokfile.history.runs import rank

    rows_a, rows_b = _by_step(db.results(a["id"])), _by_step(db.results(b["id"]))
    names = _merged_order(list(rows_a), list(rows_b))
    names.sort(key=rank(order, list(names)))
    if step is not None:
        if step not in names:
            raise UsageError(
                f"neither run has a step '{step}'", f"steps: {', '.join(names) or 'none'}"
            )
        names = [step]
    steps = [_diff_step(n, rows_a.get(n), rows_b.get(n), store, a["id"], b["id"]) for n in names]
    return RunDiff(a, b, steps)


def _by_step(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """step -> unit -> row, in recorded order."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["step"], {})[r["unit"]] = r
    return out


def _merged_order(a: list[str], b: list[str]) -> list[str]:
    order = list(b)
    for i, name in enumerate(a):
        if name in order:
            continue
        before = next((a[j] for j in range(i - 1, -1, -1) if a[j] in order), None)
        order.insert(order.index(before) + 1 if before else 0, name)
    return order


def _diff_step(
    name: str,
    ua: dict[str, dict[str, Any]] | None,
    ub: dict[str, dict[str, Any]] | None,
    store: Store,
    id_a: str,
    id_b: str,
) -> StepDiff:
    if ua is None or ub is None:
        only = ub if ua is None else ua
        assert only is not None
        row = only[""] if "" in only else next(iter(only.values()))
        state = ONLY_B if ua is None else ONLY_A
        status = row["status"]
        return StepDiff(
            name,
            state,
            status_a=status if state == ONLY_A else None,
            status_b=status if state == ONLY_B else None,
            digest_a=row.get("digest") if state == ONLY_A else None,
            digest_b=row.get("digest") if state == ONLY_B else None,
        )
    ra, rb = ua.get("", {}), ub.get("", {})
    d = StepDiff(
        name,
        SAME,
        ra.get("status"),
        rb.get("status"),
        ra.get("digest"),
        rb.get("digest"),
        inputs=_inputs(ua, ub),
    )
    if _outcome(d.status_a) != _outcome(d.status_b) or d.digest_a != d.digest_b:
        d.state = CHANGED
    if d.digest_a != d.digest_b:
        _compare_outputs(d, store, id_a, id_b)
    return d


def _outcome(status: str | None) -> str | None:
    """Ran and reused are the same outcome: a reused result is the result."""
    return "ok" if status in (Status.RAN, Status.REUSED) else status


# -- why: the key components ----------------------------------------------------


def _inputs(ua: dict[str, dict[str, Any]], ub: dict[str, dict[str, Any]]) -> list[str]:
    """Descriptions of the key components that differ, over every unit of the step."""
    out: list[str] = []
    units_a = {u for u in ua if u} or {""}
    units_b = {u for u in ub if u} or {""}
    for u in sorted(units_b - units_a):
        out.append(f"unit added: {u}")
    for u in sorted(units_a - units_b):
        out.append(f"unit removed: {u}")
    for u in sorted(units_a & units_b):
        ca, cb = _components(ua[u]), _components(ub[u])
        if ca is None or cb is None:
            continue
        for text in describe_components(ca, cb):
            if text not in out:
                out.append(text)
    return out


def _components(row: dict[str, Any]) -> dict[str, Any] | None:
    try:
        value = json.loads(row.get("components") or "null")
    except ValueError:
        return None
    return value if isinstance(value, dict) and value else None


def describe_components(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """`prompt`, `upstream: plan`, `sources: src/x.py`, `env: TOKEN`, … for what differs."""
    out: list[str] = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if va == vb:
            continue
        if key in ("upstream", "sources", "env", "inputs") and (
            isinstance(va, dict) or isinstance(vb, dict)
        ):
            da, db_ = va or {}, vb or {}
            names = sorted(k for k in set(da) | set(db_) if da.get(k) != db_.get(k))
            out.append(f"{key}: {', '.join(names)}")
        elif key == "options":
            if "backend" not in out:
                out.append("backend")
        elif key == "system":
            out.append("system prompt")
        elif key in ("item", "index"):
            if "loop item" not in out:
                out.append("loop item")
        else:
            out.append(key)
    return out


# -- what: the outputs ------------------------------------------------------------


def _compare_outputs(d: StepDiff, store: Store, id_a: str, id_b: str) -> None:
    text_a, miss_a = read_output(store, d.digest_a)
    text_b, miss_b = read_output(store, d.digest_b)
    if miss_a or miss_b:
        d.note = "output artifact missing from the store"
        return
    text_a, text_b = text_a or "", text_b or ""
    ja, jb = parse_json(text_a), parse_json(text_b)
    if ja is not _MISSING and jb is not _MISSING:
        d.json_changes = json_changes(ja, jb)
    d.unified = list(
        difflib.unified_diff(
            text_a.splitlines(),
            text_b.splitlines(),
            f"A/{id_a}/{d.name}",
            f"B/{id_b}/{d.name}",
            lineterm="",
        )
    )
    for line in d.unified[2:]:
        if line.startswith("+"):
            d.added += 1
        elif line.startswith("-"):
            d.removed += 1


def parse_json(text: str) -> Any:
    """The JSON value of an output (an object, an array, or JSON lines); _MISSING if not JSON."""
    stripped = text.strip()
    if not stripped or stripped[0] not in "[{":
        return _MISSING
    from lokfile.outputs import MAX_DEPTH, deeper_than

    value: Any
    try:
        value = json.loads(stripped)
    except (ValueError, RecursionError):
        try:  # JSON lines
            value = [json.loads(line) for line in stripped.splitlines() if line.strip()]
        except (ValueError, RecursionError):
            return _MISSING
    # json_changes walks the documents recursively: a deeper one is compared as text
    return _MISSING if deeper_than(value, MAX_DEPTH, stripped) else value


def json_changes(a: Any, b: Any, path: str = "") -> list[dict[str, Any]]:
    """Every added, removed or changed value between two JSON documents, by path."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[dict[str, Any]] = []
        for key in sorted(set(a) | set(b), key=str):
            sub = path + (f".{key}" if _IDENT.match(str(key)) else f"[{json.dumps(key)}]")
            if key not in b:
                out.append({"op": "removed", "path": sub, "a": a[key]})
            elif key not in a:
                out.append({"op": "added", "path": sub, "b": b[key]})
            else:
                out += json_changes(a[key], b[key], sub)
        return out
    if isinstance(a, list) and isinstance(b, list):
        out = []
        for i in range(max(len(a), len(b))):
            sub = f"{path}[{i}]"
            if i >= len(b):
                out.append({"op": "removed", "path": sub, "a": a[i]})
            elif i >= len(a):
                out.append({"op": "added", "path": sub, "b": b[i]})
            else:
                out += json_changes(a[i], b[i], sub)
        return out
    if a == b and type(a) is type(b):
        return []
    return [{"op": "changed", "path": path or ".", "a": a, "b": b}]


# -- presenting ---------------------------------------------------------------------


def diff_json(diff: RunDiff) -> dict[str, Any]:
    """The `--json` document of `lok runs diff`."""
    from lokfile.history.runs import run_summary

    return {
        "a": run_summary(diff.a),
        "b": run_summary(diff.b),
        "differ": diff.differ,
        "counts": _counts(diff),
        "steps": [
            {
                "name": s.name,
                "state": s.state,
                "status_a": s.status_a,
                "status_b": s.status_b,
                "digest_a": s.digest_a,
                "digest_b": s.digest_b,
                "inputs": s.inputs,
                "added_lines": s.added,
                "removed_lines": s.removed,
                "unified_diff": "\n".join(s.unified) if s.unified else None,
                "json_changes": s.json_changes,
                "note": s.note,
            }
            for s in diff.steps
        ],
    }


def _counts(diff: RunDiff) -> dict[str, int]:
    out = {SAME: 0, CHANGED: 0, ONLY_A: 0, ONLY_B: 0}
    for s in diff.steps:
        out[s.state] += 1
    return out


def render(diff: RunDiff, stat: bool = False, color: bool = False) -> str:
    """The text of `lok runs diff`: a line per step, then the diffs (or only counts with stat)."""

    def paint(text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if color else text

    a, b = diff.a, diff.b
    head = f"A {a['id']} ({a['workflow']}, {a['status']})  →  B {b['id']} ({b['workflow']}, {b['status']})"
    lines = [head, ""]
    width = max((len(s.name) for s in diff.steps), default=4)
    for s in diff.steps:
        lines.append(_step_line(s, width, stat, paint))
    if not stat:
        for s in diff.steps:
            lines += _step_body(s, paint)
    c = _counts(diff)
    lines += [
        "",
        f"{c[CHANGED]} changed, {c[ONLY_A]} only in A, {c[ONLY_B]} only in B, {c[SAME]} same",
    ]
    return "\n".join(lines) + "\n"


def _step_line(s: StepDiff, width: int, stat: bool, paint: Paint) -> str:
    label = _LABEL[s.state]
    if s.state == CHANGED and _outcome(s.status_a) != _outcome(s.status_b):
        label += f" ({s.status_a} → {s.status_b})"
    elif s.state == SAME and s.inputs:
        label = "same output"
    text = f"  {_MARK[s.state]} {s.name.ljust(width)}  {label}"
    if stat and s.state == CHANGED:
        if s.json_changes:
            text += f"  {len(s.json_changes)} path(s)"
        text += f"  {paint(f'+{s.added}', '32')} {paint(f'-{s.removed}', '31')}"
    if s.inputs:
        text += f"  [inputs: {'; '.join(s.inputs)}]"
    code = {CHANGED: "33", ONLY_A: "31", ONLY_B: "32"}.get(s.state)
    return paint(text, code) if code and not stat else text


def _step_body(s: StepDiff, paint: Paint) -> list[str]:
    if s.state != CHANGED or (not s.unified and s.json_changes is None and not s.note):
        return []
    out = ["", paint(f"── {s.name} " + "─" * max(3, 60 - len(s.name)), "1")]
    if s.note:
        out.append(f"  ({s.note})")
    if s.json_changes:
        for ch in s.json_changes:
            out.append(_json_line(ch, paint))
        return out
    for line in s.unified:
        if line.startswith(("+++", "---")):
            out.append(paint(line, "1"))
        elif line.startswith("+"):
            out.append(paint(line, "32"))
        elif line.startswith("-"):
            out.append(paint(line, "31"))
        elif line.startswith("@@"):
            out.append(paint(line, "36"))
        else:
            out.append(line)
    return out


def _json_line(ch: dict[str, Any], paint: Paint) -> str:
    def short(v: Any) -> str:
        text = json.dumps(v, ensure_ascii=False, sort_keys=True)
        return text if len(text) <= 120 else text[:117] + "…"

    if ch["op"] == "added":
        return paint(f"  + {ch['path']}: {short(ch['b'])}", "32")
    if ch["op"] == "removed":
        return paint(f"  - {ch['path']}: {short(ch['a'])}", "31")
    return paint(f"  ~ {ch['path']}: {short(ch['a'])} → {short(ch['b'])}", "33")
