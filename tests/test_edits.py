"""apply_edits / verify / fix_retries of an LLM step, on real files in a temporary project."""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lokfile.hashing import digest_bytes
from lokfile.store.artifacts import Store
from lokfile.worker import edits, snapshots, verify
from lokfile.worker.execute import EditSettings
from tests.editworld import tree
from tests.lokrun import lok, run_json, write


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "src").mkdir(parents=True)
    (root / ".lok").mkdir()
    (root / "src" / "app.py").write_text("def add(a, b):\n    return a - b\n")
    (root / "src" / "util.py").write_text("X = 1\nY = 1\n")
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "run.sh").chmod(0o755)
    return root


def store_of(root: Path) -> Store:
    return Store(root / ".lok" / "runs")


def answer(*items: dict[str, str], summary: str = "fix") -> str:
    return (
        "Here you go:\n```json\n"
        + json.dumps({"edits": list(items), "summary": summary})
        + "\n```\n"
    )


def apply(
    root: Path,
    text: str,
    verify_cmd: str | None = None,
    fix_retries: int = 0,
    requery: Callable[[str], str] | None = None,
    wrapper: str | None = None,
    timeout_s: float | None = 30,
    apply_edits: bool = True,
) -> tuple[edits.EditOutcome, list[str]]:
    notes: list[str] = []

    def no_requery(prompt: str) -> str:
        raise AssertionError("the backend must not be asked again")

    settings = EditSettings(
        apply_edits=apply_edits, verify=verify_cmd, fix_retries=fix_retries, command_wrapper=wrapper
    )
    outcome = edits.apply_and_verify(
        text,
        "Fix it.",
        settings,
        root,
        store_of(root),
        timeout_s,
        requery or no_requery,
        notes.append,
    )
    return outcome, notes


def test_single_edit_rewrites_the_file_and_records_a_snapshot(project: Path) -> None:
    outcome, notes = apply(project, answer({"file": "src/app.py", "old": "a - b", "new": "a + b"}))
    assert outcome.ok, outcome.error
    assert (project / "src/app.py").read_text() == "def add(a, b):\n    return a + b\n"
    assert outcome.files == ("src/app.py",)
    assert outcome.snapshot is not None
    manifest = snapshots.load_manifest(store_of(project), outcome.snapshot)
    before = manifest["files"]["src/app.py"]
    assert store_of(project).get(before) == b"def add(a, b):\n    return a - b\n"
    assert manifest["after"]["src/app.py"] == digest_bytes((project / "src/app.py").read_bytes())
    assert any("applied 1 edit" in n for n in notes)


def test_path_key_of_llm_mux_is_accepted(project: Path) -> None:
    outcome, _ = apply(project, answer({"path": "src/util.py", "old": "X = 1", "new": "X = 2"}))
    assert outcome.ok, outcome.error
    assert (project / "src/util.py").read_text() == "X = 2\nY = 1\n"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("../outside.txt", "'..' is refused"),
        ("src/../../outside.txt", "'..' is refused"),
        ("/tmp/lok-edit-abs.txt", "absolute paths are refused"),
        (".lok/lok.db", "does not edit files under .lok/"),
    ],
)
def test_path_leaving_the_project_is_refused_and_nothing_is_written(
    project: Path, path: str, message: str
) -> None:
    before = tree(project)
    outside_before = tree(project.parent)
    text = answer(
        {"file": "src/app.py", "old": "a - b", "new": "a + b"},  # valid, must not be written
        {"file": path, "old": "", "new": "pwned"},
    )
    outcome, _ = apply(project, text)
    assert not outcome.ok
    assert message in (outcome.error or "")
    assert tree(project) == before
    assert tree(project.parent) == outside_before
    assert not Path("/tmp/lok-edit-abs.txt").exists()


