"""`lok workflow list|show|validate` and `lok init`, through lok's real entry point."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from lokfile.config import load_config
from lokfile.project import Project
from lokfile.tomlfile import parse
from tests.lokrun import entry, original_fixtures

REPO = Path(__file__).resolve().parents[1]
BUILTINS = sorted((REPO / "workflows").glob("*.toml"))



def lok(*args: str) -> Result:
    return CliRunner().invoke(entry, list(args))


def _group(pattern: str, text: str) -> str:
    """The first group of `pattern`'s first match in `text` (which must match)."""
    found = re.search(pattern, text)
    assert found is not None, f"{pattern!r} not in {text!r}"
    return found.group(1)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project folder as the cwd, with user config and caches kept inside tmp."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "project"
    (root / ".lok" / "workflows").mkdir(parents=True)
    monkeypatch.chdir(root)
    return root


REVIEW = """
    name = "review"
    description = "Review the diff"
    [[steps]]
    name = "diff"
    shell = "git diff"
    sources = ["src/*.py"]
    [[steps]]
    name = "review"
    depends_on = ["diff"]
    backends = ["claude", "codex"]
    consensus = "vote"
    prompt = "Review: {{ steps.diff.output }}"
"""


# --------------------------------------------------------------------------
# validate
# --------------------------------------------------------------------------


def test_validate_accepts_the_originals_test_workflows(project: Path) -> None:
    paths = sorted(str(p) for p in original_fixtures().glob("*.toml"))
    assert len(paths) == 4
    result = lok("workflow", "validate", *paths)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "✓ test-conditionals: 6 steps",
        "✓ test-interpolation: 3 steps",
        "✓ test-parallel: 4 steps",
        "✓ test-retry: 2 steps",
    ]
    assert result.stderr == ""


@pytest.mark.parametrize("path", BUILTINS, ids=[p.stem for p in BUILTINS])
def test_validate_accepts_every_built_in_workflow(project: Path, path: Path) -> None:
    by_name = lok("workflow", "validate", path.stem)
    assert by_name.exit_code == 0, by_name.stderr
    assert re.fullmatch(r"✓ \S+: \d+ steps?\n", by_name.stdout)


def test_validate_reports_good_and_bad_together_and_exits_2(project: Path) -> None:
    write(project / ".lok/workflows/review.toml", REVIEW)
    write(project / ".lok/workflows/typo.toml", """
        name = "typo"
        [[steps]]
        name = "a"
        shell = "true"
        retries = "three"
    """)
    result = lok("workflow", "validate", "review", "typo")
    assert result.exit_code == 2
    assert result.stdout == "✓ review: 2 steps\n"
    assert result.stderr.splitlines() == [
        'Error: .lok/workflows/typo.toml:5: step \'a\': retries must be a non-negative '
        'integer, got "three"',
        "Hint: for example: retries = 3",
    ]


def test_validate_json_is_one_document_with_every_problem(project: Path) -> None:
    write(project / ".lok/workflows/two.toml", """
        name = "two"
        [[steps]]
        name = "a"
        depends-on = []
        shell = "true"
        [[steps]]
        name = "a"
        shell = "true"
    """)
    result = lok("workflow", "validate", "--json", "two")
    assert result.exit_code == 2
    assert result.stderr == ""
    doc = json.loads(result.stdout)
    assert doc["ok"] is False
    problems = doc["results"][0]["problems"]
    assert [(p["line"], p["message"]) for p in problems] == [
        (4, "unknown key 'depends-on' in step 'a' (did you mean 'depends_on'?)"),
        (7, "duplicate step name 'a' (first defined at line 2)"),
    ]
    assert all(p["file"] == ".lok/workflows/two.toml" for p in problems)
    # the close match is in the message; a hint saying it again would be noise
    assert [p["hint"] is None for p in problems] == [True, False]


def test_an_unknown_key_with_a_close_match_says_the_match_once(project: Path) -> None:
    write(project / ".lok/workflows/typo.toml", """
        name = "typo"
        [[steps]]
        name = "a"
        shel = "true"
        [[steps]]
        name = "b"
        shell = "true"
        depends-on = ["a"]
    """)
    result = lok("workflow", "validate", "typo")
    assert result.exit_code == 2
    for key, close in (("shel", "shell"), ("depends-on", "depends_on")):
        lines = [line for line in result.stdout.splitlines() + result.stderr.splitlines()
                 if f"'{key}'" in line]
        assert len(lines) == 1, lines
        assert lines[0].count(close) == 1, lines[0]
    write(project / ".lok/workflows/one.toml", 'name = "one"\n[[steps]]\nname = "a"\nshell = "true"\nsourcse = []\n')
    one = lok("run", "one")
    assert one.exit_code == 2
    assert one.stderr.splitlines() == [
        "Error: .lok/workflows/one.toml:5: unknown key 'sourcse' in step 'a' (did you mean 'sources'?)",
        "Hint: `lok workflow validate` checks a file without running it",
    ]


