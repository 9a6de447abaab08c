"""Nothing a user had is lost: SIGKILL, Ctrl-C and two runs at once."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lokfile.hashing import digest_file
from tests.lokrun import db_rows, lok, run_json, write

STEPS = 24


def _workflow(root: Path) -> None:
    """Layers of 4 steps; each sleeps a little, reads its source and upstream, writes an output."""
    lines = ['name = "crashy"', ""]
    for i in range(STEPS):
        deps = [f"s{j}" for j in range(i - i % 4 - 4, i - i % 4)] if i >= 4 else []
        (root / "src").mkdir(exist_ok=True)
        (root / "src" / f"s{i}.txt").write_text(f"source {i}\n")
        ups = " ".join(f"out/s{d[1:]}.txt" for d in deps)
        lines += [
            "[[steps]]",
            f'name = "s{i}"',
            f'shell = "sleep 0.05; mkdir -p out; cat {ups} src/s{i}.txt | cksum | tee out/s{i}.txt"',
            f"depends_on = {json.dumps(deps)}",
            f'sources = ["src/s{i}.txt"]',
            f'outputs = ["out/s{i}.txt"]',
            "",
        ]
    write(root, ".lok/workflows/crashy.toml", "\n".join(lines))


def _store_is_sound(root: Path) -> None:
    objects = root / ".lok" / "runs" / "objects"
    db = root / ".lok" / "lok.db"
    if not db.exists() or not db_rows(root, "SELECT name FROM sqlite_master WHERE name='keys'"):
        return  # killed before the history was created: nothing recorded yet
    for path in objects.rglob("*"):
        if path.is_file():
            if path.name.startswith(".tmp-"):
                continue
            algo = path.parent.parent.name
            digest = f"{algo}:{path.parent.name}{path.name}"
            assert digest_file(str(path)) == digest, f"corrupt artifact {path}"
    for (digest,) in db_rows(root, "SELECT digest FROM results WHERE digest IS NOT NULL"):
        algo, hexpart = digest.split(":")
        assert (objects / algo / hexpart[:2] / hexpart[2:]).is_file(), f"missing {digest}"
    for (digest,) in db_rows(root, "SELECT digest FROM keys"):
        algo, hexpart = digest.split(":")
        assert (objects / algo / hexpart[:2] / hexpart[2:]).is_file(), f"missing {digest}"


def _lok_processes(marker: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if marker in cmd and "lokfile" in cmd:
            pids.append(int(entry))
    return pids


@pytest.mark.slow
def test_sigkill_at_many_moments_never_loses_a_finished_step_or_corrupts_the_store(
    tmp_path: Path,
) -> None:
    (tmp_path / ".lok").mkdir()
    _workflow(tmp_path)
    rng = random.Random(7)
    finished_before: set[str] = set()
    for _round in range(20):
        proc = subprocess.Popen(
            [sys.executable, "-m", "lokfile", "run", "-j", "4", "crashy"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.05, 0.9))
        proc.kill()
        proc.wait()
        time.sleep(0.05)
        # the workers follow their coordinator
        deadline = time.time() + 5
        while _lok_processes(str(tmp_path)) and time.time() < deadline:
            time.sleep(0.05)
        assert _lok_processes(str(tmp_path)) == []
        migrated = (tmp_path / ".lok" / "lok.db").exists() and db_rows(
            tmp_path, "SELECT name FROM sqlite_master WHERE name='keys'"
        )
        if migrated:
            keys = {k for (k,) in db_rows(tmp_path, "SELECT key FROM keys")}
            assert finished_before <= keys, "a finished step was lost"
            finished_before = keys
        # every few rounds, change a source so there is always work to kill
        if _round % 5 == 4:
            (tmp_path / "src" / f"s{rng.randrange(STEPS)}.txt").write_text(f"changed {_round}\n")
        _store_is_sound(tmp_path)
    doc = run_json(tmp_path, "-j", "4", "crashy")
    assert doc["status"] == "succeeded", doc
    _store_is_sound(tmp_path)
    statuses = db_rows(tmp_path, "SELECT status FROM runs")
    assert ("running",) not in statuses, "an abandoned run is still marked running"
    # a rerun now does nothing
    again = run_json(tmp_path, "-j", "4", "crashy")
    assert again["counts"]["ran"] == 0


def test_ctrl_c_records_the_run_as_interrupted_exits_130_and_resume_finishes(
    tmp_path: Path,
) -> None:
    (tmp_path / ".lok").mkdir()
    write(
        tmp_path,
        ".lok/workflows/long.toml",
        """
        name = "long"
        [[steps]]
        name = "quick"
        shell = "echo quick"
        cache = true
        [[steps]]
        name = "slow"
        shell = "sleep 30 && echo slow-{{ arg.1 }}"
        cache = true
        depends_on = ["quick"]
    """,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "lokfile", "run", "long", "x"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    seen = ""
    deadline = time.time() + 60
    while "[step] slow" not in seen and time.time() < deadline:  # wait until the slow step runs
        seen += proc.stderr.readline()
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=15)
    assert proc.returncode == 130, err
    rows = db_rows(tmp_path, "SELECT id, status FROM runs")
    assert [r[1] for r in rows] == ["interrupted"]
    interrupted_id = rows[0][0]
    assert db_rows(tmp_path, "SELECT status FROM results WHERE step='quick'") == [("ran",)]
    # no `sleep 30` survives
    time.sleep(0.3)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            assert cmd != b"sleep\x0030\x00"
    # resume with the same arguments: the finished step is reused
    write(
        tmp_path,
        ".lok/workflows/long.toml",
        (tmp_path / ".lok/workflows/long.toml").read_text().replace("sleep 30", "sleep 0"),
    )
    resumed = lok(tmp_path, "run", "--json", "--resume")
    doc = json.loads(resumed.stdout)
    assert doc["status"] == "succeeded"
    assert {s["name"]: s["status"] for s in doc["steps"]} == {"quick": "reused", "slow": "ran"}
    assert doc["steps"][1]["output"] == "slow-x"
    assert db_rows(tmp_path, "SELECT resumed_from FROM runs WHERE id=?", doc["run_id"]) == [
        (interrupted_id,)
    ]


def test_two_runs_at_once_both_finish_with_a_consistent_store(tmp_path: Path) -> None:
    (tmp_path / ".lok").mkdir()
    _workflow(tmp_path)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "lokfile", "run", "--json", "-j", "3", "crashy"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    docs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        docs.append(json.loads(out))
    assert all(d["status"] == "succeeded" for d in docs)
    assert docs[0]["steps"][-1]["output"] == docs[1]["steps"][-1]["output"]
    _store_is_sound(tmp_path)
    assert sorted(s for (s,) in db_rows(tmp_path, "SELECT status FROM runs")) == ["succeeded"] * 2
    assert run_json(tmp_path, "crashy")["counts"]["ran"] == 0


def test_a_second_ctrl_c_kills_at_once_and_leaves_no_process(tmp_path: Path) -> None:
    (tmp_path / ".lok").mkdir()
    write(
        tmp_path,
        ".lok/workflows/stubborn.toml",
        """
        name = "stubborn"
        [[steps]]
        name = "ignore-term"
        shell = "trap '' TERM; sleep 3004"
    """,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "lokfile", "run", "stubborn"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    seen = ""
    deadline = time.time() + 60
    while "[step] ignore-term" not in seen and time.time() < deadline:
        seen += proc.stderr.readline()
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    started = time.time()
    proc.communicate(timeout=15)
    assert proc.returncode == 130
    assert time.time() - started < 5
    time.sleep(0.5)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            assert b"sleep\x003004" not in cmd, "the step's process survived"



def test_a_new_history_another_process_is_writing_is_waited_for(tmp_path: Path) -> None:
    # two runs started together in a fresh project: SQLite refuses the switch to WAL at
    # once ("database is locked", no busy wait) while the other holds a write lock on
    # the new file; a real second connection holds one here for 0.3 s
    from lokfile.store.rundb import RunDB

    path = tmp_path / "lok.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE other_writer (a)")
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO other_writer VALUES (1)")
    release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    release.start()
    try:
        db = RunDB.open(path)  # returns once the other writer has committed
    finally:
        release.join()
        other.close()
    assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.conn.execute("SELECT count(*) FROM other_writer").fetchone()[0] == 1
    db.close()
