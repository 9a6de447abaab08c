"""An edit step's result is only as fresh as the files it edited.

A real git repository, an OpenAI-compatible server on loopback that counts the
requests, and an `apply_edits` step with a `verify` that leaves a mark each
time it runs. After the tree loses the edits (`git checkout -f main`) the
stored edits are applied again without asking; after the edited file moved on
to something else the step asks again.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lokrun import BUILTINS_OFF, db_rows, lok, run_json, write
from tests.servers.llm import LLMServer

ORIGINAL = "def ratio(a, b):\n    return a / b\n"
FIXED = "def ratio(a, b):\n    return a / b if b else 0\n"
FIX = json.dumps(
    {
        "edits": [
            {"file": "src/calc.py", "old": "return a / b", "new": "return a / b if b else 0"}
        ],
        "summary": "guard ratio",
    }
)


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer() as srv:
        yield srv


def git(root: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=True, env=env
    )
    return done.stdout


@pytest.fixture
def repo(tmp_path: Path, server: LLMServer) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    write(root, "src/calc.py", ORIGINAL)
    write(
        root,
        "lok.toml",
        BUILTINS_OFF + f'[backends.api]\ntype = "openai"\nurl = "{server.url}/v1"\n',
    )
    marks, flag = tmp_path / "verified.log", tmp_path / "broken.flag"
    write(
        root,
        ".lok/workflows/heal.toml",
        f"""
        name = "heal"
        [[steps]]
        name = "fix"
        backend = "api"
        apply_edits = true
        verify = "echo verified >> {marks} && test ! -e {flag} && grep -q 'if b else 0' src/calc.py"
        prompt = '''Guard ratio() against b == 0. <<reply:{FIX}>>'''
        """,
    )
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    return root


def verified(repo: Path) -> int:
    marks = repo.parent / "verified.log"
    return len(marks.read_text().splitlines()) if marks.exists() else 0


def calc(repo: Path) -> str:
    return (repo / "src/calc.py").read_text()


def test_after_a_revert_the_stored_edit_is_applied_again_without_asking(
    repo: Path, server: LLMServer
) -> None:
    first = run_json(repo, "heal")
    assert first["exit_code"] == 0, first
    assert calc(repo) == FIXED and len(server.model_calls()) == 1 and verified(repo) == 1

    git(repo, "checkout", "-q", "-f", "main")  # the fix is gone from the tree
    assert calc(repo) == ORIGINAL
    status = lok(repo, "status", "heal")
    assert status.stdout.split(None, 2) == [
        "fix",
        "stale",
        "edits reverted: re-apply 1 stored edit\n",
    ]
    plan = run_json(repo, "--dry-run", "heal")
    assert plan["steps"][0]["reason"] == "edits reverted: re-apply 1 stored edit"
    assert calc(repo) == ORIGINAL  # a plan writes nothing

    proc = lok(repo, "run", "heal")
    assert proc.returncode == 0, proc.stderr
    assert "fix: re-applied 1 stored edit" in proc.stderr
    assert "re-applied 1 stored edit" in proc.stdout  # the results block says so too
    assert calc(repo) == FIXED
    assert len(server.model_calls()) == 1  # no new request
    assert verified(repo) == 2  # verify ran on the re-applied edit

    again = run_json(repo, "heal")
    assert again["steps"][0]["status"] == "reused"
    assert len(server.model_calls()) == 1 and verified(repo) == 2


def test_a_reapplied_edit_is_a_run_step_with_its_reason_in_json(
    repo: Path, server: LLMServer
) -> None:
    assert run_json(repo, "heal")["exit_code"] == 0
    git(repo, "checkout", "-q", "-f", "main")
    doc = run_json(repo, "heal")
    (step,) = doc["steps"]
    assert (step["status"], step["reason"]) == ("ran", "re-applied 1 stored edit")
    assert json.loads(step["output"])["summary"] == "guard ratio"
    assert doc["counts"]["ran"] == 1
    assert len(server.model_calls()) == 1


def test_an_edited_file_that_moved_on_makes_the_step_ask_again(
    repo: Path, server: LLMServer
) -> None:
    assert run_json(repo, "heal")["exit_code"] == 0
    moved = "# ratio of two numbers\n" + ORIGINAL
    (repo / "src/calc.py").write_text(moved)
    status = lok(repo, "status", "--json", "heal")
    (step,) = json.loads(status.stdout)["steps"]
    assert (step["state"], step["reason"]) == ("stale", "edited file changed: src/calc.py")

    doc = run_json(repo, "heal")
    assert doc["exit_code"] == 0, doc
    assert doc["steps"][0]["reason"] == "edited file changed: src/calc.py"
    assert len(server.model_calls()) == 2  # asked once more
    assert calc(repo) == "# ratio of two numbers\n" + FIXED
    assert verified(repo) == 2


def test_a_file_still_edited_keeps_the_step_fresh(repo: Path, server: LLMServer) -> None:
    assert run_json(repo, "heal")["exit_code"] == 0
    (repo / "src/calc.py").write_text(FIXED)  # rewritten with the same bytes: same digest
    doc = run_json(repo, "heal")
    assert doc["steps"][0]["status"] == "reused"
    assert len(server.model_calls()) == 1 and verified(repo) == 1


def test_a_reapplied_edit_that_fails_verify_puts_the_tree_back_and_is_tried_again(
    repo: Path, server: LLMServer
) -> None:
    assert run_json(repo, "heal")["exit_code"] == 0
    git(repo, "checkout", "-q", "-f", "main")
    flag = repo.parent / "broken.flag"
    flag.write_text("")  # what verify checks is broken now (its command, the key, is not)
    doc = run_json(repo, "heal")
    assert (doc["exit_code"], doc["steps"][0]["status"]) == (1, "failed")
    assert "verification failed" in doc["steps"][0]["error"]
    assert calc(repo) == ORIGINAL  # put back as it was
    assert len(server.model_calls()) == 1 and verified(repo) == 2
    flag.unlink()
    doc = run_json(repo, "heal")
    assert doc["steps"][0]["reason"] == "re-applied 1 stored edit"
    assert calc(repo) == FIXED and len(server.model_calls()) == 1 and verified(repo) == 3


def test_the_edit_record_keeps_each_touched_files_digests_and_its_after_bytes(
    repo: Path,
) -> None:
    from lokfile.hashing import digest_bytes
    from lokfile.store.artifacts import Store

    assert run_json(repo, "heal")["exit_code"] == 0
    ((meta,),) = db_rows(repo, "SELECT meta FROM keys WHERE step = 'fix'")
    record = json.loads(meta)["edits"]
    assert record == {
        "count": 1,
        "files": {"src/calc.py": [digest_bytes(ORIGINAL.encode()), digest_bytes(FIXED.encode())]},
    }
    store = Store(repo / ".lok/runs")
    assert store.get(record["files"]["src/calc.py"][1]) == FIXED.encode()


def test_gc_keeps_what_a_reapplication_needs(repo: Path, server: LLMServer) -> None:
    assert run_json(repo, "heal")["exit_code"] == 0
    assert lok(repo, "gc").returncode == 0
    git(repo, "checkout", "-q", "-f", "main")
    doc = run_json(repo, "heal")
    assert doc["steps"][0]["reason"] == "re-applied 1 stored edit"
    assert calc(repo) == FIXED and len(server.model_calls()) == 1


def test_a_run_with_an_edit_step_never_takes_the_no_op_fast_path(repo: Path) -> None:
    assert run_json(repo, "heal")["exit_code"] == 0
    assert run_json(repo, "heal")["steps"][0]["status"] == "reused"
    assert not list((repo / ".lok").glob("state/run-*.json"))  # no snapshot to replay


def test_a_result_recorded_before_edit_records_existed_is_still_read(
    repo: Path, server: LLMServer
) -> None:
    assert run_json(repo, "heal")["exit_code"] == 0
    import sqlite3

    conn = sqlite3.connect(repo / ".lok/lok.db")
    with conn:
        conn.execute("UPDATE keys SET meta = '{}' WHERE step = 'fix'")
    conn.close()
    doc = run_json(repo, "heal")
    assert (doc["exit_code"], doc["steps"][0]["status"]) == (0, "reused")
    assert len(server.model_calls()) == 1
