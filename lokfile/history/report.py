"""One run as one self-contained HTML page: no script, no font, no network.

The page shows the DAG (boxes coloured by status, with timings), a timeline
of when each step ran, every step's output, the answers of a multi-backend
step side by side, and optionally the diff against another run. Everything is
inline SVG and CSS; every text from a run is escaped.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from typing import Any

from lokfile.history.diff import CHANGED, SAME, RunDiff
from lokfile.history.runs import human, took, usage_cell
from lokfile.model import Workflow
from lokfile.outcome import Status, Usage
from lokfile.reporters import cost_words, money

MAX_OUTPUT_CHARS = 200_000
NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 170, 46, 60, 18, 12
TL_LABEL, TL_WIDTH, TL_ROW = 170, 620, 22
COLORS = {
    Status.RAN: "#2e7d32",
    Status.REUSED: "#607d8b",
    Status.FAILED: "#c62828",
    Status.SKIPPED: "#9e9e9e",
    Status.INTERRUPTED: "#ef6c00",
}
_TIMED = (Status.RAN, Status.FAILED)  # statuses whose time was spent in this run


def workflow_edges(
    doc: dict[str, Any], load: Callable[[str], Workflow]
) -> dict[str, list[str]]:
    """step -> the steps it depends on: from the recorded keys, else from the workflow
    file (`load` reads it from its recorded path)."""
    edges = {s["name"]: list(s.get("upstream") or []) for s in doc["steps"]}
    if all(edges.values()) or not doc.get("path"):
        return edges
    try:  # steps that never rendered (skipped) recorded no upstream: ask the workflow file
        wf = load(doc["path"])
    except Exception:  # the file may have changed or gone since; the report still renders
        return edges
    for step in wf.steps:
        if step.name in edges and not edges[step.name]:
            edges[step.name] = [d for d in step.depends_on if d in edges]
    return edges


def render_report(
    doc: dict[str, Any], edges: dict[str, list[str]], diff: RunDiff | None = None
) -> str:
    """The whole HTML page for the run `doc` (from history.run_detail)."""
    e = html.escape
    title = f"lok run {doc['id']} — {doc['workflow']}"
    elapsed = human(doc["duration_s"]) if doc["duration_s"] is not None else "still running"
    money_text = cost_words(doc.get("cost"))
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f'<header><h1>{e(doc["workflow"])} <span class="badge s-{e(doc["status"])}"'
        f' id="run-status">{e(doc["status"])}</span></h1>',
        f'<p class="meta">run <code id="run-id">{e(doc["id"])}</code> · started '
        f"{e(doc['started_local'])} · took {e(elapsed)} · "
        f'<span id="counts">{doc["ran"]} ran, {doc["reused"]} reused, {doc["failed"]} failed, '
        f"{doc['skipped']} skipped</span>"
        + (f" · saved {e(human(doc['saved_s']))} by reuse" if doc["saved_s"] else "")
        + (f' · <span id="cost">{e(money_text)}</span>' if money_text else "")
        + "</p></header>",
        '<section id="dag"><h2>Steps</h2>',
        dag_svg(doc["steps"], edges),
        "</section>",
        '<section id="timeline"><h2>Timeline</h2>',
        timeline_svg(doc["steps"], doc["duration_s"]),
        "</section>",
        cost_html(doc),
    ]
    if diff is not None:
        parts.append(diff_html(diff))
    parts.append('<section id="outputs"><h2>Outputs</h2>')
    parts += [_step_html(s) for s in doc["steps"]]
    parts += ["</section>", "</body></html>"]
    return "\n".join(parts) + "\n"


# -- the DAG ------------------------------------------------------------------


def layout(names: list[str], edges: dict[str, list[str]]) -> dict[str, tuple[int, int]]:
    """(column, row) per step: a step's column is one past its deepest dependency."""
    depth: dict[str, int] = {}

    def visit(name: str, trail: frozenset[str]) -> int:
        if name in depth:
            return depth[name]
        deps = [d for d in edges.get(name, []) if d in edges and d not in trail]
        depth[name] = 1 + max((visit(d, trail | {name}) for d in deps), default=-1)
        return depth[name]

    for n in names:
        visit(n, frozenset())
    rows: dict[int, int] = {}
    out = {}
    for n in names:
        col = depth[n]
        out[n] = (col, rows.get(col, 0))
        rows[col] = rows.get(col, 0) + 1
    return out