def test_symlink_pointing_outside_the_root_is_refused(project: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("keep me\n")
    (project / "link.txt").symlink_to(secret)
    (project / "linkdir").symlink_to(tmp_path)
    before = tree(project)
    for path in ("link.txt", "linkdir/secret.txt", "linkdir/new.txt"):
        old = "" if path.endswith("new.txt") else "keep me"
        outcome, _ = apply(project, answer({"file": path, "old": old, "new": "changed"}))
        assert not outcome.ok
        assert "outside the project root" in (outcome.error or "")
    assert secret.read_text() == "keep me\n"
    assert not (tmp_path / "new.txt").exists()
    assert tree(project) == before


def test_symlink_inside_the_root_edits_its_target(project: Path) -> None:
    (project / "alias.py").symlink_to("src/util.py")
    outcome, _ = apply(project, answer({"file": "alias.py", "old": "Y = 1", "new": "Y = 3"}))
    assert outcome.ok, outcome.error
    assert outcome.files == ("src/util.py",)
    assert (project / "alias.py").is_symlink()
    assert (project / "src/util.py").read_text() == "X = 1\nY = 3\n"


def test_ambiguous_old_names_the_count_and_writes_nothing(project: Path) -> None:
    before = tree(project)
    text = answer(
        {"file": "src/app.py", "old": "a - b", "new": "a + b"},
        {"file": "src/util.py", "old": " = 1", "new": " = 2"},
    )
    outcome, _ = apply(project, text)
    assert not outcome.ok
    assert "appears 2 times" in (outcome.error or "")
    assert "src/util.py" in (outcome.error or "")
    assert tree(project) == before


def test_missing_old_text_and_missing_file_are_both_reported(project: Path) -> None:
    before = tree(project)
    text = answer(
        {"file": "src/app.py", "old": "no such text", "new": "x"},
        {"file": "src/gone.py", "old": "x", "new": "y"},
    )
    outcome, _ = apply(project, text)
    assert not outcome.ok
    assert "old text not found" in (outcome.error or "")
    assert "src/gone.py: file not found" in (outcome.error or "")
    assert tree(project) == before


def test_answer_without_edits_json_fails_the_step(project: Path) -> None:
    outcome, _ = apply(project, "I would change the minus into a plus.")
    assert not outcome.ok
    assert 'no JSON object with an "edits" list' in (outcome.error or "")


def test_empty_edits_list_is_not_a_failure(project: Path) -> None:
    outcome, notes = apply(project, '{"edits": []}')
    assert outcome.ok
    assert outcome.snapshot is None
    assert "no edits in the answer" in notes


def test_literal_newlines_and_backticks_inside_the_json_are_understood(project: Path) -> None:
    text = (
        "```json\n"
        '{"edits": [{"file": "src/app.py", "old": "def add(a, b):\n    return a - b",'
        ' "new": "def add(a, b):\n    ```not a fence```\n    return a + b"}]}\n'
        "```"
    )
    outcome, _ = apply(project, text)
    assert outcome.ok, outcome.error
    assert (project / "src/app.py").read_text() == (
        "def add(a, b):\n    ```not a fence```\n    return a + b\n"
    )


def test_edits_object_after_another_json_object_is_found(project: Path) -> None:
    text = 'Context: {"note": 1}\nEdits: {"edits": [{"file": "src/util.py", "old": "Y = 1", "new": "Y = 5"}]}'
    outcome, _ = apply(project, text)
    assert outcome.ok, outcome.error
    assert (project / "src/util.py").read_text() == "X = 1\nY = 5\n"


def test_crlf_file_is_edited_with_lf_old_text_and_keeps_crlf(project: Path) -> None:
    (project / "win.txt").write_bytes(b"one\r\ntwo\r\nthree\r\n")
    outcome, _ = apply(project, answer({"file": "win.txt", "old": "one\ntwo", "new": "1\n2"}))
    assert outcome.ok, outcome.error
    assert (project / "win.txt").read_bytes() == b"1\r\n2\r\nthree\r\n"


def test_edit_keeps_the_file_mode(project: Path) -> None:
    outcome, _ = apply(project, answer({"file": "run.sh", "old": "echo hi", "new": "echo bye"}))
    assert outcome.ok, outcome.error
    assert stat.S_IMODE((project / "run.sh").stat().st_mode) == 0o755


def test_failed_verify_leaves_every_file_byte_identical(project: Path) -> None:
    before = tree(project)
    text = answer(
        {"file": "src/app.py", "old": "a - b", "new": "a + b"},
        {"file": "run.sh", "old": "echo hi", "new": "echo bye"},
        {"file": "new/deep/module.py", "old": "", "new": "NEW = True\n"},
    )
    outcome, notes = apply(project, text, verify_cmd="echo VERIFY-SAYS-NO >&2; exit 3")
    assert not outcome.ok
    assert "verification failed" in (outcome.error or "")
    assert "VERIFY-SAYS-NO" in (outcome.error or "")
    assert "exit 3" in (outcome.error or "")
    assert tree(project) == before
    assert not (project / "new").exists()
    assert "restored the files as they were" in notes


def test_verify_sees_the_edited_files(project: Path) -> None:
    outcome, _ = apply(
        project,
        answer({"file": "src/app.py", "old": "a - b", "new": "a + b"}),
        verify_cmd="grep -q 'a + b' src/app.py",
    )
    assert outcome.ok, outcome.error


def test_custom_verify_command_runs_exactly_once(project: Path) -> None:
    outcome, notes = apply(
        project,
        answer({"file": "src/util.py", "old": "X = 1", "new": "X = 2"}),
        verify_cmd="echo ran >> verify-count.txt",
    )
    assert outcome.ok, outcome.error
    assert (project / "verify-count.txt").read_text() == "ran\n"
    assert not any(n.startswith("format:") for n in notes)


def test_verify_runs_inside_the_command_wrapper(project: Path) -> None:
    outcome, _ = apply(
        project,
        answer({"file": "src/util.py", "old": "X = 1", "new": "X = 2"}),
        verify_cmd="test \"$WRAPPED\" = yes && echo 'it''s' > quoted.txt",
        wrapper="env WRAPPED=yes sh -c '{cmd}'",
    )
    assert outcome.ok, outcome.error
    assert (project / "quoted.txt").read_text() == "its\n"


def test_verify_timeout_ends_the_whole_process_tree_and_restores(project: Path) -> None:
    before = tree(project)
    started = time.monotonic()
    outcome, _ = apply(
        project,
        answer({"file": "src/util.py", "old": "X = 1", "new": "X = 2"}),
        verify_cmd="(sleep 30 & echo $! > child.pid; wait) ",
        timeout_s=0.5,
    )
    assert time.monotonic() - started < 10
    assert not outcome.ok
    assert "timed out after 0.5s" in (outcome.error or "")
    pid = int((project / "child.pid").read_text())
    (project / "child.pid").unlink()
    assert tree(project) == before
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"verify's child {pid} survived the timeout")


