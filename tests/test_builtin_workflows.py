"""The built-in workflows and their commands (hunt, audit, explain, diff, ci, fix, review-pr),
end to end: real `lok` processes, a real git repository, a stub `gh`, test backends that
log every call, and a loopback LLM server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from tests.lokrun import BUILTINS_OFF, StubWorld, entry, lok, write
from tests.servers.llm import LLMServer

SYNTH_MARK = "Merge them into one list of findings"
FINDINGS = """1. Division by zero in ratio() (src/calc.py:5)
   ratio divides by b without checking it; guard b == 0.
2. **Unbounded recursion in fact()** (src/calc.py:8)
   fact never stops for negative n.
3. Existing crash on empty input (src/calc.py:2)
   already reported.
"""


class Project(StubWorld):
    """A temporary git repository with lok.toml, a gh stub world, and call logs."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, root.parent)

    def lok(self, *args: str, input: str | None = None) -> Result:
        """`lok -C ROOT ARGS` in-process (stdout and stderr apart), with the stub gh on PATH."""
        return CliRunner().invoke(entry, ["-C", str(self.root), *args], input=input, env=self.env)

    def set_gh(self, data: dict[str, Any]) -> None:
        (self.gh_dir / "data.json").write_text(json.dumps(data))


def _rule(rule: dict[str, str]) -> str:
    return "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in rule.items()) + " }"


def config(log: Path, extra: str = "", default: str = 'backend = "t"') -> str:
    rules = [
        {"contains": SYNTH_MARK, "reply": FINDINGS},
        {
            "contains": "Merge them into one prioritised report",
            "reply": "1. [high] Shell injection in run()",
        },
        {
            "contains": "Propose a fix for GitHub issue",
            "reply": "Root cause: ratio divides by zero.",
        },
        {"contains": "These CI checks failed", "reply": "The test_ratio test fails: guard b == 0."},
        {"contains": "Review this diff", "reply": "Looks good; one nit at src/calc.py:5."},
        {"contains": "Review pull request", "reply": "Critical: none.\nVerdict: approve"},
        {"contains": "Explain this codebase", "reply": "A tiny calculator."},
    ]
    return f"""
[defaults]
{default}

[backends.t]
type = "test"
reply = "[{{name}}] finding"
log_file = {json.dumps(str(log))}
rules = [{", ".join(_rule(r) for r in rules)}]

[backends.u]
type = "test"
reply = "[{{name}}] other view"
log_file = {json.dumps(str(log))}
{extra}
"""


@pytest.fixture
def proj(tmp_path: Path) -> Project:
    root = tmp_path / "repo"
    root.mkdir()
    p = Project(root)
    write(root, "lok.toml", config(p.log))
    write(
        root,
        "src/calc.py",
        """
        def first(items):
            return items[0]

        def ratio(a, b):
            return a / b

        def fact(n):
            return n * fact(n - 1)
        """,
    )
    write(root, "README.md", "# calc\nA tiny calculator.\n")
    write(root, ".gitignore", ".lok/\n")
    p.set_gh(
        {
            "repo": "acme/calc",
            "labels": ["bug"],
            "issues": {
                "3": {
                    "number": 3,
                    "title": "Existing crash on empty input",
                    "body": "",
                    "labels": [],
                    "state": "OPEN",
                },
                "12": {
                    "number": 12,
                    "title": "ratio() crashes",
                    "state": "OPEN",
                    "body": "ZeroDivisionError at src/calc.py:5 when b is 0",
                    "labels": [],
                },
            },
            "pulls": {
                "7": {
                    "number": 7,
                    "title": "Add ratio",
                    "body": "Adds ratio()",
                    "author": {"login": "ann"},
                    "state": "OPEN",
                    "baseRefName": "main",
                    "headRefName": "ratio",
                    "additions": 2,
                    "deletions": 0,
                    "changedFiles": 1,
                    "diff": "diff --git a/src/calc.py b/src/calc.py\n+def ratio(a, b):\n",
                    "checks": [
                        {
                            "name": "lint",
                            "state": "SUCCESS",
                            "bucket": "pass",
                            "link": "https://github.com/acme/calc/actions/runs/40/job/1",
                        },
                        {
                            "name": "test (3.11)",
                            "state": "FAILURE",
                            "bucket": "fail",
                            "link": "https://github.com/acme/calc/actions/runs/41/job/2",
                        },
                        {
                            "name": "test (3.12)",
                            "state": "FAILURE",
                            "bucket": "fail",
                            "link": "https://github.com/acme/calc/actions/runs/41/job/3",
                        },
                    ],
                },
                "8": {
                    "number": 8,
                    "title": "Docs",
                    "body": "",
                    "diff": "",
                    "checks": [
                        {
                            "name": "lint",
                            "state": "SUCCESS",
                            "bucket": "pass",
                            "link": "https://github.com/acme/calc/actions/runs/50/job/1",
                        }
                    ],
                },
            },
            "runs": {"41": "FAILED tests/test_calc.py::test_ratio - ZeroDivisionError"},
        }
    )
    p.git("init", "-q", "-b", "main")
    p.git("add", "-A")
    p.git("commit", "-q", "-m", "init")
    return p


