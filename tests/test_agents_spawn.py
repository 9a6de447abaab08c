"""`lok spawn`: a plan, subtasks in parallel on the best-suited backends, a summary."""

from __future__ import annotations

import json
from pathlib import Path

from lokfile.agents.spawn import loose_plan
from tests.servers.llm import LLMServer
from tests.test_agents_common import calls, configure, fake_backend, json_of, lok, project, server

__all__ = ["project", "server"]  # fixtures used here

PLAN = {
    "subtasks": [
        {"name": "Dead Code", "task": "find unused functions"},
        {"name": "tests", "task": "list untested modules"},
        {"name": "docs", "task": "list undocumented commands"},
    ]
}
PLANNER_RULES = [
    {"contains": "Split the task", "reply": "Plan:\n```json\n" + json.dumps(PLAN) + "\n```"},
    {"contains": "Combine their results", "reply": "SUMMARY of the three parts"},
]


def test_spawn_plans_runs_the_subtasks_at_once_and_summarises(project: Path) -> None:
    configure(
        project,
        fake_backend("boss", rules=PLANNER_RULES)
        + fake_backend("w1", reply="w1 did it", latency_ms=600)
        + fake_backend("w2", reply="w2 did it", latency_ms=600),
    )
    result = lok("spawn", "--json", "-b", "w1,w2", "--planner", "boss", "Tidy the repo")
    assert result.exit_code == 0, result.stderr
    doc = json_of(result)
    assert [a["name"] for a in doc["agents"]] == ["dead-code", "tests", "docs"]
    assert [a["backend"] for a in doc["agents"]] == ["w1", "w2", "w1"]  # ties spread the work
    assert [a["status"] for a in doc["agents"]] == ["ran", "ran", "ran"]
    assert doc["summary"] == "SUMMARY of the three parts"
    assert doc["planned_by"] == "boss" and len(doc["run_ids"]) == 2
    starts = [c["time"] for c in calls(project) if c["name"] in ("w1", "w2")]
    assert len(starts) == 3
    assert max(starts) - min(starts) < 0.45, f"subtasks did not run together: {starts}"
    summary_prompt = next(c["prompt"] for c in calls(project) if "Combine" in c["prompt"])
    assert "## tests: list untested modules\n\nw2 did it" in summary_prompt


def test_subtasks_go_to_the_backend_suggest_ranks_best_for_them(
    project: Path, server: LLMServer
) -> None:
    configure(
        project,
        f'[backends.home]\ntype = "ollama"\nurl = "{server.url}"\nmodel = "llama3.2"\n\n'
        + fake_backend("boss", rules=PLANNER_RULES)
        + fake_backend("generic", reply="generic answer"),
    )
    result = lok(
        "spawn", "--json", "-b", "home,generic", "--planner", "boss",
        "-a", "secret:summarize the confidential notes",
        "-a", "steps:list the release steps",
        "Prepare the release",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    doc = json_of(result)
    assert {a["name"]: a["backend"] for a in doc["agents"]} == {
        "secret": "home",
        "steps": "generic",
    }
    asked = [str(c.body) for c in server.model_calls()]
    assert len(asked) == 1 and "summarize the confidential notes" in asked[0]
    assert not any("Split the task" in c["prompt"] for c in calls(project))  # -a skips planning


def test_an_agent_without_a_name_is_bad_input(project: Path) -> None:
    configure(project, fake_backend("boss"))
    result = lok("spawn", "-b", "boss", "-a", "just a task", "Do it")
    assert result.exit_code == 2
    assert "Error: -a 'just a task': expected NAME:TASK" in result.stderr
    assert calls(project) == []


def test_a_plan_in_agent_lines_is_read_after_one_request_for_json(project: Path) -> None:
    lines = "AGENT: scan | scan the code\n  - **fix** | fix what the scan found"
    configure(project, fake_backend("boss", reply=lines))
    result = lok("spawn", "--json", "-b", "boss", "Repair the build")
    assert result.exit_code == 0, result.stderr
    doc = json_of(result)
    assert [(a["name"], a["task"]) for a in doc["agents"]] == [
        ("scan", "scan the code"),
        ("fix", "fix what the scan found"),
    ]
    assert sum("could not be used" in c["prompt"] for c in calls(project)) == 1


def test_a_planner_with_nothing_usable_fails_and_shows_what_it_said(project: Path) -> None:
    configure(project, fake_backend("boss", reply="I would rather not."))
    result = lok("spawn", "-b", "boss", "Repair the build")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "Error: the planner (boss) gave no usable subtasks; it said: 'I would rather not.'" in (
        result.stderr
    )
    assert "Hint: " in result.stderr
    # the plan's run exited 1: the history says failed, and why
    (run,) = json.loads(lok("runs", "list", "--json").stdout)["runs"]
    assert run["status"] == "failed"


def test_a_failed_subtask_fails_the_spawn_but_the_rest_and_the_summary_are_shown(
    project: Path,
) -> None:
    configure(
        project,
        fake_backend("boss", rules=PLANNER_RULES, reply="boss did it", fail_when="untested"),
    )
    result = lok("spawn", "-b", "boss", "-o", "report.md", "Tidy the repo")
    assert result.exit_code == 1
    assert "Error: subtask(s) failed: tests" in result.stderr
    report = (project / "report.md").read_text()
    assert "## dead-code (boss)\n\nboss did it" in report
    assert "## tests (boss)\n\n_failed: " in report
    assert "## Summary (boss)\n\nSUMMARY of the three parts" in report
    assert "✓ Report written to report.md" in result.stderr


def test_a_rerun_of_the_same_spawn_calls_no_backend(project: Path) -> None:
    configure(project, fake_backend("boss", rules=PLANNER_RULES, reply="done"))
    first = lok("spawn", "-b", "boss", "Tidy the repo")
    assert first.exit_code == 0, first.stderr
    made = len(calls(project))
    assert made == 1 + 3 + 1
    again = lok("spawn", "--json", "-b", "boss", "Tidy the repo")
    assert json_of(again)["calls"] == 0
    assert len(calls(project)) == made
    assert first.stdout.startswith("# Spawn: Tidy the repo\n")


def test_loose_plans_accept_arrays_bullets_and_the_originals_agent_lines() -> None:
    assert [s.task for s in loose_plan('[{"name": "a", "task": "x"}, "y"]')] == ["x", "y"]
    text = "1. **alpha**: do x\n- beta | do y\nAGENT: gamma | do z\nno plan here"
    assert [(s.name, s.task) for s in loose_plan(text)] == [
        ("alpha", "do x"),
        ("beta", "do y"),
        ("gamma", "do z"),
    ]