def test_fix_retries_asks_again_with_the_verify_error_and_succeeds(project: Path) -> None:
    asked: list[str] = []

    def requery(prompt: str) -> str:
        asked.append(prompt)
        return answer({"file": "src/app.py", "old": "a - b", "new": "a + b"})

    wrong = answer({"file": "src/app.py", "old": "a - b", "new": "a * b"})
    outcome, notes = apply(
        project,
        wrong,
        verify_cmd="grep -q 'a + b' src/app.py || { echo 'expected a + b' >&2; exit 1; }",
        fix_retries=2,
        requery=requery,
    )
    assert outcome.ok, outcome.error
    assert outcome.attempts == 2
    assert len(asked) == 1
    assert asked[0].startswith("Fix it.")
    assert "expected a + b" in asked[0]
    assert (project / "src/app.py").read_text() == "def add(a, b):\n    return a + b\n"
    assert outcome.text == answer({"file": "src/app.py", "old": "a - b", "new": "a + b"})
    assert "fix attempt 1/2" in notes


def test_fix_retries_also_cover_edits_that_do_not_apply(project: Path) -> None:
    def requery(prompt: str) -> str:
        assert "old text not found" in prompt
        return answer({"file": "src/util.py", "old": "Y = 1", "new": "Y = 9"})

    outcome, _ = apply(
        project,
        answer({"file": "src/util.py", "old": "Z = 1", "new": "Z = 9"}),
        fix_retries=1,
        requery=requery,
    )
    assert outcome.ok, outcome.error
    assert (project / "src/util.py").read_text() == "X = 1\nY = 9\n"


def test_exhausted_fix_retries_fail_with_the_last_error_and_a_clean_tree(project: Path) -> None:
    before = tree(project)
    calls = []

    def requery(prompt: str) -> str:
        calls.append(prompt)
        return answer({"file": "src/app.py", "old": "a - b", "new": f"a * {len(calls)}"})

    outcome, _ = apply(
        project,
        answer({"file": "src/app.py", "old": "a - b", "new": "a * 0"}),
        verify_cmd="exit 1",
        fix_retries=2,
        requery=requery,
    )
    assert not outcome.ok
    assert outcome.attempts == 3
    assert len(calls) == 2
    assert tree(project) == before


def test_failed_requery_fails_the_step_with_both_errors(project: Path) -> None:
    def requery(prompt: str) -> str:
        raise edits.RequeryFailed("backend is down")

    outcome, _ = apply(
        project,
        answer({"file": "src/app.py", "old": "a - b", "new": "a + b"}),
        verify_cmd="exit 1",
        fix_retries=1,
        requery=requery,
    )
    assert not outcome.ok
    assert "verification failed" in (outcome.error or "")
    assert "re-query failed: backend is down" in (outcome.error or "")