# -- hunt ----------------------------------------------------------------------


def test_hunt_asks_three_hunts_and_a_synthesis_and_a_rerun_asks_nothing(proj: Project) -> None:
    first = lok(proj.root, "hunt", env=proj.env)  # the real executable, once
    assert first.returncode == 0, first.stderr
    assert "Division by zero in ratio()" in first.stdout
    assert "=== synthesize (t) ===" in first.stdout
    calls = proj.calls()
    assert len(calls) == 4
    hunts = [c for c in calls if SYNTH_MARK not in c["prompt"]]
    assert len(hunts) == 3
    assert all("def ratio(a, b):" in c["prompt"] for c in hunts)
    assert all("src/calc.py" in c["prompt"] for c in hunts)
    again = proj.lok("hunt")
    assert again.exit_code == 0, again.stderr
    assert len(proj.calls()) == 4
    assert "Division by zero in ratio()" in again.stdout


def test_hunt_asks_again_only_when_a_source_file_changes(proj: Project) -> None:
    assert proj.lok("hunt").exit_code == 0
    (proj.root / "README.md").write_text("# calc\nNow with docs.\n")
    assert proj.lok("hunt").exit_code == 0
    assert len(proj.calls()) == 4
    with open(proj.root / "src/calc.py", "a") as fh:
        fh.write("\ndef unused():\n    pass\n")
    assert proj.lok("hunt").exit_code == 0
    calls = proj.calls()
    # the three hunts see the new code; their answers did not change, so the
    # synthesis below them is reused (early cutoff)
    assert len(calls) == 7
    assert all("def unused():" in c["prompt"] for c in calls[4:])


def test_hunt_runs_the_prompts_of_tasks_hunt_in_lok_toml(proj: Project) -> None:
    with open(proj.root / "lok.toml", "a") as fh:
        fh.write(
            '\n[tasks.hunt]\nbackends = ["u"]\n\n[[tasks.hunt.prompts]]\nname = "n+1"\n'
            'prompt = "Find N+1 queries {{ not a template }}"\n'
        )
    done = proj.lok("hunt", "--json")
    assert done.exit_code == 0, done.stderr
    doc = json.loads(done.stdout)
    names = [s["name"] for s in doc["steps"]]
    assert names == ["code", "hunt-n-1", "synthesize"]
    calls = proj.calls()
    assert [c["name"] for c in calls] == ["u", "u"]
    assert "Find N+1 queries {{ not a template }}" in calls[0]["prompt"]


def test_hunt_with_two_backends_asks_both_and_merges_once(proj: Project) -> None:
    done = proj.lok("hunt", "-b", "t, u")
    assert done.exit_code == 0, done.stderr
    calls = proj.calls()
    per_backend = {n: sum(1 for c in calls if c["name"] == n) for n in ("t", "u")}
    # three hunts on both backends, a synthesis of each pair, then the final merge on t
    assert per_backend["u"] == 3
    assert per_backend["t"] == 3 + 3 + 1
    assert len(proj.lok("hunt", "-b", "t,u").stderr) > 0
    assert len(proj.calls()) == len(calls)


