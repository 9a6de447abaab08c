"""`lok runs list` and `lok runs show`, and run references, on real recorded runs."""

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
reply = "alpha answers: {prompt}"

[backends.beta]
type = "test"
reply = "beta answers: {prompt}"
latency_ms = 30
"""

PIPELINE = """
name = "pipeline"
[[steps]]
name = "read"
shell = "cat in.txt"
sources = ["in.txt"]

[[steps]]
name = "shout"
shell = "tr a-z A-Z < in.txt"
sources = ["in.txt"]
depends_on = ["read"]
"""

PANEL = """
name = "panel"
[[steps]]
name = "question"
shell = "echo 'what is 2+2'"
cache = true

[[steps]]
name = "ask"
backends = ["alpha", "beta"]
consensus = "first"
prompt = "{{ steps.question.output }}"
depends_on = ["question"]
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / ".lok").mkdir()
    write(tmp_path, "lok.toml", CONFIG)
    write(tmp_path, ".lok/workflows/pipeline.toml", PIPELINE)
    write(tmp_path, ".lok/workflows/panel.toml", PANEL)
    write(tmp_path, "in.txt", "hello\n")
    return tmp_path


def runs(root: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["-C", str(root), "runs", *args])


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, (result.output, result.stderr, result.exception)
    return json.loads(result.stdout)


def run_wf(root: Path, name: str) -> None:
    proc = lok(root, "run", name)
    assert proc.returncode == 0, proc.stderr


def test_list_shows_runs_newest_first_with_ran_reused_and_failed_counts(project: Path) -> None:
    run_wf(project, "pipeline")
    run_wf(project, "pipeline")
    doc = as_json(runs(project, "list", "--json"))
    newest, oldest = doc["runs"]
    assert (newest["ran"], newest["reused"], newest["failed"]) == (0, 2, 0)
    assert (oldest["ran"], oldest["reused"], oldest["failed"]) == (2, 0, 0)
    assert newest["started"] >= oldest["started"]
    assert newest["duration_s"] is not None and newest["status"] == "succeeded"
    text = runs(project, "list")
    assert text.exit_code == 0
    lines = text.stdout.splitlines()
    assert lines[0].split()[:4] == ["RUN", "WORKFLOW", "WHEN", "STATUS"]
    assert lines[1].startswith(newest["id"]) and "pipeline" in lines[1]
    assert newest["started_local"] in lines[1]


def test_list_of_one_workflow_leaves_the_others_out(project: Path) -> None:
    run_wf(project, "pipeline")
    run_wf(project, "panel")
    doc = as_json(runs(project, "list", "panel", "--json"))
    assert [r["workflow"] for r in doc["runs"]] == ["panel"]


def test_list_before_any_run_says_there_are_none(project: Path) -> None:
    result = runs(project, "list")
    assert result.exit_code == 0
    assert result.stdout == "No runs yet.\n"
    assert as_json(runs(project, "list", "--json")) == {"runs": []}


def test_latest_tilde_n_counts_back_within_the_latest_runs_workflow(project: Path) -> None:
    run_wf(project, "pipeline")
    run_wf(project, "panel")
    run_wf(project, "pipeline")
    listed = [r["id"] for r in as_json(runs(project, "list", "--json"))["runs"]]
    latest = as_json(runs(project, "show", "latest", "--json"))
    previous = as_json(runs(project, "show", "latest~1", "--json"))
    assert latest["id"] == listed[0]
    assert previous["id"] == listed[2]  # the panel run in between is another workflow's
    assert previous["workflow"] == "pipeline"
    of_panel = as_json(runs(project, "show", "-w", "panel", "--json"))
    assert of_panel["id"] == listed[1]


def test_a_unique_prefix_names_a_run(project: Path) -> None:
    run_wf(project, "pipeline")
    run_id = as_json(runs(project, "list", "--json"))["runs"][0]["id"]
    doc = as_json(runs(project, "show", run_id[:-2], "--json"))
    assert doc["id"] == run_id


def test_an_ambiguous_prefix_or_unknown_run_is_bad_input(project: Path) -> None:
    run_wf(project, "pipeline")
    run_wf(project, "pipeline")
    ambiguous = lok(project, "runs", "show", "2")
    assert ambiguous.returncode == 2
    assert ambiguous.stdout == ""
    assert "Error: run '2' is ambiguous: 2 runs match" in ambiguous.stderr
    assert "Hint: give more characters" in ambiguous.stderr
    unknown = lok(project, "runs", "show", "latest~5")
    assert unknown.returncode == 2
    assert "only 1 run(s) before" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_show_before_any_run_says_how_to_make_one(project: Path) -> None:
    proc = lok(project, "runs", "show")
    assert proc.returncode == 2
    assert proc.stderr.startswith("Error: no runs recorded in ")
    assert "Hint: run a workflow first: lok run NAME" in proc.stderr