def dag_svg(steps: list[dict[str, Any]], edges: dict[str, list[str]]) -> str:
    """The DAG as inline SVG: one box per step, coloured by status, arrows from dependencies."""
    e = html.escape
    names = [s["name"] for s in steps]
    pos = layout(names, edges)
    cols = max((c for c, _ in pos.values()), default=0) + 1
    rows = max((r for _, r in pos.values()), default=0) + 1
    width = PAD * 2 + cols * NODE_W + (cols - 1) * GAP_X
    height = PAD * 2 + rows * NODE_H + (rows - 1) * GAP_Y

    def xy(name: str) -> tuple[int, int]:
        c, r = pos[name]
        return PAD + c * (NODE_W + GAP_X), PAD + r * (NODE_H + GAP_Y)

    out = [
        f'<svg class="dag" width="{width}" height="{height}" viewBox="0 0 {width} {height}"'
        ' role="img" aria-label="workflow graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7"'
        ' markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#888"/></marker></defs>',
    ]
    for name in names:
        for dep in edges.get(name, []):
            if dep not in pos:
                continue
            (x1, y1), (x2, y2) = xy(dep), xy(name)
            sx, sy, ex, ey = x1 + NODE_W, y1 + NODE_H // 2, x2, y2 + NODE_H // 2
            mid = (sx + ex) / 2
            out.append(
                f'<path class="edge" data-from="{e(dep)}" data-to="{e(name)}" '
                f'd="M{sx},{sy} C{mid},{sy} {mid},{ey} {ex},{ey}" fill="none" stroke="#888"'
                ' marker-end="url(#arrow)"/>'
            )
    for s in steps:
        x, y = xy(s["name"])
        color = COLORS.get(s["status"], "#9e9e9e")
        timing = human(took(s)) if s["status"] in _TIMED else s["status"]
        label = _short(s["name"], 22)
        out.append(
            f'<a href="#step-{e(s["name"])}"><g class="node" data-step="{e(s["name"])}"'
            f' data-status="{e(s["status"])}">'
            f"<title>{e(s['name'])}: {e(s['status'])} — {e(s.get('reason') or '')}</title>"
            f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="7" fill="{color}"/>'
            f'<text x="{x + 10}" y="{y + 19}" class="n">{e(label)}</text>'
            f'<text x="{x + 10}" y="{y + 36}" class="t">{e(s["status"])}'
            f"{' · ' + e(timing) if timing != s['status'] else ''}</text></g></a>"
        )
    out.append("</svg>")
    return "\n".join(out)


# -- the timeline -------------------------------------------------------------------


