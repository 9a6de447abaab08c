"""`lok suggest`: the configured backends ranked for a task, Ollama included."""

from __future__ import annotations

from pathlib import Path

from lokfile.agents.suggest import classify, rank
from lokfile.model import BackendConfig
from tests.test_agents_common import configure, json_of, lok, project

__all__ = ["project"]  # fixtures used here


def cfg(name: str, kind: str | None = None) -> BackendConfig:
    return BackendConfig(name=name, type=kind or name)


def test_the_originals_three_profiles_keep_their_order() -> None:
    trio = [cfg("claude"), cfg("codex"), cfg("gemini")]
    scored = [(r.name, r.score) for r in rank("find N+1 query patterns", trio)[1]]
    # the original's scores, then gemini with a token General score instead of dropped
    assert scored == [("codex", 10), ("claude", 8), ("gemini", 1)]
    assert rank("security audit of auth", trio)[1][0].name == "gemini"
    assert [r.name for r in rank("hello there", trio)[1]] == ["claude", "gemini", "codex"]


def test_a_task_without_keywords_is_general() -> None:
    assert classify("hello there") == ["General"]
    assert classify("Remove the SLOW unused code") == ["DeadCode", "Performance"]


def test_ollama_ranks_first_for_private_work_and_every_type_has_a_profile() -> None:
    every = [cfg(t) for t in ("claude", "codex", "gemini", "ollama", "openai", "anthropic")]
    every += [cfg("local"), cfg("tool", "command")]
    categories, ranked = rank("summarize this confidential contract offline", every)
    assert categories == ["Writing", "Private"]
    assert ranked[0].name == "ollama" and ranked[0].matched == ("Writing", "Private")
    assert {r.name for r in ranked} == {b.name for b in every}


def test_suggest_ranks_only_the_configured_enabled_backends(project: Path) -> None:
    configure(
        project,
        '[backends.home]\ntype = "ollama"\nurl = "http://127.0.0.1:9"\n\n'
        '[backends.api]\ntype = "openai"\nurl = "http://127.0.0.1:9/v1"\n\n'
        '[backends.gone]\ntype = "anthropic"\nenabled = false\n',
    )
    result = lok("suggest", "--json", "keep", "this", "private")
    assert result.exit_code == 0, result.stderr
    doc = json_of(result)
    assert doc["task"] == "keep this private"
    assert doc["categories"] == ["Private"]
    assert [(b["name"], b["type"]) for b in doc["backends"]] == [
        ("home", "ollama"),
        ("api", "openai"),
    ]
    assert doc["backends"][0]["score"] > doc["backends"][1]["score"]


def test_suggest_prints_a_numbered_ranking_and_b_narrows_it(project: Path) -> None:
    configure(project, '[backends.home]\ntype = "ollama"\n\n[backends.cx]\ntype = "codex"\n')
    result = lok("suggest", "-b", "cx", "optimize the slow loop")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        "Task categories: Performance\n\nRecommended backends:\n"
        "  1. cx (codex, score 8) - fast, focused code analysis inside the repository\n"
    )
    assert result.stderr == ""


def test_suggest_with_an_unknown_backend_is_bad_input(project: Path) -> None:
    configure(project, '[backends.home]\ntype = "ollama"\n')
    result = lok("suggest", "-b", "nope", "anything")
    assert result.exit_code == 2
    assert "Error: -b: backend 'nope' is not configured (configured: " in result.stderr
