"""A replayed no-op writes O(1) filesystem entries, and its run still reads like any other.

Its run folder is one link to the folder of the run that wrote the snapshot
(lokfile.store.artifacts, `alias_run`); `lok runs show`, `runs diff`, the HTML
report and `lok gc` work on it as on a folder of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lokrun import lok, run_json, statuses, write
from tests.test_snapshot import CONFIG, WF, snapshots


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / ".lok").mkdir()
    write(tmp_path, ".lok/workflows/snap.toml", WF)
    write(tmp_path, "lok.toml", CONFIG)
    write(tmp_path, "src/in.txt", "hello\n")
    return tmp_path


def entries(root: Path) -> set[str]:
    """Every file, folder and link under .lok/ except the database's own files."""
    found = set()
    for dirpath, dirs, files in os.walk(root / ".lok"):
        for name in dirs + files:
            rel = os.path.relpath(os.path.join(dirpath, name), root)
            if not name.startswith("lok.db"):
                found.add(rel)
    return found


def outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.name != "run.json"}


def test_a_replayed_no_op_adds_one_entry_and_its_folder_lists_every_output(
    project: Path,
) -> None:
    first = run_json(project, "snap")
    assert snapshots(project)
    before = entries(project)
    fast = run_json(project, "snap")  # replayed
    assert set(statuses(fast).values()) == {"reused"}
    added = entries(project) - before
    assert added == {f".lok/runs/{fast['run_id']}"}, added  # runs/latest was repointed
    runs = project / ".lok" / "runs"
    assert os.readlink(runs / fast["run_id"]) == first["run_id"]
    assert os.readlink(runs / "latest") == fast["run_id"]
    shown = outputs(runs / "latest")
    assert shown == outputs(runs / first["run_id"])
    assert shown["loud.txt"] == b"HELLO"
    # ten more no-ops: ten more links, nothing else
    for _ in range(10):
        run_json(project, "snap")
    assert len(entries(project) - before) == 11


def test_runs_show_diff_and_the_html_report_read_a_replayed_run(project: Path) -> None:
    first = run_json(project, "snap")
    fast = run_json(project, "snap")
    for snap in snapshots(project):
        snap.unlink()
    normal = run_json(project, "snap")  # the normal path: a folder of its own
    assert not (project / ".lok/runs" / normal["run_id"]).is_symlink()

    def show(run_id: str) -> dict[str, object]:
        proc = lok(project, "runs", "show", run_id, "--json", check=True)
        doc: dict[str, object] = json.loads(proc.stdout)
        return doc

    fast_doc, normal_doc = show(fast["run_id"]), show(normal["run_id"])
    assert fast_doc["id"] == fast["run_id"]

    def step_view(doc: dict[str, object]) -> list[tuple[object, ...]]:
        steps = doc["steps"]
        assert isinstance(steps, list)
        return [(s["name"], s["status"], s["output"]) for s in steps]

    assert step_view(fast_doc) == step_view(normal_doc)
    assert ("loud", "reused", "HELLO") in step_view(fast_doc)
    diff = lok(project, "runs", "diff", first["run_id"], fast["run_id"], "--json", check=True)
    steps = json.loads(diff.stdout)["steps"]
    assert steps and {s["state"] for s in steps} == {"same"}, steps
    assert json.loads(diff.stdout)["differ"] is False
    html = project / "report.html"
    lok(project, "runs", "show", fast["run_id"], "--html", str(html), check=True)
    assert "HELLO" in html.read_text()


def test_gc_keeps_the_folder_a_kept_replay_links_to_and_drops_dropped_links(
    project: Path,
) -> None:
    first = run_json(project, "snap")
    older = run_json(project, "snap")  # replays, linked to the first run's folder
    latest = run_json(project, "snap")
    runs = project / ".lok" / "runs"
    lok(project, "gc", "--keep", "1", check=True)
    assert (runs / first["run_id"]).is_dir()  # the kept replay's outputs live there
    assert not (runs / older["run_id"]).is_symlink()  # a dropped replay's link is gone
    assert outputs(runs / latest["run_id"])["loud.txt"] == b"HELLO"
    # and the next no-op still replays, into a folder that lists every output
    again = run_json(project, "snap")
    assert set(statuses(again).values()) == {"reused"}
    assert outputs(runs / "latest")["loud.txt"] == b"HELLO"


def test_without_the_earlier_folder_a_replay_links_every_output_itself(project: Path) -> None:
    import shutil

    first = run_json(project, "snap")
    runs = project / ".lok" / "runs"
    shutil.rmtree(runs / first["run_id"])
    fast = run_json(project, "snap")
    assert set(statuses(fast).values()) == {"reused"}
    folder = runs / fast["run_id"]
    assert folder.is_dir() and not folder.is_symlink()
    assert outputs(folder)["loud.txt"] == b"HELLO"
    assert json.loads((folder / "run.json").read_text())["id"] == fast["run_id"]


def test_a_plain_replayed_run_does_not_import_click(project: Path) -> None:
    lok(project, "run", "-j", "1", "snap", check=True)
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "lokfile", "run", "-j", "1", "snap"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert "lokfile.engine.snapshot" in imported  # it was the fast path
    assert {"click", "lokfile.cli", "lokfile.worker.snapshots"} & imported == set()
    assert "[OK] loud (0.0s, reused)" in proc.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "snap", "--force"],  # an option after WORKFLOW: click reads it
        ["run", "-j", "0", "snap"],  # out of range: click's error
        ["-C", ".", "run", "snap"],
    ],
)
def test_anything_but_a_plain_run_goes_through_click(project: Path, argv: list[str]) -> None:
    lok(project, "run", "snap", check=True)
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "lokfile", *argv],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert "click" in imported
    if argv[1:3] == ["-j", "0"]:
        assert proc.returncode == 2
        assert "Invalid value for '-j'" in proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr


def test_the_fast_paths_entry_leaves_version_light(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "lokfile", "--version"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout.startswith("lok "), proc.stderr
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert "lokfile.__main__" in imported or "runpy" in imported
    assert {"typing", "click", "lokfile.engine.snapshot", "pathlib"} & imported == set()
