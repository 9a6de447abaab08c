"""A full disk is reported plainly, loses nothing, and the run after space is freed completes.

The project lives on a small tmpfs this test mounts (root, or a private mount
namespace: `unshare -rm pytest tests/test_disk_full.py`), filled up for real;
where no tmpfs can be mounted the tests skip, unless LOK_REQUIRE_TMPFS=1.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lokrun import db_rows, lok, run_json, write

SIZE = 4 * 1024 * 1024
BIG = 1024 * 1024

WF = f"""
name = "grow"
[[steps]]
name = "small"
shell = "echo small"
cache = true
[[steps]]
name = "big"
shell = "head -c {BIG} /dev/zero | tr '\\\\0' x"
cache = true
depends_on = ["small"]
"""


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A fresh SIZE-byte tmpfs, unmounted afterwards."""
    where = tmp_path / "disk"
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        why = f"cannot mount a tmpfs (needs root or a private mount namespace): {done.stderr}"
        if os.environ.get("LOK_REQUIRE_TMPFS") == "1":
            pytest.fail(why)
        pytest.skip(why)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(disk: Path, leave: int) -> Path:
    """Write a filler file until only about `leave` bytes are free; the filler."""
    filler = disk / "filler"
    with open(filler, "wb") as fh:
        chunk = b"\0" * 65536
        try:
            while True:
                st = os.statvfs(disk)
                free = st.f_bavail * st.f_frsize
                if free <= leave:
                    break
                fh.write(chunk[: max(4096, min(len(chunk), free - leave))])
                fh.flush()
        except OSError:
            pass
    return filler


def _free(disk: Path) -> int:
    st = os.statvfs(disk)
    return st.f_bavail * st.f_frsize


def _project(disk: Path) -> Path:
    root = disk / "proj"
    (root / ".lok").mkdir(parents=True)
    write(root, ".lok/workflows/grow.toml", WF)
    write(
        root, ".lok/workflows/tiny.toml", 'name = "tiny"\n[[steps]]\nname = "a"\nshell = "echo a"\n'
    )
    return root


def _plain(proc: subprocess.CompletedProcess[str]) -> str:
    """The single Error line of a failed command (and check nothing worse came with it)."""
    text = proc.stdout + proc.stderr
    for bad in ("Traceback", "internal error", "please report", "corrupt"):
        assert bad not in text, text
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1, text
    return errors[0]


def _intact(root: Path) -> None:
    conn = sqlite3.connect(root / ".lok" / "lok.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()
    check = lok(root, "runs", "verify")
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_full_disk_while_storing_an_artifact_is_reported_plainly_and_loses_nothing(
    disk: Path,
) -> None:
    root = _project(disk)
    assert run_json(root, "tiny")["status"] == "succeeded"
    filler = _fill(disk, 256 * 1024)
    proc = lok(root, "run", "grow")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = _plain(proc)
    assert "disk is full" in line and "big" in line and str(root / ".lok") in line, line
    assert any(ln.startswith("Hint:") and "free" in ln for ln in proc.stderr.splitlines())
    big_keys = db_rows(root, "SELECT key FROM keys WHERE step='big'")
    assert big_keys == [], "the step whose output could not be stored is not done"
    filler.unlink()
    _intact(root)
    doc = run_json(root, "grow")
    assert doc["status"] == "succeeded", doc
    assert {s["name"]: s["status"] for s in doc["steps"]}["big"] == "ran"
    assert len(doc["steps"][1]["output"]) == BIG


def test_with_no_byte_free_commands_say_the_disk_is_full_and_reading_still_works(
    disk: Path,
) -> None:
    root = _project(disk)
    assert run_json(root, "tiny")["status"] == "succeeded"
    filler = _fill(disk, 0)
    assert _free(disk) == 0
    listed = lok(root, "runs", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["workflow"] for r in json.loads(listed.stdout)["runs"]] == ["tiny"]
    assert lok(root, "runs", "show").returncode == 0
    for args in (("run", "grow"), ("run", "--force", "tiny")):
        proc = lok(root, *args)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        line = _plain(proc)
        assert "disk is full" in line and str(root / ".lok") in line, line
    filler.unlink()
    _intact(root)
    assert run_json(root, "grow")["status"] == "succeeded"
    runs = json.loads(lok(root, "runs", "list", "--json").stdout)["runs"]
    assert [r["status"] for r in runs][-1] == "succeeded"  # the first run is still there
