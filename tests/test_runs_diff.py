"""`lok runs diff`: what changed between two real runs, step by step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from lokfile.cli import cli
from tests.lokrun import lok, write

CONFIG = """
[backends.alpha]
type = "test"
reply = "alpha: {prompt}"
"""

THREE = """
name = "three"
[[steps]]
name = "notes"
shell = "cat notes.txt"
sources = ["notes.txt"]

[[steps]]
name = "constant"
shell = "echo always the same"
cache = true

[[steps]]
name = "todo"
shell = "cat todo.txt"
sources = ["todo.txt"]
"""

FINDINGS = """
name = "findings"
[[steps]]
name = "scan"
shell = "cat findings.json"
sources = ["findings.json"]
output_format = "json"
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / ".lok").mkdir()
    write(tmp_path, "lok.toml", CONFIG)
    write(tmp_path, ".lok/workflows/three.toml", THREE)
    write(tmp_path, ".lok/workflows/findings.toml", FINDINGS)
    write(tmp_path, "notes.txt", "alpha\nbeta\ngamma\n")
    write(tmp_path, "todo.txt", "write tests\n")
    return tmp_path


def run_wf(root: Path, *args: str) -> None:
    proc = lok(root, "run", *args)
    assert proc.returncode == 0, proc.stderr


def diff(root: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["-C", str(root), "runs", "diff", *args])


def diff_json(root: Path, *args: str) -> Any:
    result = diff(root, "--json", *args)
    assert result.exit_code in (0, 1), (result.output, result.exception)
    return json.loads(result.stdout)


def test_two_runs_that_differ_in_one_step_list_exactly_that_step_with_a_unified_diff(
    project: Path,
) -> None:
    run_wf(project, "three")
    write(project, "notes.txt", "alpha\nBETA\ngamma\n")
    run_wf(project, "three")
    doc = diff_json(project)
    states = {s["name"]: s["state"] for s in doc["steps"]}
    assert states == {"notes": "changed", "constant": "same", "todo": "same"}
    assert doc["differ"] is True
    notes = doc["steps"][0]
    assert notes["inputs"] == ["sources: notes.txt"], notes
    assert "-beta\n+BETA" in notes["unified_diff"]
    assert (notes["added_lines"], notes["removed_lines"]) == (1, 1)
    text = diff(project)
    assert text.exit_code == 0
    out = text.stdout
    assert "~ notes" in out and "changed" in out
    assert "= constant" in out and "= todo" in out
    assert "-beta" in out and "+BETA" in out and " alpha" in out
    assert out.rstrip().endswith("1 changed, 0 only in A, 0 only in B, 2 same")


def test_a_json_output_change_is_shown_by_path(project: Path) -> None:
    write(project, "findings.json", '{"count": 1, "items": [{"sev": "low", "file": "a.py"}]}')
    run_wf(project, "findings")
    write(
        project,
        "findings.json",
        '{"count": 2, "items": [{"sev": "high", "file": "a.py"}, {"sev": "low", "file": "b.py"}]}',
    )
    run_wf(project, "findings")
    doc = diff_json(project)
    [scan] = doc["steps"]
    assert scan["state"] == "changed"
    assert scan["json_changes"] == [
        {"op": "changed", "path": ".count", "a": 1, "b": 2},
        {"op": "changed", "path": ".items[0].sev", "a": "low", "b": "high"},
        {"op": "added", "path": ".items[1]", "b": {"sev": "low", "file": "b.py"}},
    ]
    out = diff(project).stdout
    assert "~ .count: 1 → 2" in out
    assert '~ .items[0].sev: "low" → "high"' in out
    assert '+ .items[1]: {"file": "b.py", "sev": "low"}' in out


def test_exit_code_is_one_on_a_difference_and_zero_on_none(project: Path) -> None:
    run_wf(project, "three")
    run_wf(project, "three")
    same = diff(project, "--exit-code")
    assert same.exit_code == 0
    assert "0 changed, 0 only in A, 0 only in B, 3 same" in same.stdout
    write(project, "todo.txt", "ship it\n")
    run_wf(project, "three")
    assert diff(project, "--exit-code").exit_code == 1
    assert diff(project).exit_code == 0  # without the flag a difference is not a failure
    # an explicit pair: the first two runs are still the same
    assert diff(project, "latest~2", "latest~1", "--exit-code").exit_code == 0


