"""A `[defaults] command_wrapper` never shows in what lok says about a command.

Failure messages quote the command as the workflow wrote it (rendered), for a
failing shell step, a timed-out one and a failing or timed-out `verify`; the
wrapper it ran inside is lok's business. Driven through the real `lok` CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lokfile.templates.shellquote import wrap_command
from tests.lokrun import lok, run_json, write

# both spellings of "run it with bash": a bare {cmd} after -c is bash's command string
WRAPPERS = ["bash -c {cmd}", "bash -c '{cmd}'"]
FAILING = 'echo "in-${BASH_VERSION:+bash}-{{ 1 + 2 }}" >&2; exit 3'
FAILING_RENDERED = 'echo "in-${BASH_VERSION:+bash}-3" >&2; exit 3'


def project(root: Path, wrapper: str) -> Path:
    write(root, "lok.toml", f"[defaults]\ncommand_wrapper = {json.dumps(wrapper)}\n")
    write(
        root,
        "wf.toml",
        f"""
        name = "w"

        [[steps]]
        name = "bad"
        shell = {json.dumps(FAILING)}

        [[steps]]
        name = "slow"
        shell = "sleep 30  # step-{{{{ 2 * 2 }}}}"
        timeout = "1s"
        """,
    )
    return root


def assert_no_wrapper(text: str) -> None:
    assert "bash -c" not in text, text
    assert "sh -c" not in text, text


@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_a_failing_and_a_timed_out_step_name_the_command_never_the_wrapper(
    tmp_path: Path, wrapper: str
) -> None:
    root = project(tmp_path, wrapper)
    shown = lok(root, "run", "wf.toml", "--keep-going")
    assert shown.returncode == 1, shown.stdout + shown.stderr
    said = shown.stdout + shown.stderr
    assert f"Shell command failed (exit 3): {FAILING_RENDERED}" in said
    assert "in-bash-3" in said  # the step's stderr: it did run inside the wrapper's bash
    assert "Step timed out after 1s" in said
    assert_no_wrapper(said)

    doc = run_json(root, "wf.toml", "--keep-going")
    steps = {s["name"]: s for s in doc["steps"]}
    assert steps["bad"]["error"].startswith(f"Shell command failed (exit 3): {FAILING_RENDERED}")
    assert steps["slow"]["error"] == "Step timed out after 1s"
    assert_no_wrapper(json.dumps(doc))


ANSWER = (
    "```json\n"
    + json.dumps({"edits": [{"file": "app.txt", "old": "one", "new": "two"}], "summary": "s"})
    + "\n```\n"
)


@pytest.mark.parametrize(
    ("verify", "said"),
    [
        ('echo "verify-in-${BASH_VERSION:+bash}"; exit 4', "failed (exit 4)"),
        ("sleep 30", "timed out after 1s"),
    ],
)
def test_a_failing_or_timed_out_verify_names_the_command_never_the_wrapper(
    tmp_path: Path, verify: str, said: str
) -> None:
    write(
        tmp_path,
        "lok.toml",
        f"""
        [defaults]
        command_wrapper = "bash -c {{cmd}}"

        [backends.t]
        type = "test"
        reply = {json.dumps(ANSWER)}
        """,
    )
    write(tmp_path, "app.txt", "one\n")
    write(
        tmp_path,
        "fix.toml",
        f"""
        name = "fix"
        [[steps]]
        name = "edit"
        backend = "t"
        apply_edits = true
        verify = {json.dumps(verify)}
        timeout = "1s"
        prompt = "Change one to two."
        """,
    )
    shown = lok(tmp_path, "run", "fix.toml")
    text = shown.stdout + shown.stderr
    assert shown.returncode == 1, text
    assert f"`{verify}` {said}" in text
    if "exit 4" in said:
        assert "verify-in-bash" in text  # its output: it ran inside the wrapper's bash
    assert_no_wrapper(text)
    assert (tmp_path / "app.txt").read_text() == "one\n"  # the failed edit was put back


@pytest.mark.parametrize(
    ("wrapper", "wrapped"),
    [
        ("bash -c {cmd}", "bash -c 'exit 3'"),
        ("bash -lc {cmd}", "bash -lc 'exit 3'"),
        ("docker exec dev sh -c {cmd}", "docker exec dev sh -c 'exit 3'"),
        ("direnv exec . {cmd}", "direnv exec . sh -c 'exit 3'"),
        ("{cmd}", "sh -c 'exit 3'"),
        ("bash -c '{cmd}'", "bash -c 'exit 3'"),
    ],
)
def test_a_bare_cmd_after_dash_c_is_the_command_string_elsewhere_a_program(
    wrapper: str, wrapped: str
) -> None:
    assert wrap_command(wrapper, "exit 3") == wrapped