def test_hunt_runs_its_three_hunts_together_unless_parallel_is_false(proj: Project) -> None:
    together = proj.lok("hunt")
    assert together.exit_code == 0, together.stderr
    assert "[parallel] Running 3 steps in parallel" in together.stderr
    config = (proj.root / "lok.toml").read_text()
    config = config.replace("[defaults]\n", "[defaults]\nparallel = false\n")
    (proj.root / "lok.toml").write_text(config)
    one_by_one = proj.lok("hunt", "--force")
    assert one_by_one.exit_code == 0, one_by_one.stderr
    assert "[parallel] 3 steps ready, up to 1 at a time" in one_by_one.stderr


def test_hunt_with_an_unknown_backend_is_bad_input(proj: Project) -> None:
    done = proj.lok("hunt", "-b", "t,nope")
    assert done.exit_code == 2
    assert "backend 'nope' is not configured" in done.stderr
    assert done.stdout == ""
    assert proj.calls() == []


@pytest.mark.slow
def test_hunt_issues_files_each_new_finding_once(proj: Project) -> None:
    done = proj.lok("hunt", "--issues", "-y", "--json")
    assert done.exit_code == 0, done.stderr
    doc = json.loads(done.stdout)
    statuses = {i["title"]: i["status"] for i in doc["issues"]}
    assert statuses == {
        "Division by zero in ratio() (src/calc.py:5)": "created",
        "Unbounded recursion in fact() (src/calc.py:8)": "created",
        "Existing crash on empty input (src/calc.py:2)": "skipped",
    }
    issues = proj.gh_data()["issues"]
    created = [i for n, i in issues.items() if n not in ("3", "12")]
    assert sorted(i["title"] for i in created) == [
        "Division by zero in ratio() (src/calc.py:5)",
        "Unbounded recursion in fact() (src/calc.py:8)",
    ]
    body = next(i["body"] for i in created if i["title"].startswith("Division"))
    assert body.startswith("Found by `lok hunt`:")
    assert "guard b == 0" in body
    assert body.endswith("*Backend: t*")
    assert all(i["labels"] == [{"name": "bug"}] for i in created)
    again = proj.lok("hunt", "--issues", "-y", "--json")
    assert {i["status"] for i in json.loads(again.stdout)["issues"]} == {"skipped"}
    creates = [a for a in proj.gh_calls() if a[:2] == ["issue", "create"]]
    assert len(creates) == 2


def test_hunt_issues_asks_first_and_files_nothing_on_no(proj: Project) -> None:
    done = proj.lok("hunt", "--issues", input="n\n")
    assert done.exit_code == 0, done.stderr
    assert "1. Division by zero in ratio() (src/calc.py:5)" in done.stdout
    assert "Create these issues?" in done.stderr
    assert "Aborted" in done.stdout
    assert not [a for a in proj.gh_calls() if a[:2] == ["issue", "create"]]


@pytest.mark.slow
def test_hunt_issues_files_without_the_label_when_the_repo_lacks_it(proj: Project) -> None:
    data = proj.gh_data()
    data["labels"] = []
    proj.set_gh(data)
    done = proj.lok("hunt", "--issues", "-y")
    assert done.exit_code == 0, done.stderr
    assert "Created 2 issue(s), skipped 1." in done.stdout
    creates = [a for a in proj.gh_calls() if a[:2] == ["issue", "create"]]
    assert len(creates) == 4 and "--label" not in creates[-1]


# -- audit, explain --------------------------------------------------------------


def test_audit_reports_and_a_rerun_asks_nothing(proj: Project) -> None:
    done = proj.lok("audit")
    assert done.exit_code == 0, done.stderr
    assert "1. [high] Shell injection in run()" in done.stdout
    assert len(proj.calls()) == 4
    assert any("injection risks" in c["prompt"] for c in proj.calls())
    assert proj.lok("audit").exit_code == 0
    assert len(proj.calls()) == 4


