"""`lok gc`: what no kept run reaches goes; what a rerun of the latest run needs stays."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from lokfile.cli import cli
from lokfile.store.artifacts import Store
from lokfile.store.rundb import RunDB
from tests.lokrun import db_rows, lok, run_json, write

CONFIG = """
[backends.alpha]
type = "test"
reply = "alpha read: {prompt}"
log_file = "calls.jsonl"
"""

REPORT = """
name = "report"
[[steps]]
name = "read"
shell = "cat in.txt"
sources = ["in.txt"]

[[steps]]
name = "summary"
backend = "alpha"
prompt = "summarise {{ steps.read.output }}"
depends_on = ["read"]
"""

GATE = """
name = "gate"
[[steps]]
name = "check"
shell = "grep good gate.txt"
sources = ["gate.txt"]

[[steps]]
name = "judge"
backend = "alpha"
prompt = "judge {{ steps.check.output }}"
depends_on = ["check"]
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / ".lok").mkdir()
    write(tmp_path, "lok.toml", CONFIG)
    write(tmp_path, ".lok/workflows/report.toml", REPORT)
    write(tmp_path, ".lok/workflows/gate.toml", GATE)
    return tmp_path


def gc(root: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["-C", str(root), "gc", *args])


def gc_json(root: Path, *args: str) -> Any:
    result = gc(root, "--json", *args)
    assert result.exit_code == 0, (result.output, result.stderr, result.exception)
    return json.loads(result.stdout)


def objects(root: Path) -> dict[str, int]:
    store = Store(root / ".lok" / "runs")
    return {d: p.stat().st_size for d, p in store.iter_objects()}


def backend_calls(root: Path) -> int:
    log = root / "calls.jsonl"
    return len(log.read_text().splitlines()) if log.exists() else 0


def runs_of(root: Path, text: str, wf: str = "report") -> None:
    write(root, "in.txt", text)
    doc = run_json(root, wf)
    assert doc["status"] == "succeeded", doc


def test_keep_1_frees_space_and_the_latest_run_reruns_with_zero_steps_executed(
    project: Path,
) -> None:
    for i in range(3):
        runs_of(project, f"version {i}\n" * 50)
    before = objects(project)
    calls = backend_calls(project)
    doc = gc_json(project, "--keep", "1")
    after = objects(project)
    assert doc["removed_bytes"] > 0 and len(doc["removed_runs"]) == 2
    assert doc["removed_bytes"] == sum(before.values()) - sum(after.values())
    assert doc["store_bytes_after"] == sum(after.values())
    assert len(after) < len(before)
    assert [r[0] for r in db_rows(project, "SELECT id FROM runs")] == doc["kept_runs"]
    assert not (project / ".lok/runs" / doc["removed_runs"][0]["id"]).exists()
    assert db_rows(
        project, "SELECT count(*) FROM results WHERE run_id=?", doc["removed_runs"][0]["id"]
    ) == [(0,)]
    rerun = run_json(project, "report")
    assert rerun["counts"]["ran"] == 0 and rerun["counts"]["reused"] == 2
    assert backend_calls(project) == calls
    assert rerun["steps"][1]["output"].startswith("alpha read: summarise version 2")


def test_dry_run_says_what_and_how_many_bytes_and_removes_nothing(project: Path) -> None:
    runs_of(project, "one\n")
    runs_of(project, "two\n")
    before = objects(project)
    result = gc(project, "--keep", "1", "--dry-run")
    assert result.exit_code == 0
    assert "Would remove 1 run(s)" in result.stdout
    planned = gc_json(project, "--keep", "1", "--dry-run")
    assert planned["dry_run"] is True and planned["removed_bytes"] > 0
    assert f"{planned['removed_artifacts']} artifact(s)" in result.stdout
    assert objects(project) == before
    assert len(db_rows(project, "SELECT id FROM runs")) == 2


def test_gc_without_keep_keeps_every_run_and_removes_only_unreachable_artifacts(
    project: Path,
) -> None:
    runs_of(project, "one\n")
    runs_of(project, "two\n")
    store = Store(project / ".lok" / "runs")
    stray = store.put_text("nobody refers to me")
    old = time.time() - 7200
    os.utime(store.path(stray), (old, old))
    young = store.put_text("written a moment ago by a writer that has not recorded it yet")
    doc = gc_json(project)
    assert doc["removed_runs"] == [] and doc["removed_artifacts"] == 1
    assert not store.has(stray)
    assert store.has(young)


def test_the_latest_successful_run_is_kept_when_the_latest_run_failed(project: Path) -> None:
    write(project, "gate.txt", "good\n")
    assert run_json(project, "gate")["status"] == "succeeded"
    write(project, "gate.txt", "bad\n")
    assert run_json(project, "gate")["status"] == "failed"
    calls = backend_calls(project)
    doc = gc_json(project, "--keep", "1")
    assert len(doc["kept_runs"]) == 2 and doc["removed_runs"] == []
    write(project, "gate.txt", "good\n")
    rerun = run_json(project, "gate")
    assert rerun["counts"]["ran"] == 0
    assert backend_calls(project) == calls


def test_keep_counts_runs_per_workflow(project: Path) -> None:
    runs_of(project, "a\n")
    runs_of(project, "b\n")
    write(project, "gate.txt", "good\n")
    run_json(project, "gate")
    doc = gc_json(project, "--keep", "1")
    assert [r["workflow"] for r in doc["removed_runs"]] == ["report"]
    kept = {r[0] for r in db_rows(project, "SELECT workflow FROM runs")}
    assert kept == {"report", "gate"}