def timeline_svg(steps: list[dict[str, Any]], wall: float | None) -> str:
    """When each step (and each backend of a multi-backend step) ran, on a shared time axis;
    steps that did not run (reused, skipped) get a hollow marker and their status."""
    e = html.escape
    rows: list[tuple[str, dict[str, Any], bool]] = []
    for s in steps:
        rows.append((s["name"], s, False))
        rows += [
            (u["unit"].removeprefix("backend:"), {**u, "name": s["name"]}, True)
            for u in s["units"]
            if u["unit"].startswith("backend:") or u["unit"] == "synthesis"
        ]
    ends = [_span(r)[0] + _span(r)[1] for _, r, _ in rows if _span(r)[0] >= 0]
    span = max([wall or 0.0, *ends, 0.001])
    scale = TL_WIDTH / span
    height = TL_ROW * (len(rows) + 1) + 8
    width = TL_LABEL + TL_WIDTH + 70
    out = [
        f'<svg class="timeline" width="{width}" height="{height}" viewBox="0 0 {width} {height}"'
        ' role="img" aria-label="timeline">'
    ]
    for i in range(5):
        t = span * i / 4
        x = TL_LABEL + t * scale
        out.append(
            f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height - 14}" class="tick"/>'
            f'<text x="{x:.1f}" y="{height - 2}" class="axis">{e(human(t))}</text>'
        )
    for i, (label, r, is_unit) in enumerate(rows):
        y = i * TL_ROW + 4
        color = COLORS.get(r["status"], "#9e9e9e")
        kind = "unit" if is_unit else "bar"
        out.append(
            f'<g class="{kind}" data-step="{e(r["name"])}" data-status="{e(r["status"])}">'
            f'<text x="{TL_LABEL - 8}" y="{y + 14}" class="label{" sub" if is_unit else ""}">'
            f"{e(_short(label, 24))}<title>{e(label)}</title></text>"
        )
        start, length = _span(r)
        if start >= 0 and r["status"] in (*_TIMED, Status.INTERRUPTED):
            x = TL_LABEL + start * scale
            w = max(2.0, length * scale)
            h = TL_ROW - (10 if is_unit else 6)
            out.append(
                f'<rect x="{x:.1f}" y="{y + (4 if is_unit else 2)}" width="{w:.1f}" height="{h}"'
                f' rx="3" fill="{color}"><title>{e(label)}: {e(human(length))}</title></rect>'
                f'<text x="{x + w + 4:.1f}" y="{y + 14}" class="d">{e(human(length))}</text>'
            )
        else:
            out.append(
                f'<rect x="{TL_LABEL}" y="{y + 6}" width="10" height="{TL_ROW - 14}" fill="none"'
                f' stroke="{color}"/><text x="{TL_LABEL + 14}" y="{y + 14}" class="d">'
                f"{e(r['status'])}</text>"
            )
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _span(r: dict[str, Any]) -> tuple[float, float]:
    """(offset from the run's start, wall time) of a step or unit; offset -1 when it did not run."""
    if r.get("offset_s") is None:
        return -1.0, 0.0
    if r.get("started") and r.get("ended"):
        return float(r["offset_s"]), max(0.0, float(r["ended"]) - float(r["started"]))
    return float(r["offset_s"]), float(r["duration_s"])


# -- cost -----------------------------------------------------------------------


def cost_html(doc: dict[str, Any]) -> str:
    """What the run's calls cost, per step and per backend, spent now and saved by reuse;
    "" when the run asked no LLM."""
    e = html.escape
    calls = _calls(doc["steps"])
    if not calls:
        return ""
    head = (
        "<tr><th>{}</th><th>calls</th><th>input tokens</th><th>output tokens</th>"
        "<th>spent</th><th>saved</th></tr>"
    )
    out = ['<section id="costs"><h2>Cost</h2>']
    for title, kind in (("per step", "step"), ("per backend", "backend")):
        groups: dict[str, list[tuple[bool, Usage]]] = {}
        for step, backend, reused, usage in calls:
            groups.setdefault(step if kind == "step" else backend, []).append((reused, usage))
        out.append(f'<table class="cost" data-by="{kind}"><caption>{title}</caption>')
        out.append(head.format(kind))
        for name, parts in groups.items():
            out.append(_cost_row(name, parts, f'data-{kind}="{e(name)}"'))
        out.append(_cost_row("total", [(c[2], c[3]) for c in calls], 'class="total"'))
        out.append("</table>")
    out.append("</section>")
    return "\n".join(out)


def _calls(steps: list[dict[str, Any]]) -> list[tuple[str, str, bool, Usage]]:
    """(step, backend, reused, usage) of every answer a step is made of."""
    found = []
    for s in steps:
        units = [u for u in s["units"] if (u.get("usage") or {}).get("calls")]
        parts = units or ([s] if (s.get("usage") or {}).get("calls") else [])
        for part in parts:
            found.append(
                (
                    s["name"],
                    part.get("backend") or s.get("backend") or "?",
                    part["status"] == Status.REUSED,
                    Usage.from_doc(part["usage"]),
                )
            )
    return found