def test_explain_reads_readme_manifests_and_layout(proj: Project) -> None:
    write(proj.root, "pyproject.toml", '[project]\nname = "calc"\n')
    done = proj.lok("explain", "-f", "error handling")
    assert done.exit_code == 0, done.stderr
    assert "A tiny calculator." in done.stdout
    (prompt,) = [c["prompt"] for c in proj.calls()]
    assert "=== README.md ===" in prompt
    assert "=== pyproject.toml ===" in prompt
    assert "src/calc.py" in prompt
    assert "Focus on: error handling" in prompt
    assert "Detected stack: python" in prompt
    assert proj.lok("explain", "-f", "error handling").exit_code == 0
    assert len(proj.calls()) == 1
    (proj.root / "README.md").write_text("# calc\nChanged.\n")
    assert proj.lok("explain", "-f", "error handling").exit_code == 0
    assert len(proj.calls()) == 2


def test_builtin_workflows_work_with_auto_and_no_default_backend(proj: Project) -> None:
    write(proj.root, "lok.toml", config(proj.log, extra="\n" + BUILTINS_OFF, default=""))
    done = proj.lok("explain")
    assert done.exit_code == 0, done.stderr
    assert [c["name"] for c in proj.calls()] == ["t"]


def test_explain_against_a_loopback_openai_server_asks_once(proj: Project) -> None:
    with LLMServer() as server:
        write(
            proj.root,
            "lok.toml",
            f'[defaults]\nbackend = "local"\n\n[backends.local]\ntype = "openai"\n'
            f'url = "{server.url}/v1"\nmodel = "m"\n',
        )
        first = proj.lok("explain", "--json")
        assert first.exit_code == 0, first.stderr
        assert len(server.model_calls()) == 1
        doc = json.loads(first.stdout)
        assert [s["status"] for s in doc["steps"]][-1] == "ran"
        second = proj.lok("explain", "--json")
        assert second.exit_code == 0, second.stderr
        assert len(server.model_calls()) == 1
        assert json.loads(second.stdout)["steps"][-1]["status"] == "reused"


def test_a_project_workflow_overrides_the_builtin_for_the_command(proj: Project) -> None:
    write(
        proj.root,
        ".lok/workflows/explain.toml",
        """
        name = "explain"
        extends = "explain"

        [[steps]]
        name = "explain"
        depends_on = ["gather-readme"]
        prompt = "Explain this codebase in one line: {{ steps.gather-readme.output }}"
        """,
    )
    done = proj.lok("explain")
    assert done.exit_code == 0, done.stderr
    (call,) = proj.calls()
    assert call["prompt"].startswith("Explain this codebase in one line: === README.md ===")


# -- diff -----------------------------------------------------------------------


def test_diff_reviews_staged_changes_by_default(proj: Project) -> None:
    (proj.root / "src/calc.py").write_text("def ratio(a, b):\n    return a / b if b else 0\n")
    proj.git("add", "src/calc.py")
    (proj.root / "README.md").write_text("unstaged change\n")
    done = proj.lok("diff")
    assert done.exit_code == 0, done.stderr
    assert "Looks good; one nit" in done.stdout
    (prompt,) = [c["prompt"] for c in proj.calls()]
    assert "return a / b if b else 0" in prompt
    assert "unstaged change" not in prompt
    assert proj.lok("diff").exit_code == 0
    assert len(proj.calls()) == 1


def test_diff_unstaged_and_a_range(proj: Project) -> None:
    (proj.root / "README.md").write_text("unstaged change\n")
    assert proj.lok("diff", "--unstaged").exit_code == 0
    assert "unstaged change" in proj.calls()[-1]["prompt"]
    proj.git("commit", "-qam", "docs")
    done = proj.lok("diff", "HEAD~1..HEAD", "--json")
    assert done.exit_code == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["added"] == 1 and doc["removed"] == 2
    assert [s["name"] for s in doc["steps"]] == ["get-diff", "review"]
    assert len(proj.calls()) == 1  # the same diff text: the review is reused


def test_diff_with_nothing_staged_asks_nothing(proj: Project) -> None:
    done = proj.lok("diff")
    assert done.exit_code == 0, done.stderr
    assert "No changes to review." in done.stdout
    assert proj.calls() == []


def test_lok_run_diff_takes_the_original_arguments(proj: Project) -> None:
    (proj.root / "README.md").write_text("unstaged change\n")
    done = proj.lok("run", "diff", "unstaged=true")
    assert done.exit_code == 0, done.stderr
    assert "unstaged change" in proj.calls()[-1]["prompt"]


