"""The no-op fast path records exactly what the normal path would, and steps aside on any change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lokrun import db_rows, lok, run_json, statuses, write

WF = """
name = "snap"
description = "fast path"

[[steps]]
name = "read"
shell = "cat src/in.txt"
sources = ["src/in.txt"]

[[steps]]
name = "loud"
shell = "mkdir -p out && echo {{ steps.read.output }} | tr a-z A-Z | tee out/loud.txt"
depends_on = ["read"]
outputs = ["out/loud.txt"]

[[steps]]
name = "ask"
depends_on = ["loud"]
backends = ["a", "b"]
consensus = "first"
prompt = "say {{ steps.loud.output }}"

[[steps]]
name = "items"
depends_on = ["read"]
for_each = '["x", "y"]'
shell = "echo {{ item }}-{{ steps.read.output }}"
cache = true
"""

CONFIG = """
[backends.a]
type = "test"
reply = "a: {prompt}"
log_file = "calls.jsonl"

[backends.b]
type = "test"
reply = "b: {prompt}"
log_file = "calls.jsonl"
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / ".lok").mkdir()
    write(tmp_path, ".lok/workflows/snap.toml", WF)
    write(tmp_path, "lok.toml", CONFIG)
    write(tmp_path, "src/in.txt", "hello\n")
    return tmp_path


def snapshots(root: Path) -> list[Path]:
    return sorted((root / ".lok" / "state").glob("run-*.json"))


def comparable(doc: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in doc.items() if k not in ("run_id", "wall_s")}


def rows(root: Path, run_id: str) -> list[tuple[object, ...]]:
    return sorted(
        db_rows(
            root,
            "SELECT step, unit, key, components, status, reason, attempts, duration, backend, model,"
            " digest, error FROM results WHERE run_id=?",
            run_id,
        )
    )


def folder(root: Path, run_id: str) -> dict[str, str]:
    base = root / ".lok" / "runs" / run_id
    return {p.name: os.readlink(p) for p in base.iterdir() if p.is_symlink()}


def test_a_replayed_no_op_is_recorded_exactly_like_a_normal_one(project: Path) -> None:
    first = run_json(project, "snap")
    assert first["status"] == "succeeded"
    assert len(snapshots(project)) == 1
    fast = run_json(project, "snap")  # replayed from the snapshot
    for snap in snapshots(project):
        snap.unlink()
    normal = run_json(project, "snap")  # the normal path, which writes the snapshot again
    assert comparable(fast) == comparable(normal)
    assert rows(project, fast["run_id"]) == rows(project, normal["run_id"])
    assert folder(project, fast["run_id"]) == folder(project, normal["run_id"])
    assert statuses(fast) == dict.fromkeys(["read", "loud", "ask", "items"], "reused")
    fast_json = json.loads((project / ".lok/runs" / fast["run_id"] / "run.json").read_text())
    assert fast_json["status"] == "succeeded"
    assert len((project / "calls.jsonl").read_text().splitlines()) == 2


def test_a_replayed_no_op_imports_neither_the_engine_nor_the_model_nor_jinja2(
    project: Path,
) -> None:
    lok(project, "run", "snap", check=True)
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "lokfile", "run", "snap"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert "lokfile.engine.snapshot" in imported  # it was the fast path
    heavy = {"lokfile.engine.coordinator", "lokfile.model", "jinja2", "sqlite_utils", "httpx"}
    assert imported & heavy == set()


def test_text_output_and_progress_match_the_normal_path(project: Path) -> None:
    lok(project, "run", "snap", check=True)
    fast = lok(project, "run", "snap", check=True)
    for snap in snapshots(project):
        snap.unlink()
    normal = lok(project, "run", "snap", check=True)
    assert fast.stdout == normal.stdout
    strip = [line for line in fast.stderr.splitlines() if "[run " not in line]
    assert strip[:-1] == [line for line in normal.stderr.splitlines() if "[run " not in line][:-1]