def test_ran_versus_reused_with_the_same_output_is_not_a_change(project: Path) -> None:
    run_wf(project, "three")
    run_wf(project, "three")  # everything reused
    doc = diff_json(project)
    assert {s["state"] for s in doc["steps"]} == {"same"}
    assert [s["status_a"] for s in doc["steps"]] == ["ran", "ran", "ran"]
    assert [s["status_b"] for s in doc["steps"]] == ["reused", "reused", "reused"]


def test_steps_only_in_one_run_are_named_as_such(project: Path) -> None:
    run_wf(project, "three")
    write(
        project,
        ".lok/workflows/three.toml",
        THREE.replace('name = "todo"', 'name = "later"') + "\n",
    )
    run_wf(project, "three")
    doc = diff_json(project)
    states = {s["name"]: s["state"] for s in doc["steps"]}
    assert states["todo"] == "only_a" and states["later"] == "only_b"
    assert doc["counts"] == {"same": 2, "changed": 0, "only_a": 1, "only_b": 1}
    out = diff(project).stdout
    assert "- todo" in out and "only in A" in out
    assert "+ later" in out and "only in B" in out


def test_the_inputs_that_changed_name_the_prompt_for_an_llm_step(project: Path) -> None:
    write(
        project,
        ".lok/workflows/llm.toml",
        """
        name = "llm"
        [[steps]]
        name = "ask"
        backend = "alpha"
        prompt = "say {{ arg.1 }}"
        """,
    )
    run_wf(project, "llm", "hi")
    run_wf(project, "llm", "bye")
    doc = diff_json(project, "--step", "ask")
    [ask] = doc["steps"]
    assert ask["inputs"] == ["prompt"]
    assert "-alpha: say hi\n+alpha: say bye" in ask["unified_diff"]


def test_stat_prints_a_line_per_step_without_the_diff(project: Path) -> None:
    run_wf(project, "three")
    write(project, "notes.txt", "one\ntwo\n")
    run_wf(project, "three")
    out = diff(project, "--stat").stdout
    notes = next(ln for ln in out.splitlines() if "notes" in ln)
    assert "+2 -3" in notes
    assert "@@" not in out and "+one" not in out


def test_step_option_compares_only_that_step(project: Path) -> None:
    run_wf(project, "three")
    write(project, "notes.txt", "x\n")
    run_wf(project, "three")
    doc = diff_json(project, "--step", "todo")
    assert [s["name"] for s in doc["steps"]] == ["todo"]
    assert doc["differ"] is False


def test_one_run_given_is_compared_with_the_latest_of_its_workflow(project: Path) -> None:
    for text in ("v1\n", "v2\n", "v3\n"):
        write(project, "todo.txt", text)
        run_wf(project, "three")
    ids = [r["id"] for r in json.loads(lok(project, "runs", "list", "--json").stdout)["runs"]]
    oldest = diff_json(project, "latest~2")
    assert (oldest["a"]["id"], oldest["b"]["id"]) == (ids[2], ids[0])
    assert "-v1\n+v3" in oldest["steps"][2]["unified_diff"]
    newest = diff_json(project, "latest")  # the latest itself: against the run before it
    assert (newest["a"]["id"], newest["b"]["id"]) == (ids[1], ids[0])


def test_default_pair_needs_two_runs_of_the_workflow(project: Path) -> None:
    run_wf(project, "three")
    proc = lok(project, "runs", "diff")
    assert proc.returncode == 2
    assert "has only one run" in proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1].startswith("Hint: run it again")


def test_json_is_one_document_on_stdout_and_nothing_else(project: Path) -> None:
    run_wf(project, "three")
    write(project, "todo.txt", "more\n")
    run_wf(project, "three")
    proc = lok(project, "runs", "diff", "--json", "--exit-code")
    assert proc.returncode == 1
    assert proc.stderr == ""
    doc = json.loads(proc.stdout)
    assert doc["a"]["workflow"] == doc["b"]["workflow"] == "three"
    assert [s["name"] for s in doc["steps"] if s["state"] == "changed"] == ["todo"]