def test_validate_of_an_unknown_name_suggests_the_close_one(project: Path) -> None:
    write(project / ".lok/workflows/review.toml", REVIEW)
    result = lok("workflow", "validate", "reveiw")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == (
        "Error: workflow 'reveiw' not found (did you mean 'review'?)")
    assert result.stderr.splitlines()[1].startswith("Hint: looked in ")


# --------------------------------------------------------------------------
# list and show
# --------------------------------------------------------------------------


def test_list_shows_origin_description_and_broken_files(project: Path, tmp_path: Path) -> None:
    write(project / ".lok/workflows/review.toml", REVIEW)
    write(project / ".lok/workflows/broken.toml", 'name = "broken"\n[[steps]]\nname = "a"\n')
    write(tmp_path / "xdg/lok/workflows/review.toml", 'name = "review"\n')
    write(tmp_path / "xdg/lok/workflows/mine.toml", """
        name = "mine"
        description = "a user workflow"
        [[steps]]
        name = "a"
        shell = "true"
    """)
    result = lok("workflow", "list")
    assert result.exit_code == 0, result.stderr
    out = re.sub(r" +\(", "  (", result.stdout)  # names are padded to one column
    assert "broken  (project)\n  broken: .lok/workflows/broken.toml:2: step 'a' has neither" in out
    assert "review  (project, overrides user)\n  Review the diff\n" in out
    assert "mine  (user)\n  a user workflow\n" in out
    doc = json.loads(lok("workflow", "list", "--json").stdout)
    entries = {w["name"]: w for w in doc["workflows"]}
    assert entries["review"]["origin"] == "project"
    assert entries["review"]["overrides"] == ["user"]
    assert entries["review"]["steps"] == 2
    assert entries["mine"]["origin"] == "user"
    assert "neither shell nor prompt" in entries["broken"]["error"]


def test_show_prints_the_resolved_steps_after_extends(project: Path) -> None:
    write(project / ".lok/workflows/base.toml", REVIEW)
    write(project / ".lok/workflows/strict.toml", """
        name = "strict"
        extends = "base"
        timeout = "10m"
        [[steps]]
        name = "lint"
        depends_on = ["diff"]
        shell = "ruff check"
    """)
    doc = json.loads(lok("workflow", "show", "strict", "--json").stdout)
    assert doc["name"] == "strict"
    assert doc["description"] == "Review the diff"
    assert [s["name"] for s in doc["steps"]] == ["diff", "review", "lint"]
    review = doc["steps"][1]
    assert (review["kind"], review["backends"], review["depends_on"], review["consensus"]) == (
        "llm", ["claude", "codex"], ["diff"], "vote")
    assert doc["steps"][0]["sources"] == ["src/*.py"]
    assert {s["timeout_ms"] for s in doc["steps"]} == {600_000}
    assert [Path(f).name for f in doc["files"]] == ["strict.toml", "base.toml"]
    text = lok("workflow", "show", "strict")
    assert text.exit_code == 0
    assert "  2. review  [llm: claude, codex] Review: {{ steps.diff.output }}" in text.stdout
    assert "       depends_on: diff" in text.stdout
    assert "       consensus: vote" in text.stdout


def test_show_of_a_path_works_from_another_directory_with_dash_c(
    project: Path, tmp_path: Path
) -> None:
    write(project / "flows/x.toml", 'name = "x"\n[[steps]]\nname = "a"\nshell = "true"\n')
    os.chdir(tmp_path)
    result = lok("-C", str(project), "workflow", "show", "flows/x.toml", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["origin"] == "path"


# --------------------------------------------------------------------------
# init
# --------------------------------------------------------------------------


def test_init_writes_config_example_and_gitignore(project: Path) -> None:
    (project / ".lok" / "workflows").rmdir()
    result = lok("init")
    assert result.exit_code == 0, result.stderr
    assert "wrote lok.toml" in result.stdout
    assert (project / ".lok/.gitignore").read_text().splitlines()[-4:] == [
        "runs/", "state/", "lok.db", "lok.db-*"]
    validated = lok("workflow", "validate", "example")
    assert validated.exit_code == 0, validated.stderr
    assert validated.stdout == "✓ example: 3 steps\n"


def test_init_refuses_to_overwrite_without_force(project: Path) -> None:
    write(project / "lok.toml", "[defaults]\njobs = 3\n")
    result = lok("init")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "Error: lok.toml already exists", "Hint: lok init --force overwrites it"]
    assert (project / "lok.toml").read_text() == "[defaults]\njobs = 3\n"
    assert not (project / ".lok/workflows/example.toml").exists()
    forced = lok("init", "--force")
    assert forced.exit_code == 0
    assert "jobs = 3" not in (project / "lok.toml").read_text()