# -- review-pr, fix, ci (with the gh stub) -----------------------------------------


@pytest.mark.slow
def test_review_pr_reviews_and_comments_once(proj: Project) -> None:
    done = proj.lok("run", "review-pr", "7", "comment=true")
    assert done.exit_code == 0, done.stderr
    (prompt,) = [c["prompt"] for c in proj.calls()]
    assert "Review pull request #7: Add ratio" in prompt
    assert "Author: ann. Branch: ratio into main. +2 -0 in 1 file(s)." in prompt
    assert "+def ratio(a, b):" in prompt
    comments = proj.gh_data()["comments"]
    assert comments == [
        {
            "on": "pull/7",
            "body": "## Review by lok (T)\n\nCritical: none.\nVerdict: approve\n",
        }
    ]
    again = proj.lok("run", "review-pr", "7", "comment=true")
    assert again.exit_code == 0, again.stderr
    assert len(proj.calls()) == 1
    assert len(proj.gh_data()["comments"]) == 1


def test_fix_proposes_from_the_issue_and_the_code_it_names(proj: Project) -> None:
    done = proj.lok("fix", "#12")
    assert done.exit_code == 0, done.stderr
    assert "Issue #12: ratio() crashes" in done.stdout
    assert "Root cause: ratio divides by zero." in done.stdout
    assert "No files were changed." in done.stdout
    (prompt,) = [c["prompt"] for c in proj.calls()]
    assert ">>>   5|     return a / b" in prompt
    assert "comments" not in proj.gh_data()
    posted = proj.lok("fix", "https://github.com/acme/calc/issues/12", "--comment")
    assert posted.exit_code == 0, posted.stderr
    assert len(proj.calls()) == 1
    (comment,) = proj.gh_data()["comments"]
    assert comment["on"] == "issues/12"
    assert "Root cause: ratio divides by zero." in comment["body"]


def test_fix_of_a_missing_issue_fails_with_ghs_message(proj: Project) -> None:
    done = proj.lok("fix", "99")
    assert done.exit_code == 1
    assert "Could not resolve to an issue" in done.stdout + done.stderr
    assert proj.calls() == []


def test_ci_fetches_each_failed_run_once_and_asks_for_the_root_cause(proj: Project) -> None:
    done = proj.lok("ci", "7")
    assert done.exit_code == 0, done.stderr
    assert "✓ lint (SUCCESS)" in done.stdout
    assert "✗ test (3.11) (FAILURE)" in done.stdout
    assert "The test_ratio test fails" in done.stdout
    runs = [a for a in proj.gh_calls() if a[:2] == ["run", "view"]]
    assert runs == [["run", "view", "41", "--log-failed"]]
    (prompt,) = [c["prompt"] for c in proj.calls()]
    assert "=== test (3.11) ===" in prompt and "=== test (3.12) ===" in prompt
    assert "ZeroDivisionError" in prompt
    assert proj.lok("ci", "7").exit_code == 0
    assert len(proj.calls()) == 1


def test_ci_with_every_check_green_asks_nothing(proj: Project) -> None:
    done = proj.lok("ci", "8", "--json")
    assert done.exit_code == 0, done.stderr
    doc = json.loads(done.stdout)
    assert {s["name"]: s["status"] for s in doc["steps"]}["analyze"] == "skipped"
    assert proj.calls() == []
    human = proj.lok("ci", "8")
    assert "No failed checks to analyze." in human.stdout


@pytest.mark.parametrize("command", [("ci", "7"), ("fix", "12")])
def test_gh_commands_without_gh_say_how_to_get_it(proj: Project, command: tuple[str, ...]) -> None:
    env = {**proj.env, "PATH": "/usr/bin:/bin"}
    done = lok(proj.root, *command, env=env)
    assert done.returncode == 2
    assert "needs the GitHub CLI (gh)" in done.stderr
    assert "Hint: install it from https://cli.github.com" in done.stderr


def test_a_reference_that_is_not_an_issue_is_bad_input(proj: Project) -> None:
    done = proj.lok("fix", "twelve")
    assert done.exit_code == 2
    assert "Error: 'twelve' is not an issue" in done.stderr
    assert proj.gh_calls() == []