def _cost_row(label: str, parts: list[tuple[bool, Usage]], attrs: str) -> str:
    e = html.escape
    spent = [u for reused, u in parts if not reused]
    saved = [u for reused, u in parts if reused]

    def dollars(items: list[Usage]) -> str:
        if not items:
            return ""
        unknown = sum(u.unpriced_calls for u in items)
        if unknown == sum(u.calls for u in items):
            return "price unknown"
        known = money(sum(u.cost_usd for u in items))
        return known + (f" + {unknown} unpriced" if unknown else "")

    every = [u for _reused, u in parts]
    tokens_in, tokens_out = sum(u.input_tokens for u in every), sum(u.output_tokens for u in every)
    return (
        f"<tr {attrs}><td>{e(label)}</td><td>{sum(u.calls for u in every)}</td>"
        f"<td>{tokens_in:,}</td><td>{tokens_out:,}</td>"
        f"<td>{e(dollars(spent))}</td><td>{e(dollars(saved))}</td></tr>"
    )


# -- outputs ----------------------------------------------------------------------


def _step_html(s: dict[str, Any]) -> str:
    e = html.escape
    via = s.get("backend") or ""
    if s.get("model"):
        via += f" ({s['model']})"
    meta = [e(s["status"])]
    if s["status"] in _TIMED:
        meta.append(e(human(took(s))))
    if via:
        meta.append(e(via))
    if usage_cell(s):
        meta.append(e(usage_cell(s)))
    if s.get("reason"):
        meta.append(e(s["reason"]))
    out = [
        f'<article class="step" id="step-{e(s["name"])}" data-status="{e(s["status"])}">',
        f'<h3><span class="dot s-{e(s["status"])}"></span>{e(s["name"])}'
        f'<span class="smeta">{" · ".join(meta)}</span></h3>',
    ]
    if s.get("error") and s["status"] == Status.FAILED:
        out.append(f'<p class="error">{e(s["error"])}</p>')
    answers = [
        u for u in s["units"] if u["unit"].startswith("backend:") or u["unit"] == "synthesis"
    ]
    if answers:
        out.append('<div class="answers">')
        for u in answers:
            label = u["unit"].removeprefix("backend:")
            extra = f" · {human(took(u))}" if u["status"] in _TIMED else ""
            out.append(
                f'<div class="answer" data-unit="{e(u["unit"])}" data-status="{e(u["status"])}">'
                f'<h4>{e(label)} <span class="smeta">{e(u["status"])}{e(extra)}</span></h4>'
                f"{_pre(u)}</div>"
            )
        out.append("</div>")
        out.append("<details><summary>combined output</summary>" + _pre(s) + "</details>")
    else:
        out.append("<details open><summary>output</summary>" + _pre(s) + "</details>")
    out.append("</article>")
    return "\n".join(out)


def _pre(s: dict[str, Any]) -> str:
    if s.get("output_missing"):
        return '<p class="missing">artifact missing from the store</p>'
    text = s.get("output") or ""
    note = ""
    if len(text) > MAX_OUTPUT_CHARS:
        note = f'<p class="note">cut at {MAX_OUTPUT_CHARS} of {len(text)} characters</p>'
        text = text[:MAX_OUTPUT_CHARS]
    return f'<pre class="output">{html.escape(text) or "<i>(empty)</i>"}</pre>{note}'


# -- diff view ------------------------------------------------------------------