def test_init_keeps_an_existing_gitignore_and_adds_what_is_missing(project: Path) -> None:
    write(project / ".lok/.gitignore", "scratch/\nruns/\n")
    result = lok("init")
    assert result.exit_code == 0, result.stderr
    assert "updated .lok/.gitignore" in result.stdout
    assert (project / ".lok/.gitignore").read_text() == (
        "scratch/\nruns/\n.gitignore\ntmp/\nstate/\nlok.db\nlok.db-*\n"
    )
    assert lok("init", "--force").stdout.count(".gitignore") == 0


def test_inits_lok_toml_changes_nothing_and_shows_the_real_defaults(project: Path) -> None:
    assert lok("init").exit_code == 0
    text = (project / "lok.toml").read_text()
    written = load_config(Project(project), user_config_dir=project / "nouser")
    defaults = load_config(Project(project / "nowhere"), user_config_dir=project / "nouser")
    assert written.defaults == defaults.defaults
    assert written.backends == defaults.backends
    # each commented `# key = value` under a live [section] is that section's real default
    section: list[str] | None = None
    checked = 0
    for line in text.splitlines():
        header = re.match(r"^\[([a-z.]+)\]", line)
        if header:
            section = header.group(1).split(".")
            continue
        if line.startswith("# ["):
            section = None  # an example section: not a default
        found = re.match(r"^# ([a-z_]+ = .*?)(\s+#.*)?$", line)
        if section is None or not found:
            continue
        key, value = next(iter(parse(found.group(1)).items()))
        table: Any = _raw_defaults()
        for part in section:
            table = table[part]
        assert table[key] == value, f"[{'.'.join(section)}] {key}"
        checked += 1
    assert checked >= 15


def _raw_defaults() -> dict[str, Any]:
    from lokfile.config.layers import BUILTIN

    return BUILTIN


@pytest.mark.slow
def test_the_example_runs_offline_and_reuses_everything_the_second_time(project: Path) -> None:
    assert lok("init", "--force").exit_code == 0
    env = {**os.environ}

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "lokfile", "run", "--json", "example"],
                              cwd=project, env=env, capture_output=True, text=True, timeout=120)

    first = run()
    assert first.returncode == 0, first.stderr
    second = run()
    assert second.returncode == 0, second.stderr
    steps = {s["name"]: s["status"] for s in json.loads(second.stdout)["steps"]}
    assert steps["files"] == "reused" and steps["lines"] == "reused"


def test_inits_lok_toml_has_a_commented_example_of_every_backend_type() -> None:
    from lokfile.backends import registry
    from lokfile.cli.init_files import LOK_TOML
    from lokfile.config import parse_config_text

    for kind in registry.names():
        assert f'type = "{kind}"' in LOK_TOML, kind
    # the Ollama address is given as `url`, as the README does
    assert '# url = "http://localhost:11434"' in LOK_TOML
    assert 'command = "http' not in LOK_TOML
    # every commented example table, uncommented, is a valid config of its type
    blocks = re.findall(r"^# (\[backends\.\w+\]\n(?:# \w+ = .*\n)+)", LOK_TOML, re.M)
    examples = {_group(r'type = "(\w+)"', b): b for b in blocks}
    assert set(examples) == {"openai", "anthropic", "command", "test"}
    for kind, block in examples.items():
        text = "\n".join(line.removeprefix("# ") for line in block.splitlines())
        config = parse_config_text(text)
        name = _group(r"^\[backends\.(\w+)\]", text)
        assert config.backends[name].type == kind
    assert "[backends.local]" in LOK_TOML


def test_the_readme_shows_a_local_backend_table() -> None:
    readme = (REPO / "README.md").read_text()
    assert re.search(r'```toml\n(?:.*\n)*?\[backends\.\w+\]\ntype = "local"', readme)


def test_validate_reports_an_undefined_template_name_and_run_refuses_it_at_load(
    project: Path,
) -> None:
    write(project / ".lok/workflows/typo.toml", """
        name = "typo"
        [[steps]]
        name = "a"
        shell = "touch ran-a"
        [[steps]]
        name = "b"
        depends_on = ["a"]
        shell = '''
        echo first
        echo {{ stesp.a.output }}
        '''
    """)
    result = lok("workflow", "validate", "typo")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == (
        "Error: .lok/workflows/typo.toml:10: step 'b': shell: undefined name 'stesp' "
        "(did you mean 'steps'?)")
    assert not (project / "ran-a").exists()
    ran = lok("run", "typo")
    assert ran.exit_code == 2
    assert ran.stderr.splitlines()[0] == result.stderr.splitlines()[0]
    assert not (project / "ran-a").exists()
