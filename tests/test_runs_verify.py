"""`lok runs verify`: re-hash the store; corrupt and missing artifacts are reported."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from lokfile.cli import cli
from tests.lokrun import lok, run_json, write

WF = """
name = "notes"
[[steps]]
name = "read"
shell = "cat notes.txt"
sources = ["notes.txt"]

[[steps]]
name = "count"
shell = "wc -l < notes.txt"
sources = ["notes.txt"]
depends_on = ["read"]
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / ".lok").mkdir()
    write(tmp_path, ".lok/workflows/notes.toml", WF)
    write(tmp_path, "notes.txt", "first\nsecond\n")
    assert run_json(tmp_path, "notes")["status"] == "succeeded"
    return tmp_path


def verify(root: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["-C", str(root), "runs", "verify", *args])


def artifact_of(root: Path, step: str) -> Path:
    """The artifact file behind a step's output in the latest run folder."""
    return (root / ".lok/runs/latest" / f"{step}.txt").resolve()


def corrupt(path: Path, data: bytes) -> None:
    os.chmod(path, 0o644)  # artifacts are stored read-only
    path.write_bytes(data)


def test_a_clean_store_verifies(project: Path) -> None:
    result = verify(project)
    assert result.exit_code == 0, result.output
    assert "Every artifact matches its digest." in result.stdout
    doc = json.loads(verify(project, "--json").stdout)
    assert doc["ok"] is True and doc["checked"] >= 2
    assert doc["corrupt"] == [] and doc["missing"] == []


def test_verify_finds_a_corrupted_artifact(project: Path) -> None:
    target = artifact_of(project, "read")
    digest = "xxh3-128:" + target.parent.name + target.name
    corrupt(target, b"first\nSECOND, tampered\n")
    result = verify(project)
    assert result.exit_code == 1
    assert f"corrupt  {digest}" in result.stdout
    assert "1 corrupt, 0 missing." in result.stdout
    doc = json.loads(verify(project, "--json").stdout)
    assert doc["ok"] is False and doc["corrupt"] == [digest]


def test_verify_reports_a_missing_artifact_and_what_needs_it(project: Path) -> None:
    target = artifact_of(project, "count")
    digest = "xxh3-128:" + target.parent.name + target.name
    target.unlink()
    proc = lok(project, "runs", "verify", "--json")
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["missing"][0]["digest"] == digest
    assert "step count" in doc["missing"][0]["where"]


def test_repair_drops_the_bad_artifact_so_the_next_run_rebuilds_it(project: Path) -> None:
    target = artifact_of(project, "read")
    corrupt(target, b"garbage\n")
    result = verify(project, "--repair")
    assert result.exit_code == 1  # it was not ok when checked
    assert "repaired: deleted corrupt artifact" in result.stdout
    assert "forgot cached result" in result.stdout
    rerun = run_json(project, "notes")
    by_name = {s["name"]: s for s in rerun["steps"]}
    assert by_name["read"]["status"] == "ran"
    assert by_name["read"]["output"] == "first\nsecond"
    assert verify(project).exit_code == 0