def test_verify_without_apply_edits_checks_the_tree(project: Path) -> None:
    outcome, _ = apply(project, "just text", verify_cmd="test -f run.sh", apply_edits=False)
    assert outcome.ok
    outcome, _ = apply(project, "just text", verify_cmd="test -f nope", apply_edits=False)
    assert not outcome.ok


def test_restore_puts_back_a_successful_edit(project: Path) -> None:
    before = tree(project)
    text = answer(
        {"file": "src/app.py", "old": "a - b", "new": "a + b"},
        {"file": "docs/notes.md", "old": "", "new": "# notes\n"},
    )
    outcome, _ = apply(project, text)
    assert outcome.ok and outcome.snapshot
    assert tree(project) != before
    manifest = snapshots.load_manifest(store_of(project), outcome.snapshot)
    restored = snapshots.restore(manifest, project, store_of(project))
    assert restored == ["docs/notes.md", "src/app.py"]
    assert tree(project) == before


def test_snapshot_artifacts_are_all_named_for_gc(project: Path) -> None:
    outcome, _ = apply(project, answer({"file": "src/app.py", "old": "a - b", "new": "a + b"}))
    assert outcome.snapshot
    needed = snapshots.manifest_digests(store_of(project), outcome.snapshot)
    assert len(needed) == 2  # the manifest and the original
    assert all(store_of(project).verify(d) for d in needed)