def test_max_size_drops_the_oldest_runs_until_the_store_fits(project: Path) -> None:
    for i in range(4):
        runs_of(project, f"{i}" * 3000)
    total = sum(objects(project).values())
    limit = total // 2
    doc = gc_json(project, "--max-size", str(limit))
    assert doc["over_max_size"] is False
    assert sum(objects(project).values()) <= limit
    assert 1 <= len(doc["removed_runs"]) <= 3
    rerun = run_json(project, "report")
    assert rerun["counts"]["ran"] == 0


def test_max_size_never_removes_the_latest_run(project: Path) -> None:
    runs_of(project, "x" * 5000)
    result = gc(project, "--max-size", "1K")
    assert result.exit_code == 0
    assert "Still over --max-size 1.0 KiB" in result.stdout
    assert run_json(project, "report")["counts"]["ran"] == 0


def test_a_size_that_is_not_a_size_is_bad_input(project: Path) -> None:
    proc = lok(project, "gc", "--max-size", "lots")
    assert proc.returncode == 2
    assert "Error: --max-size: 'lots' is not a size" in proc.stderr
    assert "Hint: write it like 500M" in proc.stderr


def test_ask_cache_answers_within_the_ttl_stay_and_expired_ones_go(project: Path) -> None:
    write(project, "lok.toml", CONFIG + "\n[cache]\nttl_hours = 1\n")
    runs_of(project, "something\n")
    store = Store(project / ".lok" / "runs")
    fresh, stale = store.put_text("fresh answer"), store.put_text("stale answer")
    db = RunDB.open(project / ".lok" / "lok.db")
    try:
        db.cache_put("k-fresh", fresh)
        db.cache_put("k-stale", stale)
        db.conn.execute("UPDATE ask_cache SET created=? WHERE key='k-stale'", (time.time() - 7200,))
    finally:
        db.close()
    doc = gc_json(project)
    assert doc["removed_ask_cache"] == 1
    assert store.has(fresh) and not store.has(stale)
    assert db_rows(project, "SELECT key FROM ask_cache") == [("k-fresh",)]


def test_edit_snapshots_of_kept_runs_stay(project: Path) -> None:
    runs_of(project, "one\n")
    runs_of(project, "two\n")
    store = Store(project / ".lok" / "runs")
    original = store.put_text("the file before the edit\n")
    manifest = store.put_text(
        json.dumps({"version": 1, "files": {"code.py": original}, "after": {}, "modes": {}})
    )
    old = time.time() - 7200
    for digest in (original, manifest):
        os.utime(store.path(digest), (old, old))
    latest = os.readlink(project / ".lok/runs/latest")
    store.link_output(latest, "summary.snapshot.json", manifest)
    doc = gc_json(project, "--keep", "1")
    assert len(doc["removed_runs"]) == 1
    assert store.has(manifest) and store.has(original)


def test_gc_refuses_while_a_run_is_in_progress(project: Path) -> None:
    runs_of(project, "one\n")
    db = RunDB.open(project / ".lok" / "lok.db")
    try:
        db.start_run("20991231-000000-abcdef", "report", None, {}, None)  # this pid: alive
    finally:
        db.close()
    proc = lok(project, "gc", "--keep", "1")
    assert proc.returncode == 1
    assert "Error: run 20991231-000000-abcdef of 'report' is in progress" in proc.stderr
    assert "Hint: let it finish" in proc.stderr


def test_gc_in_a_project_with_no_history_has_nothing_to_do(tmp_path: Path) -> None:
    (tmp_path / ".lok").mkdir()
    result = gc(tmp_path)
    assert result.exit_code == 0
    assert result.stdout == "Nothing to collect: no runs recorded yet.\n"


def test_declared_outputs_of_the_kept_run_survive_and_are_restored_on_rerun(
    project: Path,
) -> None:
    write(
        project,
        ".lok/workflows/build.toml",
        """
        name = "build"
        [[steps]]
        name = "render"
        shell = "tr a-z A-Z < src.txt > out.txt"
        sources = ["src.txt"]
        outputs = ["out.txt"]
        """,
    )
    for text in ("first build\n", "second build\n"):
        write(project, "src.txt", text)
        assert run_json(project, "build")["status"] == "succeeded"
    store = Store(project / ".lok" / "runs")
    kept = store.put_text("SECOND BUILD\n")  # already stored: the declared output's digest
    dropped = store.put_text("FIRST BUILD\n")
    doc = gc_json(project, "--keep", "1")
    assert len(doc["removed_runs"]) == 1
    assert store.has(kept) and not store.has(dropped)
    (project / "out.txt").unlink()
    rerun = run_json(project, "build")
    assert rerun["counts"]["ran"] == 0
    assert (project / "out.txt").read_text() == "SECOND BUILD\n"


def test_the_run_that_runs_latest_points_at_is_never_removed(project: Path) -> None:
    runs_of(project, "one\n")
    first = os.readlink(project / ".lok/runs/latest")
    runs_of(project, "two\n")
    # two runs of one workflow that overlapped: the earlier-started one finished last
    Store(project / ".lok" / "runs").set_latest(first)
    doc = gc_json(project, "--keep", "1")
    assert first in doc["kept_runs"] and doc["removed_runs"] == []
    assert (project / ".lok/runs/latest/read.txt").read_text() == "one"
