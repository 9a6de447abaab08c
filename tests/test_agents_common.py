"""Shared helpers for the multi-LLM mode tests, and what the modes share.

The other `test_agents_*` files import `lok`, `project`, `configure` and
`calls` from here.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from lokfile.agents.common import lit, split_names
from lokfile.templates.render import Context, render_prompt
from tests.lokrun import BUILTINS_OFF, entry
from tests.servers.llm import LLMServer


def lok(*args: str) -> Result:
    """Run `lok ARGS` in-process; stdout and stderr stay apart."""
    return CliRunner().invoke(entry, list(args))


def json_of(result: Result) -> dict[str, Any]:
    """The one JSON document on stdout."""
    try:
        doc: dict[str, Any] = json.loads(result.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"not JSON:\n{result.stdout}\n{result.stderr}") from exc
    return doc


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "proj"
    (root / ".lok").mkdir(parents=True)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))  # no user config
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer() as srv:
        yield srv


def configure(root: Path, body: str) -> None:
    """lok.toml: the built-in backends off, then `body`."""
    (root / "lok.toml").write_text(BUILTINS_OFF + textwrap.dedent(body))


def calls(root: Path, log: str = "calls.jsonl") -> list[dict[str, Any]]:
    """Every call the test backends logged: name, prompt, start time."""
    path = root / log
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def toml_value(value: Any) -> str:
    """A TOML value: strings as basic strings (JSON escapes are valid TOML), inline tables."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


def fake_backend(name: str, **keys: Any) -> str:
    """A `[backends.NAME]` table of type test that logs to calls.jsonl."""
    lines = [f"[backends.{name}]", 'type = "test"', 'log_file = "calls.jsonl"']
    for key, value in keys.items():
        lines.append(f"{key} = {toml_value(value)}")
    return "\n".join(lines) + "\n\n"


# --------------------------------------------------------------------------
# What the modes share
# --------------------------------------------------------------------------


def test_lit_renders_any_text_back_exactly_even_template_syntax() -> None:
    for text in ["plain", "{{ steps.x.output }}", '{% raw %}"\\n{%', "a}b{c", "%}"]:
        assert render_prompt(lit(text), Context(steps={})) == text


def test_backend_names_split_on_commas_and_repeats_without_duplicates() -> None:
    assert split_names(("a, b", "c", "a", " ,")) == ["a", "b", "c"]


def test_without_b_only_usable_backends_take_part(project: Path) -> None:
    configure(
        project,
        fake_backend("alpha", reply="alpha here")
        + fake_backend("beta", reply="beta here")
        + '[backends.ghost]\ntype = "codex"\ncommand = "no-such-binary-lok-test"\n\n'
        + '[backends.off]\ntype = "test"\nenabled = false\n',
    )
    result = lok("conduct", "--json", "--conductor", "alpha", "What now?")
    # alpha answers nothing useful, so the run fails; what matters is who took part
    doc = json_of(result)
    assert doc["backends"] == ["beta"]
    assert "ghost" not in result.stderr.split("Conduct:")[1].splitlines()[0]


def test_a_mode_with_no_usable_backend_is_bad_input(project: Path) -> None:
    configure(project, '[backends.ghost]\ntype = "codex"\ncommand = "no-such-binary-lok-test"\n')
    result = lok("debate", "Tabs?")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Error: lok debate needs at least 2 backends (usable: none)" in result.stderr
    assert "Hint: name them with -b" in result.stderr
