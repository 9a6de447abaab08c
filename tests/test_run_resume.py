"""`lok run --resume [RUN]`: an earlier run's workflow and arguments, named as `lok runs
show` names runs (latest, latest~N, an id, a prefix, REF~N); with no RUN, the last run
that did not succeed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lokfile.store.refs import last_unfinished, resolve
from lokfile.store.rundb import RunDB
from tests.lokrun import db_rows, lok, write

WF = """
name = "echo"
[[steps]]
name = "say"
shell = "test {{ arg.1 }} != bad && echo said-{{ arg.1 }}"
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / ".lok").mkdir()
    write(tmp_path, "wf.toml", WF)
    return tmp_path


def run_ids(root: Path) -> list[str]:
    """Every run's id, oldest first."""
    return [r[0] for r in db_rows(root, "SELECT id FROM runs ORDER BY started, id")]


def resume(root: Path, *ref: str) -> dict[str, object]:
    proc = lok(root, "run", "--json", "--resume", *ref)
    assert proc.stdout, proc.stderr
    doc: dict[str, object] = json.loads(proc.stdout)
    return doc


def resumed_from(root: Path, run_id: object) -> object:
    return db_rows(root, "SELECT resumed_from FROM runs WHERE id=?", run_id)[0][0]


def outputs(doc: dict[str, object]) -> list[object]:
    steps = doc["steps"]
    assert isinstance(steps, list)
    return [s["output"] for s in steps]


def test_resume_takes_the_references_runs_show_takes(project: Path) -> None:
    for word in ("one", "two", "three"):
        assert lok(project, "run", "wf.toml", word).returncode == 0
    one, two, three = run_ids(project)
    shown = json.loads(lok(project, "runs", "show", "--json", "latest~1").stdout)
    assert shown["id"] == two

    doc = resume(project, "latest~1")
    assert outputs(doc) == ["said-two"]
    assert resumed_from(project, doc["run_id"]) == two

    doc = resume(project, f"{three[:-2]}~2")  # a prefix of the third run, two back
    assert outputs(doc) == ["said-one"]
    assert resumed_from(project, doc["run_id"]) == one

    latest = run_ids(project)[-1]
    doc = resume(project, "latest")  # the newest run, whatever its outcome
    assert resumed_from(project, doc["run_id"]) == latest


def test_a_bare_resume_continues_the_last_run_that_did_not_succeed(project: Path) -> None:
    assert lok(project, "run", "wf.toml", "bad").returncode == 1
    failed = run_ids(project)[-1]
    assert lok(project, "run", "wf.toml", "good").returncode == 0
    proc = lok(project, "run", "--json", "--resume")
    assert proc.returncode == 1  # the failed run's argument fails again
    doc = json.loads(proc.stdout)
    assert resumed_from(project, doc["run_id"]) == failed


def test_resume_of_a_run_that_does_not_exist_is_bad_input(project: Path) -> None:
    assert lok(project, "run", "wf.toml", "one").returncode == 0
    for ref, message in (
        ("latest~5", "has only 0 run(s) before"),
        ("nope", "no run 'nope'"),
        ("a~b", "is not a run reference"),
    ):
        proc = lok(project, "run", "--resume", ref)
        assert proc.returncode == 2, (ref, proc.stderr)
        assert "Error: " in proc.stderr and message in proc.stderr, proc.stderr
        assert "Hint: " in proc.stderr and "Traceback" not in proc.stderr


def test_references_resolve_over_the_history_alone(tmp_path: Path) -> None:
    db = RunDB.open(tmp_path / "lok.db")
    try:
        with db.transaction():
            for run_id, workflow, status in (
                ("20260101-000001-aaaaaa", "w", "succeeded"),
                ("20260101-000002-bbbbbb", "other", "succeeded"),
                ("20260101-000003-abcdef", "w", "failed"),
                ("20260101-000004-cccccc", "w", "succeeded"),
            ):
                db.start_run(run_id, workflow, None, {}, None)
                db.finish_run(run_id, status, {}, 0.0)
        ids = [r["id"] for r in db.runs()]  # newest first
        assert resolve(db, "latest")["id"] == ids[0]
        assert resolve(db, "latest~1")["id"] == ids[1]  # the same workflow as the latest
        assert resolve(db, "latest", "other")["id"] == "20260101-000002-bbbbbb"
        assert resolve(db, "20260101-000003")["id"] == "20260101-000003-abcdef"
        assert resolve(db, "20260101-000003~")["id"] == "20260101-000001-aaaaaa"
        assert last_unfinished(db)["id"] == "20260101-000003-abcdef"
        assert last_unfinished(db, "other")["id"] == "20260101-000002-bbbbbb"
    finally:
        db.close()


SHIP = """
name = "ship"
[[steps]]
name = "file-issue"
shell = "echo filed >> {fired} && echo issue-1"

[[steps]]
name = "notes"
shell = "echo notes"
cache = false

[[steps]]
name = "push"
depends_on = ["file-issue", "notes"]
shell = "test -e {ok} && echo pushed {{{{ steps.file-issue.output }}}}"
"""


def fired(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_resume_never_fires_a_side_effect_that_already_succeeded(tmp_path: Path) -> None:
    root, log, ok = tmp_path / "p", tmp_path / "fired.log", tmp_path / "ok"
    (root / ".lok").mkdir(parents=True)
    write(root, "ship.toml", SHIP.format(fired=log, ok=ok))
    first = lok(root, "run", "ship.toml")
    assert first.returncode == 1 and fired(log) == 1
    failed = run_ids(root)[-1]

    ok.write_text("")
    doc = resume(root, failed)
    steps = {s["name"]: (s["status"], s["reason"]) for s in doc["steps"]}  # type: ignore[attr-defined]
    assert steps == {
        "file-issue": ("reused", "succeeded in the resumed run"),
        "notes": ("reused", "succeeded in the resumed run"),
        "push": ("ran", "volatile: a shell step with no sources or outputs runs every time"),
    }
    assert fired(log) == 1  # the side effect was not fired again
    assert outputs(doc)[-1] == "pushed issue-1"
    assert resumed_from(root, doc["run_id"]) == failed

    again = resume(root, failed)  # resuming the same run again fires nothing either
    assert again["exit_code"] == 0 and fired(log) == 1
    assert lok(root, "run", "ship.toml").returncode == 0  # a plain run means what it did
    assert fired(log) == 2


def test_resume_runs_a_succeeded_step_again_when_its_own_key_changed(tmp_path: Path) -> None:
    root, log, ok = tmp_path / "p", tmp_path / "fired.log", tmp_path / "ok"
    (root / ".lok").mkdir(parents=True)
    write(root, "ship.toml", SHIP.format(fired=log, ok=ok))
    assert lok(root, "run", "ship.toml").returncode == 1
    write(root, "ship.toml", SHIP.format(fired=log, ok=ok).replace("issue-1", "issue-2"))
    ok.write_text("")
    doc = resume(root)
    steps = {s["name"]: s["status"] for s in doc["steps"]}  # type: ignore[attr-defined]
    assert steps == {"file-issue": "ran", "notes": "reused", "push": "ran"}
    assert fired(log) == 2 and outputs(doc)[-1] == "pushed issue-2"