@pytest.mark.parametrize(
    "change",
    [
        "source",
        "workflow",
        "config",
        "shadowing workflow",
        "output deleted",
        "artifact lost",
        "key collected",
        "user config",
        "run forgotten",
        "history replaced",
    ],
)
def test_any_change_falls_back_to_the_normal_path(project: Path, change: str) -> None:
    first = run_json(project, "snap")
    assert snapshots(project)
    recorded = rows(project, first["run_id"])
    if change == "source":
        write(project, "src/in.txt", "changed\n")
    elif change == "workflow":
        wf = project / ".lok/workflows/snap.toml"
        wf.write_text(wf.read_text().replace('description = "fast path"', 'description = "edited"'))
    elif change == "config":
        write(project, "lok.toml", CONFIG.replace("a: {prompt}", "A: {prompt}"))
    elif change == "shadowing workflow":  # a file named `snap` now wins the name's resolution
        (project / "snap").write_text(WF.replace('name = "snap"', 'name = "shadow"'))
    elif change == "output deleted":
        (project / "out" / "loud.txt").unlink()
    elif change == "artifact lost":
        objects = project / ".lok" / "runs" / "objects"
        victim = next(p for p in objects.rglob("*") if p.is_file() and p.read_bytes() == b"HELLO")
        victim.chmod(0o644)
        victim.unlink()
    elif change == "key collected":
        import sqlite3

        conn = sqlite3.connect(project / ".lok" / "lok.db")
        conn.execute("DELETE FROM keys WHERE step='ask'")
        conn.commit()
        conn.close()
    elif change == "user config":
        write(project, "home/.config/lok/lok.toml", '[cache]\nsalt = "new"\n')
    elif change == "run forgotten":  # the rows a replay copies are gone (as after `lok gc`)
        import sqlite3

        conn = sqlite3.connect(project / ".lok" / "lok.db")
        conn.execute("DELETE FROM results WHERE run_id=?", (first["run_id"],))
        conn.commit()
        conn.close()
    elif change == "history replaced":  # a new lok.db: the snapshot's keys are not in it
        (project / ".lok" / "lok.db").rename(project / "old.db")
    env = (
        {"XDG_CONFIG_HOME": str(project / "home" / ".config")} if change == "user config" else None
    )
    doc = run_json(project, "snap", env=env)
    assert doc["status"] == "succeeded", doc
    expected_ran = {
        "source": {"read", "loud", "ask", "items"},
        "workflow": set(),
        "config": {"ask"},
        "shadowing workflow": set(),  # same steps, same keys: content-addressed across workflows
        "output deleted": set(),
        "artifact lost": {"loud"},
        "key collected": {"ask"},
        "user config": {"read", "loud", "ask", "items"},  # the salt is in every key
        "run forgotten": set(),
        "history replaced": {"read", "loud", "ask", "items"},
    }[change]
    ran = {name for name, status in statuses(doc).items() if status == "ran"}
    assert ran == expected_ran, (change, statuses(doc))
    if change == "output deleted":
        assert (project / "out" / "loud.txt").read_text() == "HELLO\n"  # restored from the store
    if change == "shadowing workflow":
        assert doc["workflow"] == "shadow"
    assert len(rows(project, doc["run_id"])) == len(recorded)  # every unit has its row


def test_a_run_that_reads_the_environment_is_never_replayed(project: Path) -> None:
    wf = project / ".lok/workflows/snap.toml"
    wf.write_text(
        wf.read_text().replace("cat src/in.txt", "cat src/in.txt; echo {{ env.GREETING }}")
    )
    run_json(project, "snap", env={"GREETING": "hi"})
    assert snapshots(project) == []
    doc = run_json(project, "snap", env={"GREETING": "bye"})
    assert statuses(doc)["read"] == "ran"


def test_a_volatile_step_disables_the_fast_path(project: Path) -> None:
    write(
        project, ".lok/workflows/vol.toml", 'name = "vol"\n[[steps]]\nname = "d"\nshell = "date"\n'
    )
    run_json(project, "vol")
    assert not [p for p in snapshots(project) if "vol" in p.read_text()]
    assert db_rows(project, "SELECT count(*) FROM runs")[0][0] == 1