def diff_html(diff: RunDiff) -> str:
    """The diff against another run: a line per step, then unified or by-path diffs."""
    e = html.escape
    label = {SAME: "same", CHANGED: "changed", "only_a": "only in A", "only_b": "only in B"}
    out = [
        '<section id="diff"><h2>Changes</h2>',
        f'<p class="meta">A <code>{e(diff.a["id"])}</code> → B <code>{e(diff.b["id"])}</code>'
        f" (this run)</p>",
        '<table class="difftable"><tr><th>step</th><th>state</th><th>inputs that changed</th></tr>',
    ]
    for s in diff.steps:
        out.append(
            f'<tr class="d-{e(s.state)}" data-step="{e(s.name)}" data-state="{e(s.state)}">'
            f"<td>{e(s.name)}</td><td>{e(label[s.state])}</td><td>{e('; '.join(s.inputs))}</td></tr>"
        )
    out.append("</table>")
    for s in diff.steps:
        if s.state != CHANGED:
            continue
        out.append(f'<div class="stepdiff" data-step="{e(s.name)}"><h3>{e(s.name)}</h3>')
        if s.json_changes:
            out.append(
                '<table class="jsonchanges"><tr><th>change</th><th>path</th><th>A</th>'
                "<th>B</th></tr>"
            )
            for ch in s.json_changes:
                old = json.dumps(ch.get("a"), ensure_ascii=False) if "a" in ch else ""
                new = json.dumps(ch.get("b"), ensure_ascii=False) if "b" in ch else ""
                out.append(
                    f'<tr class="j-{e(ch["op"])}"><td>{e(ch["op"])}</td><td><code>'
                    f"{e(ch['path'])}</code></td><td>{e(old)}</td><td>{e(new)}</td></tr>"
                )
            out.append("</table>")
        elif s.unified:
            lines = []
            for line in s.unified:
                cls = "ctx"
                if line.startswith(("+++", "---")):
                    cls = "hdr"
                elif line.startswith("+"):
                    cls = "add"
                elif line.startswith("-"):
                    cls = "del"
                elif line.startswith("@@"):
                    cls = "hunk"
                lines.append(f'<span class="{cls}">{e(line)}</span>')
            out.append('<pre class="udiff">' + "\n".join(lines) + "</pre>")
        elif s.note:
            out.append(f'<p class="note">{e(s.note)}</p>')
        out.append("</div>")
    out.append("</section>")
    return "\n".join(out)


_CSS = """
:root{color-scheme:light dark;--bg:#fafafa;--fg:#1d1d1f;--mut:#6b6b70;--card:#fff;--line:#ddd}
@media (prefers-color-scheme:dark){:root{--bg:#16171a;--fg:#e8e8ea;--mut:#9a9aa2;--card:#1f2024;--line:#34353a}}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;background:var(--bg);color:var(--fg);margin:0 auto;max-width:1200px;padding:16px 24px}
h1{font-size:22px;margin:8px 0}h2{font-size:16px;margin:24px 0 8px;border-bottom:1px solid var(--line);padding-bottom:4px}
h3{font-size:15px;margin:0 0 6px}h4{margin:0 0 4px;font-size:13px}
.meta,.smeta{color:var(--mut)}.smeta{font-weight:normal;font-size:12px;margin-left:10px}
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.badge{font-size:12px;padding:2px 8px;border-radius:10px;color:#fff;vertical-align:middle}
.s-succeeded,.s-ran{background:#2e7d32}.s-failed{background:#c62828}.s-reused{background:#607d8b}
.s-skipped{background:#9e9e9e}.s-interrupted,.s-running{background:#ef6c00}
.dot{display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:8px}
svg{max-width:100%;height:auto;display:block}
svg text{font:12px system-ui,sans-serif}svg .n{fill:#fff;font-weight:600}svg .t{fill:#fff;opacity:.9;font-size:11px}
svg .label{fill:var(--fg);text-anchor:end}svg .sub{fill:var(--mut);font-size:11px}svg .d,svg .axis{fill:var(--mut);font-size:11px}
svg .tick{stroke:var(--line)}
.step{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 14px;margin:10px 0}
pre.output,pre.udiff{background:var(--bg);border:1px solid var(--line);border-radius:6px;padding:8px;white-space:pre-wrap;word-break:break-word;max-height:480px;overflow:auto;margin:6px 0}
.answers{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:10px}
.answer{border:1px solid var(--line);border-radius:6px;padding:8px}
.error{color:#c62828;white-space:pre-wrap}.missing,.note{color:var(--mut);font-style:italic}
table{border-collapse:collapse;margin:6px 0}caption{text-align:left;color:var(--mut)}.cost .total td{font-weight:600}td,th{border:1px solid var(--line);padding:3px 8px;text-align:left;vertical-align:top}
.d-changed td:nth-child(2){color:#ef6c00}.d-only_a td:nth-child(2){color:#c62828}.d-only_b td:nth-child(2){color:#2e7d32}
.udiff .add{color:#2e7d32}.udiff .del{color:#c62828}.udiff .hunk{color:#0277bd}.udiff .hdr{font-weight:600}
.j-added td:first-child{color:#2e7d32}.j-removed td:first-child{color:#c62828}.j-changed td:first-child{color:#ef6c00}
"""