def test_show_gives_every_step_its_status_reason_timing_and_backend(project: Path) -> None:
    run_wf(project, "pipeline")
    write(project, "in.txt", "changed\n")
    run_wf(project, "pipeline")
    doc = as_json(runs(project, "show", "--json"))
    by_name = {s["name"]: s for s in doc["steps"]}
    assert list(by_name) == ["read", "shout"]
    assert by_name["read"]["status"] == "ran"
    assert by_name["read"]["reason"] == "source changed: in.txt"
    assert by_name["shout"]["reason"].startswith("upstream read changed") or by_name["shout"][
        "reason"
    ].startswith("source changed")
    assert by_name["shout"]["output"] == "CHANGED"
    assert by_name["read"]["duration_s"] > 0 and by_name["read"]["offset_s"] >= 0
    assert by_name["shout"]["upstream"] == ["read"]
    text = runs(project, "show")
    assert text.exit_code == 0
    assert f"Run {doc['id']}  pipeline  succeeded" in text.stdout
    read_line = next(ln for ln in text.stdout.splitlines() if "✓ read" in ln)
    assert "ran" in read_line and "— source changed: in.txt" in read_line


def test_show_lists_every_backends_own_answer_of_a_multi_backend_step(project: Path) -> None:
    run_wf(project, "panel")
    doc = as_json(runs(project, "show", "--step", "ask", "--json"))
    [ask] = doc["steps"]
    answers = {u["unit"]: u for u in ask["units"]}
    assert set(answers) == {"backend:alpha", "backend:beta"}
    assert answers["backend:alpha"]["output"] == "alpha answers: what is 2+2"
    assert answers["backend:beta"]["output"] == "beta answers: what is 2+2"
    assert answers["backend:beta"]["backend"] == "beta"
    assert ask["output"] == "alpha answers: what is 2+2"  # consensus = first
    text = runs(project, "show").stdout
    assert "[alpha] ran" in text and "alpha answers: what is 2+2" in text
    assert "[beta] ran" in text and "beta answers: what is 2+2" in text
    assert "backend:beta" in text


def test_show_json_says_where_each_unit_ran_and_null_for_what_was_reused(project: Path) -> None:
    run_wf(project, "panel")
    ask = as_json(runs(project, "show", "--step", "ask", "--json"))["steps"][0]
    assert {u["worker"] for u in ask["units"]} == {"local"}  # the local worker processes
    assert ask["worker"] is None  # a step of many units ran in many places
    run_wf(project, "panel")
    again = as_json(runs(project, "show", "--step", "ask", "--json"))["steps"][0]
    assert [u["worker"] for u in again["units"]] == [None, None]
    question = as_json(runs(project, "show", "latest~1", "--step", "question", "--json"))
    assert question["steps"][0]["worker"] == "local"


def test_show_step_prints_the_whole_output(project: Path) -> None:
    write(project, "in.txt", "".join(f"line {i}\n" for i in range(30)))
    run_wf(project, "pipeline")
    text = runs(project, "show", "--step", "read")
    assert text.exit_code == 0
    assert "line 0" in text.stdout and "line 29" in text.stdout
    assert "shout" not in text.stdout


def test_show_of_a_step_the_run_does_not_have_names_the_steps_it_has(project: Path) -> None:
    run_wf(project, "pipeline")
    proc = lok(project, "runs", "show", "--step", "nope")
    assert proc.returncode == 2
    assert "has no step 'nope'" in proc.stderr
    assert "Hint: its steps: read, shout" in proc.stderr


def test_show_marks_a_failed_step_with_its_error(project: Path) -> None:
    write(
        project,
        ".lok/workflows/broken.toml",
        """
        name = "broken"
        [[steps]]
        name = "boom"
        shell = "echo nope >&2; exit 3"
        """,
    )
    assert lok(project, "run", "broken").returncode == 1
    doc = as_json(runs(project, "show", "--json"))
    assert doc["status"] == "failed"
    assert doc["steps"][0]["status"] == "failed"
    assert "exit 3" in doc["steps"][0]["error"]
    text = runs(project, "show").stdout
    assert "✗ boom" in text and "Shell command failed (exit 3)" in text


def test_a_long_loop_is_summarised_not_listed_item_by_item(project: Path) -> None:
    write(
        project,
        ".lok/workflows/loop.toml",
        """
        name = "loop"
        [[steps]]
        name = "list"
        shell = "echo '[0,1,2,3,4,5,6,7,8,9,10,11]'"
        output_format = "json"
        [[steps]]
        name = "each"
        for_each = "{{ steps.list.output }}"
        shell = "echo item {{ item }}"
        depends_on = ["list"]
        """,
    )
    run_wf(project, "loop")
    lines = runs(project, "show").stdout.splitlines()
    summary = next(ln for ln in lines if "items" in ln)
    assert summary.split() == ["…", "12", "items", "12", "ran"]
    assert not any("item:3" in ln for ln in lines)
    doc = as_json(runs(project, "show", "--step", "each", "--json"))
    assert len(doc["steps"][0]["units"]) == 12