@pytest.mark.parametrize(
    ("value", "files", "expected"),
    [
        ("rust", {}, "cargo clippy -- -D warnings && cargo build"),
        ("Go", {}, "go vet ./... && go build ./..."),
        ("py", {}, "ruff check ."),
        ("typescript", {}, "npm run lint --if-present && npm run build --if-present"),
        ("ruby", {}, "bundle exec rubocop --lint"),
        ("false", {}, None),
        ("make test", {}, "make test"),
        ("true", {"pyproject.toml": "[tool.ruff]\n"}, "ruff check ."),
        ("true", {"pyproject.toml": "[tool.mypy]\nstrict = true\n"}, "mypy ."),
        ("true", {"Cargo.toml": "[package]\n"}, "cargo clippy -- -D warnings && cargo build"),
        (
            "true",
            {"go.mod": "module x\n", ".golangci.yml": ""},
            "go vet ./... && golangci-lint run && go build ./...",
        ),
        ("true", {"Gemfile": "gem 'rails'\ngem 'rspec'\n"}, "bundle exec rspec --dry-run"),
        ("true", {}, None),
    ],
)
def test_verify_keywords_resolve_as_in_the_original(
    tmp_path: Path, value: str, files: dict[str, str], expected: str | None
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert verify.resolve(value, tmp_path).verify == expected


# -- through `lok run`: the worker calls apply_and_verify -------------------------

GOOD = answer({"file": "src/app.py", "old": "a - b", "new": "a + b"})
BAD = answer({"file": "src/app.py", "old": "a - b", "new": "a * b"})


def edit_project(root: Path, verify_line: str, fix_retries: int) -> Path:
    log = root / "calls.jsonl"
    write(
        root,
        "lok.toml",
        f"""
        [backends.t]
        type = "test"
        log_file = {json.dumps(str(log))}
        rules = [
          {{ contains = "expected a + b", reply = {json.dumps(GOOD)} }},
          {{ contains = "Fix", reply = {json.dumps(BAD)} }},
        ]
        """,
    )
    write(
        root,
        ".lok/workflows/fixit.toml",
        f"""
        name = "fixit"
        [[steps]]
        name = "fix"
        backend = "t"
        apply_edits = true
        {verify_line}
        fix_retries = {fix_retries}
        prompt = "Fix the add function."
        """,
    )
    return log


def calls(log: Path) -> list[dict[str, str]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


CHECK = "verify = \"grep -q 'a + b' src/app.py || { echo 'expected a + b' >&2; exit 1; }\""


def test_lok_run_fix_retries_succeeds_on_the_second_answer(project: Path) -> None:
    log = edit_project(project, CHECK, 1)
    doc = run_json(project, "fixit")
    assert doc["exit_code"] == 0, doc
    asked = calls(log)
    assert len(asked) == 2
    assert "expected a + b" in asked[1]["prompt"]
    assert (project / "src/app.py").read_text() == "def add(a, b):\n    return a + b\n"
    assert doc["steps"][0]["output"] == GOOD


def test_lok_run_failed_verify_fails_the_run_and_leaves_the_tree_as_it_was(project: Path) -> None:
    edit_project(project, CHECK, 0)
    before = tree(project)
    proc = lok(project, "run", "fixit")
    assert proc.returncode == 1
    assert "verification failed" in proc.stdout + proc.stderr
    after = tree(project)
    assert {k: v for k, v in after.items() if k != "calls.jsonl"} == {
        k: v for k, v in before.items() if k != "calls.jsonl"
    }


def test_lok_runs_revert_restores_what_the_step_replaced(project: Path) -> None:
    edit_project(project, "", 0)
    original = (project / "src/app.py").read_bytes()
    (project / "src/app.py").write_text("def add(a, b):\n    return a - b\n")
    proc = lok(project, "run", "fixit")
    assert proc.returncode == 0, proc.stderr
    assert (project / "src/app.py").read_text().endswith("a * b\n")
    proc = lok(project, "runs", "revert", "--step", "fix")
    assert proc.returncode == 0, proc.stderr
    assert "restored src/app.py" in proc.stdout
    assert (project / "src/app.py").read_bytes() == original


def test_verify_is_rendered_as_a_template(project: Path) -> None:
    edit_project(project, "verify = \"grep -q '{{ workflow.name }}' marker.txt\"", 0)
    (project / "marker.txt").write_text("fixit\n")
    doc = run_json(project, "fixit")
    assert doc["exit_code"] == 0, doc


def test_multi_backend_edit_step_edits_the_tree_once(project: Path) -> None:
    edit_project(project, "", 0)
    other = answer({"file": "src/util.py", "old": "X = 1", "new": "X = 2"})
    with open(project / "lok.toml", "a") as fh:
        fh.write(f'\n[backends.t2]\ntype = "test"\nreply = {json.dumps(other)}\n')
    wf = project / ".lok/workflows/fixit.toml"
    wf.write_text(wf.read_text().replace('backend = "t"', 'backends = ["t", "t2"]'))
    doc = run_json(project, "fixit")
    assert doc["exit_code"] == 0, doc
    app_changed = "a * b" in (project / "src/app.py").read_text()
    util_changed = "X = 2" in (project / "src/util.py").read_text()
    assert app_changed != util_changed, "both backends' edits were applied"


# -- hostile paths: ordinary "edit failed" errors, the tree untouched ----------------


def _hostile(project: Path) -> None:
    os.symlink("loop_b", project / "loop_a")
    os.symlink("loop_a", project / "loop_b")


HOSTILE_PATHS = {
    "a NUL byte": "src/app\x00.py",
    "a name longer than NAME_MAX": "src/" + "n" * 300 + ".py",
    "a path longer than PATH_MAX": "/".join(["d" * 200] * 25) + "/x.py",
    "a symlink loop": "loop_a",
    "a file below a symlink loop": "loop_a/inner.py",
}


@pytest.mark.parametrize("what", list(HOSTILE_PATHS))
def test_a_hostile_edit_path_is_an_edit_failure_naming_it_and_writes_nothing(
    project: Path, what: str
) -> None:
    _hostile(project)
    before = tree(project)
    path = HOSTILE_PATHS[what]
    for old in ("", "x"):
        outcome, _ = apply(project, answer({"file": path, "old": old, "new": "y"}))
        assert not outcome.ok
        assert outcome.error is not None and outcome.error.startswith("edit failed: ")
        shown = path.replace("\x00", "\\x00")
        assert shown[:40] in outcome.error, outcome.error
        assert tree(project) == before


def test_a_hostile_edit_path_through_lok_run_fails_the_step_without_a_traceback(
    project: Path,
) -> None:
    edit_project(project, "", 0)
    bad = answer({"file": "src/app\x00.py", "old": "a - b", "new": "a + b"})
    toml = (project / "lok.toml").read_text()
    (project / "lok.toml").write_text(toml.split("rules")[0] + f"reply = {json.dumps(bad)}\n")
    before = tree(project)
    proc = lok(project, "run", "fixit")
    assert proc.returncode == 1
    assert "edit failed: src/app\\x00.py" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    after = {k: v for k, v in tree(project).items() if k != "calls.jsonl"}
    assert after == {k: v for k, v in before.items() if k != "calls.jsonl"}
