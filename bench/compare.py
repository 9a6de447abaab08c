#!/usr/bin/env python3
"""lok against make, doit and snakemake on identical DAGs of trivial shell steps.

Workspaces come from the team's shared generator (`../shared/bench/gen.py`,
or `--shared DIR`), which emits the same graph for every tool; each step runs
`cksum <upstream outputs> src/<step>.txt > out/<step>.txt`. lok runs that same
command: it declares `out/<step>.txt` as the step's output, which lok stores and
keys. `--lok-tee` gives lok the generator's older variant instead,
`cksum … | tee out/<step>.txt` (the bytes also on stdout, one process more a step).

Scenarios, per shape (chain, wide, diamond) and N:

  cold  full build from the never-built state, -j1    prepare: the tool's clean
  noop  rebuild with nothing changed, -j1
  incr  rebuild after rewriting src of the middle step, -j1   prepare: rewrite it
  par   wide, middle steps `sleep 0.2`, -j2, cold     prepare: the tool's clean

A tool's clean moves what it would delete into WORK/.trash (`--clean aside`, the
default), emptied after the last cell: on this VM's journal-less ext4 a file created
within a minute or more of thousands being deleted costs hundreds of µs of system
time, so deleting before each run makes each run pay for the ones before it
(benchlib.Trash). `--clean delete` deletes, as the harness did before 2026-12-03.

Each scenario first runs once per tool as a probe that also verifies it
(no-op rebuilt 0 outputs; incr rebuilt exactly the downstream set, counted by
output mtimes against a marker; cold outputs byte-identical across tools).
Then the timed runs are interleaved across tools (make, doit, lok, make, …) so
every tool of a cell sees the same background load, and ratios are taken
against make *from the same cell*. Medians of --runs (--noop-runs for no-op),
fewer when one run is slow (--cell-budget seconds per tool and cell).

Results merge into results/compare.json keyed by (scenario, shape, N); a cell
is always replaced whole, so its tools come from one invocation.
`report.py` renders the tables into RESULTS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (
    BENCH_DIR,
    PYTHON,
    REPO,
    Timed,
    Trash,
    git_state,
    load1,
    log,
    machine,
    run_timed,
    save_json,
    snapshot_lok,
    summary,
    trash_options,
    wait_for_quiet,
)

PAR_SLEEP = 0.2
LOK_CLEAN = "rm -rf out .lok && mkdir out .lok"


def load_gen(shared: Path) -> ModuleType:
    """Import the shared generator from `shared/gen.py` without copying it."""
    path = shared / "gen.py"
    spec = importlib.util.spec_from_file_location("lokbench_gen", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import {path}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up here
    spec.loader.exec_module(mod)
    return mod


def configure_lok(gen: ModuleType, lok: str, tee: bool = False) -> None:
    """Point the generator's placeholder `lok` tool at the real CLI; `tee`: lok's steps
    also print their output (the generator's knob), else they run make's command."""
    gen.LOK_TEE_STDOUT = tee
    gen.TOOLS["lok"] = dataclasses.replace(
        gen.TOOLS["lok"],
        build=f"{shlex.quote(lok)} run -j {{j}} bench.toml",
        clean=LOK_CLEAN,
        version=f"{shlex.quote(lok)} --version",
        exe=lok,
        note="lok run -j {j} bench.toml; clean drops .lok (store and run history)",
    )


# ----------------------------------------------------------------- verification


def newer_than(ws: Path, marker: Path) -> set[str]:
    """Names of the steps whose output file was written after `marker`."""
    m = marker.stat().st_mtime_ns
    return {p.stem for p in (ws / "out").glob("s*.txt") if p.stat().st_mtime_ns > m}


def outputs_digest(ws: Path) -> str:
    """Count and hash of every output, in step order."""
    h = hashlib.md5()
    files = sorted((ws / "out").glob("s*.txt"), key=lambda p: int(p.stem[1:]))
    for p in files:
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return f"{len(files)}:{h.hexdigest()[:12]}"


# ----------------------------------------------------------------- timing


@dataclasses.dataclass
class Entry:
    """One tool's part of a cell: its workspace, commands, probe and samples."""

    tool: Any
    ws: Path
    build: str
    prepare: str | None = None
    runs: int = 1
    probe: Timed | None = None
    samples: list[Timed] = dataclasses.field(default_factory=list)
    status: str = "ok"
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """The JSON record of this tool in its cell."""
        rec: dict[str, Any] = {"status": self.status, **self.extra}
        if self.probe is not None:
            rec["probe"] = round(self.probe.wall, 5)
            # summed RSS of the tool's process tree (lok and its workers), sampled in the probe
            rec["peak_rss_mb"] = round(self.probe.peak_rss / 2**20, 1)
        if self.status != "ok":
            return rec
        samples = self.samples or ([self.probe] if self.probe else [])
        rec["wall"] = summary([t.wall for t in samples])
        rec["cpu"] = statistics.median(t.cpu for t in samples)
        rec["method"] = f"median of {len(self.samples)}" if self.samples else "single probe run"
        return rec


def runs_for(probe: float, max_runs: int, budget: float) -> int:
    """How many timed runs fit the per-cell budget (1 = the probe is the sample)."""
    return max(1, min(max_runs, int(budget / max(probe, 1e-3))))


def interleave(entries: list[Entry], env: dict[str, str], timeout: float) -> None:
    """Timed runs, round-robin over tools, so they share the background load."""
    live = [e for e in entries if e.status == "ok" and e.runs >= 2]
    while live:
        for e in list(live):
            if e.prepare:
                prep = run_timed(e.prepare, e.ws, env)
                if prep.rc != 0:
                    e.status, e.extra["note"] = "error", f"prepare failed: {prep.tail[-300:]}"
                    live.remove(e)
                    continue
            t = run_timed(e.build, e.ws, env, timeout)
            if t.rc != 0:
                e.status, e.extra["note"] = "error", f"rc={t.rc}: {t.tail[-300:]}"
                live.remove(e)
                continue
            e.samples.append(t)
            if len(e.samples) >= e.runs:
                live.remove(e)


# ----------------------------------------------------------------- scenarios


class Bench:
    """Runs cells and merges them into the results file."""

    def __init__(self, gen: ModuleType, tools: list[Any], a: argparse.Namespace) -> None:
        self.gen = gen
        self.tools = tools
        self.a = a
        self.env: dict[str, str] = gen.tool_env()
        self.path = Path(a.results)
        self.doc: dict[str, Any] = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.doc.setdefault("cells", [])
        self.doc.setdefault("meta", {})
        self.busy = 0.0
        self.trash = Trash(Path(a.work) / ".trash", delete=a.clean == "delete")

    def settle(self) -> float:
        """Wait for the shared machine to quieten (bounded); return the 1-min load average."""
        self.busy = wait_for_quiet(self.a.quiet_cores, self.a.quiet_wait)
        return load1()

    def put(self, cell: dict[str, Any]) -> None:
        """Replace the cell with the same (scenario, shape, n) and save."""
        key = (cell["scenario"], cell["shape"], cell["n"])
        self.doc["cells"] = [
            c for c in self.doc["cells"] if (c["scenario"], c["shape"], c["n"]) != key
        ]
        self.doc["cells"].append(cell)
        save_json(self.path, self.doc)

    def cell(
        self, scenario: str, shape: str, n: int, entries: list[Entry], load0: float, **extra: Any
    ) -> None:
        """Store one measured cell with its load averages and per-tool records."""
        self.put(
            {
                "scenario": scenario,
                "shape": shape,
                "n": n,
                "load1": [load0, load1()],
                "busy_cores_before": self.busy,
                "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
                **extra,
                "tools": {e.tool.name: self._with_per_step(e.record(), n) for e in entries},
            }
        )
        for e in entries:
            r = e.record()
            med = (
                f"{r['wall']['median']:.4f}s cpu {r['cpu']:.3f}s ({r['method']})"
                if "wall" in r
                else r.get("note", "")
            )
            log(f"  {scenario:5s} {shape:8s} {n:5d} {e.tool.name:10s} {e.status:7s} {med}")

    @staticmethod
    def _with_per_step(rec: dict[str, Any], n: int) -> dict[str, Any]:
        """Median wall per step (ms): equal at N=1000 and N=10000 means no quadratic term."""
        if "wall" in rec:
            rec["per_step_ms"] = round(rec["wall"]["median"] / n * 1000, 4)
        return rec

    def shape_cells(self, shape: str, n: int, scenarios: list[str]) -> None:
        """cold / noop / incr for one (shape, N), every tool interleaved."""
        a, gen = self.a, self.gen
        g = gen.make_graph(shape, n)
        touch = g.touch_target()
        expected = g.downstream(touch)
        entries: list[Entry] = []
        load0 = self.settle()
        for tool in self.tools:
            ws = Path(a.work) / f"{tool.name}-{g.label}"
            self.trash.aside(ws)
            gen.write_workspace(tool, g, ws)
            clean = self.trash.shell(tool.clean)
            run_timed(clean, ws, self.env)
            e = Entry(tool, ws, tool.build.format(j=1), prepare=clean)
            e.probe = run_timed(e.build, ws, self.env, a.max_seconds, rss=True)
            if e.probe.rc != 0:
                done = len(list((ws / "out").glob("s*.txt")))
                e.status = "timeout" if e.probe.rc == 124 else "error"
                e.extra["note"] = (
                    f"killed after {a.max_seconds:.0f} s, {done}/{n} steps done"
                    if e.probe.rc == 124
                    else e.probe.tail[-400:]
                )
            else:
                e.extra["digest"] = outputs_digest(ws)
            entries.append(e)
        ok = [e for e in entries if e.status == "ok"]
        digests = {e.extra["digest"] for e in ok}
        if "cold" in scenarios:
            for e in ok:
                e.runs = runs_for(e.probe.wall if e.probe else 1.0, a.runs, a.cell_budget)
            interleave(entries, self.env, a.max_seconds)
            self.cell("cold", shape, n, entries, load0, identical=len(digests) <= 1)
        if "noop" in scenarios or "incr" in scenarios:
            self._noop(shape, n, entries, "noop" in scenarios)
        if "incr" in scenarios:
            self._incr(shape, n, entries, touch, expected)

    def _fresh(self, entries: list[Entry]) -> list[Entry]:
        fresh = []
        for e in entries:
            f = Entry(e.tool, e.ws, e.build, status=e.status, extra={})
            if e.status != "ok":
                f.extra["note"] = "not measured: cold run failed"
            fresh.append(f)
        return fresh

    def _noop(self, shape: str, n: int, cold: list[Entry], store: bool) -> None:
        load0 = self.settle()
        entries = self._fresh(cold)
        for e in entries:
            if e.status != "ok":
                continue
            marker = e.ws / ".bench-marker"
            marker.touch()
            time.sleep(0.02)  # file mtimes tick coarsely; keep outputs clearly after the marker
            e.probe = run_timed(e.build, e.ws, self.env, self.a.max_seconds, rss=True)
            rebuilt = newer_than(e.ws, marker)
            e.extra.update(rebuilt=len(rebuilt), expected=0, exact=not rebuilt)
            if e.probe.rc != 0:
                e.status, e.extra["note"] = "error", e.probe.tail[-400:]
            elif rebuilt:  # a wrong build is not timed
                e.status, e.extra["note"] = "wrong", f"a no-op rebuilt {len(rebuilt)} outputs"
            e.runs = runs_for(e.probe.wall, self.a.noop_runs, self.a.cell_budget)
        if store:
            interleave(entries, self.env, self.a.max_seconds)
            self.cell("noop", shape, n, entries, load0)

    def _incr(self, shape: str, n: int, cold: list[Entry], touch: str, expected: set[str]) -> None:
        load0 = self.settle()
        modify = f"date +%s%N > src/{touch}.txt"
        entries = self._fresh(cold)
        for e in entries:
            e.prepare = modify
            if e.status != "ok":
                continue
            marker = e.ws / ".bench-marker"
            marker.touch()
            time.sleep(0.02)
            run_timed(modify, e.ws, self.env)
            e.probe = run_timed(e.build, e.ws, self.env, self.a.max_seconds, rss=True)
            rebuilt = newer_than(e.ws, marker)
            e.extra.update(rebuilt=len(rebuilt), expected=len(expected), exact=rebuilt == expected)
            if e.probe.rc != 0:
                e.status, e.extra["note"] = "error", e.probe.tail[-400:]
            elif rebuilt != expected:  # a wrong build is not timed
                note = f"rebuilt {len(rebuilt)} outputs, {len(expected)} expected"
                e.status, e.extra["note"] = "wrong", note
            e.runs = runs_for(e.probe.wall, self.a.runs, self.a.cell_budget)
        interleave(entries, self.env, self.a.max_seconds)
        self.cell("incr", shape, n, entries, load0, touched=touch)

    def par(self, n: int) -> None:
        """wide, middle steps sleep 0.2 s, -j2, from clean; ideal = ceil((N-2)/2) * 0.2 s."""
        a, gen = self.a, self.gen
        g = gen.make_graph("wide", n, sleep=PAR_SLEEP)
        ideal = -(-(n - 2) // 2) * PAR_SLEEP
        load0 = self.settle()
        entries: list[Entry] = []
        for tool in self.tools:
            ws = Path(a.work) / f"{tool.name}-{g.label}"
            self.trash.aside(ws)
            gen.write_workspace(tool, g, ws)
            clean = self.trash.shell(tool.clean)
            run_timed(clean, ws, self.env)
            e = Entry(tool, ws, tool.build.format(j=2), prepare=clean)
            e.probe = run_timed(e.build, ws, self.env, max(a.max_seconds, 3 * ideal), rss=True)
            if e.probe.rc != 0:
                e.status, e.extra["note"] = "error", e.probe.tail[-400:]
            else:
                e.extra["digest"] = outputs_digest(ws)
                e.runs = runs_for(e.probe.wall, a.par_runs, a.par_budget)
            entries.append(e)
        interleave(entries, self.env, max(a.max_seconds, 3 * ideal))
        digests = {e.extra.get("digest") for e in entries if e.status == "ok"}
        self.cell(
            "par", "wide-sleep", n, entries, load0, j=2, ideal=ideal, identical=len(digests) <= 1
        )


# ----------------------------------------------------------------- start-up

IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)")


def top_level_imports(stderr: str, depth: int = 0) -> dict[str, int]:
    """Modules of a `-X importtime` report nested at most `depth` deep, with cumulative µs."""
    return {m[4]: int(m[2]) for m in IMPORT_LINE.finditer(stderr) if len(m[3]) // 2 <= depth}


def startup(lok: str, python: str, runs: int, env: dict[str, str]) -> dict[str, Any]:
    """`lok --version`, `python -c pass`, and `-X importtime -m lokfile --version`."""
    out: dict[str, Any] = {"when": time.strftime("%Y-%m-%dT%H:%M:%S"), "load1": [load1()]}
    cmds = {"lok --version": [lok, "--version"], "python -c pass": [python, "-c", "pass"]}
    for label, argv in cmds.items():
        for _ in range(2):  # warm the page cache and __pycache__
            run_timed(argv, REPO, env)
        times = [run_timed(argv, REPO, env).wall for _ in range(runs)]
        out[label] = summary(times)
        log(f"  {label:20s} median {out[label]['median'] * 1000:.1f} ms")
    # the snapshot launcher prepends its own path; -m needs it on PYTHONPATH instead
    snap = Path(lok).parent
    ienv = dict(env)
    if (snap / "lokfile").is_dir():
        ienv["PYTHONPATH"] = str(snap)
    base = set(
        top_level_imports(
            subprocess.run(
                [python, "-X", "importtime", "-c", "pass"],
                env=ienv,
                cwd=REPO,
                capture_output=True,
                text=True,
            ).stderr
        )
    )
    totals: list[int] = []
    per: dict[str, list[int]] = {}
    for _ in range(runs // 2 or 1):
        err = subprocess.run(
            [python, "-X", "importtime", "-m", "lokfile", "--version"],
            env=ienv,
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stderr
        mods = {k: v for k, v in top_level_imports(err).items() if k not in base}
        totals.append(sum(mods.values()))
        # three levels deep, to see which library inside lokfile.cli costs what
        for k, v in top_level_imports(err, 3).items():
            if k not in base:
                per.setdefault(k, []).append(v)
    out["importtime_total_us"] = statistics.median(totals)
    out["importtime_top"] = dict(
        sorted(((k, statistics.median(v)) for k, v in per.items()), key=lambda kv: -kv[1])[:20]
    )
    out["load1"].append(load1())
    log(f"  importtime -m lokfile --version: {out['importtime_total_us'] / 1000:.1f} ms")
    return out


# ----------------------------------------------------------------- main


def main() -> None:
    """Parse flags, run the chosen cells, merge results."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--shared",
        default=str(REPO.parent / "shared" / "bench"),
        help="folder holding the shared gen.py (default: %(default)s)",
    )
    ap.add_argument("--lok", default=str(REPO / ".venv" / "bin" / "lok"), help="lok executable")
    ap.add_argument(
        "--snapshot",
        metavar="REV",
        help="run lok from `git archive REV` instead of the working tree",
    )
    ap.add_argument("--tools", default="make,doit,snakemake,lok")
    ap.add_argument("--shapes", default="chain,wide,diamond")
    ap.add_argument("--sizes", default="100,1000")
    ap.add_argument(
        "--scenarios", default="cold,noop,incr,par", help="any of cold,noop,incr,par,startup"
    )
    ap.add_argument("--par-sizes", default="100", help="N for `par` (1000 takes ~2 min a run)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs for cold/incr")
    ap.add_argument("--noop-runs", type=int, default=10)
    ap.add_argument("--par-runs", type=int, default=3)
    ap.add_argument("--startup-runs", type=int, default=20)
    ap.add_argument(
        "--cell-budget",
        type=float,
        default=40.0,
        help="seconds of timed runs per tool and cell; fewer runs when slow",
    )
    ap.add_argument("--par-budget", type=float, default=35.0)
    ap.add_argument(
        "--max-seconds",
        type=float,
        default=150.0,
        help="a single run is killed (whole process group) after this",
    )
    ap.add_argument(
        "--quiet-cores",
        type=float,
        default=0.5,
        help="before each cell, wait until fewer cores than this are busy (shared machine)",
    )
    ap.add_argument("--quiet-wait", type=float, default=60.0, help="but wait no longer than this")
    ap.add_argument("--work", default="/tmp/lokbench-compare")
    trash_options(ap, "a tool's clean clears its outputs between runs")
    ap.add_argument(
        "--lok-tee",
        action="store_true",
        help="lok's steps run `cksum … | tee out/…` instead of make's `cksum … > out/…`",
    )
    ap.add_argument(
        "--bench-venv",
        default=os.environ.get("BENCH_VENV", "/tmp/benchvenv"),
        help="venv whose bin/ goes first on PATH (doit, snakemake)",
    )
    ap.add_argument("--results", default=str(BENCH_DIR / "results" / "compare.json"))
    a = ap.parse_args()

    os.environ["BENCH_VENV"] = a.bench_venv
    Path(a.work).mkdir(parents=True, exist_ok=True)
    gen = load_gen(Path(a.shared))
    lok = snapshot_lok(a.snapshot, Path(a.work)) if a.snapshot else a.lok
    configure_lok(gen, lok, a.lok_tee)
    wanted = [gen.TOOLS[t] for t in a.tools.split(",")]
    tools = [t for t in wanted if t.available()]
    missing = [t.name for t in wanted if not t.available()]
    for name in missing:
        log(f"{name}: not installed, skipped")
    if "make" not in [t.name for t in tools]:
        log("warning: make is not among the tools, so these cells carry no ratios")
    bench = Bench(gen, tools, a)
    versions = {}
    for t in tools:
        p = subprocess.run(t.version, shell=True, env=bench.env, capture_output=True, text=True)
        versions[t.name] = ((p.stdout or p.stderr).strip().splitlines() or ["?"])[0]
    bench.doc["meta"].update(
        {
            "machine": machine(),
            "versions": versions,
            "not_installed": missing,
            "lok": lok,
            "lok_code": git_state(a.snapshot),
            "last_command": " ".join(shlex.quote(x) for x in sys.argv),
            "lok_command": "cksum … | tee out/…" if a.lok_tee else "cksum … > out/… (as make)",
            "clean": a.clean,
        }
    )
    save_json(bench.path, bench.doc)

    scen = a.scenarios.split(",")
    t0 = time.time()
    if "startup" in scen:
        log("start-up")
        bench.settle()
        bench.doc["startup"] = startup(lok, PYTHON, a.startup_runs, bench.env)
        bench.doc["startup"]["busy_cores_before"] = bench.busy
        save_json(bench.path, bench.doc)
    if set(scen) & {"cold", "noop", "incr"}:
        for n in [int(x) for x in a.sizes.split(",")]:
            for shape in a.shapes.split(","):
                log(f"{shape} N={n} (elapsed {time.time() - t0:.0f} s, load {load1()})")
                bench.shape_cells(shape, n, scen)
    if "par" in scen:
        for n in [int(x) for x in a.par_sizes.split(",")]:
            log(f"par N={n} (elapsed {time.time() - t0:.0f} s, load {load1()})")
            bench.par(n)
    if not a.keep_trash:
        bench.trash.empty()
    log(f"done in {time.time() - t0:.0f} s -> {bench.path}")


if __name__ == "__main__":
    main()
