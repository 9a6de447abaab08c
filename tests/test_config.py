"""lok.toml: built-in defaults < user < project < --config, merged key by key, checked in full."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lokfile.config import load_config, parse_config_text
from lokfile.errors import ConfigError
from lokfile.project import Project

# The original's own lok.toml: its defaults, with a different ollama model.
ORIGINAL_LOK_TOML = '''\
[defaults]
parallel = true
timeout = 300
# command_wrapper = "nix-shell --run '{cmd}'"

[conductor]
max_rounds = 5
max_tokens = 4096

[cache]
enabled = true
ttl_hours = 24

[backends.codex]
enabled = true
command = "codex"
args = ["exec", "--json", "-s", "read-only"]
skip_lines = 0

[backends.gemini]
enabled = true
command = "npx"
args = ["@google/gemini-cli"]
skip_lines = 1
timeout = 600

[backends.claude]
enabled = true
command = "claude"

[backends.ollama]
enabled = true
command = "http://localhost:11434"
model = "qwen3-coder-next:latest"

[tasks.hunt]
description = "Hunt for bugs"
backends = ["codex"]

[[tasks.hunt.prompts]]
name = "errors"
prompt = """
Find at most 5 error-handling bugs. Give file:line for each. Be concise.
"""

[[tasks.hunt.prompts]]
name = "perf"
prompt = "Find at most 5 performance issues. Give file:line for each. Be concise."

[[tasks.hunt.prompts]]
name = "dead-code"
prompt = "Find at most 5 pieces of dead code. Give file:line for each. Be concise."

[tasks.audit]
description = "Security audit"
backends = ["gemini"]

[[tasks.audit.prompts]]
name = "injection"
prompt = "Find at most 5 injection risks. Give file:line for each. Be concise."

[[tasks.audit.prompts]]
name = "auth"
prompt = "Find at most 5 auth problems. Give file:line for each. Be concise."

[[tasks.audit.prompts]]
name = "secrets"
prompt = "Find at most 5 leaked secrets. Give file:line for each. Be concise."
'''


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    root = tmp_path / "proj"
    root.mkdir()
    monkeypatch.chdir(root)
    return Project(root)


@pytest.fixture
def user(tmp_path: Path) -> Path:
    folder = tmp_path / "user"
    folder.mkdir()
    return folder


def error_text(exc: ConfigError) -> str:
    return "\n".join(exc.lines())


def test_without_files_the_originals_defaults_apply(project: Project, user: Path) -> None:
    config = load_config(project, user_config_dir=user)
    assert sorted(config.backends) == ["claude", "codex", "gemini", "local", "ollama"]
    assert config.backends["local"].type == "local"
    assert config.backends["codex"].args == ("exec", "--json", "-s", "read-only")
    gemini = config.backends["gemini"]
    assert (gemini.command, gemini.args, gemini.skip_lines, gemini.timeout_s) == (
        "npx", ("@google/gemini-cli",), 1, 600.0)
    ollama = config.backends["ollama"]
    assert (ollama.type, ollama.url, ollama.model) == (
        "ollama", "http://localhost:11434", "llama3.2")
    assert [p.name for p in config.tasks["hunt"].prompts] == ["errors", "perf", "dead-code"]
    assert [p.name for p in config.tasks["audit"].prompts] == ["injection", "auth", "secrets"]
    assert config.tasks["hunt"].backends == ("codex",)
    assert config.consensus.weights == {"claude": 2.0, "codex": 1.5, "gemini": 1.5, "ollama": 1.0}
    assert (config.defaults.timeout_s, config.cache.ttl_hours, config.conductor.max_tokens) == (
        300.0, 24.0, 4096)
    assert config.files == ()


def test_a_project_table_keeps_the_default_keys_it_does_not_set(
    project: Project, user: Path
) -> None:
    write(project.config_path, """
        [backends.ollama]
        model = "qwen2.5-coder:7b"
    """)
    config = load_config(project, user_config_dir=user)
    ollama = config.backends["ollama"]
    assert ollama.model == "qwen2.5-coder:7b"
    assert ollama.url == "http://localhost:11434"
    assert config.origins["backends.ollama.model"] == "lok.toml"
    assert config.origins["backends.ollama.url"] == "built-in"
    assert sorted(config.backends) == ["claude", "codex", "gemini", "local", "ollama"]


def test_the_originals_http_command_still_moves_the_ollama_address(
    project: Project, user: Path
) -> None:
    write(project.config_path, """
        [backends.ollama]
        command = "http://gpu-box:11434"
    """)
    ollama = load_config(project, user_config_dir=user).backends["ollama"]
    assert ollama.url == "http://gpu-box:11434"


def test_layers_merge_key_by_key_user_then_project_then_explicit(
    project: Project, user: Path, tmp_path: Path
) -> None:
    write(user / "lok.toml", """
        [defaults]
        timeout = 10
        jobs = 2
        [cache]
        salt = "user"
    """)
    write(project.config_path, """
        [defaults]
        timeout = "20s"
    """)
    explicit = write(tmp_path / "ci.toml", """
        [defaults]
        jobs = 4
    """)
    config = load_config(project, explicit, user_config_dir=user)
    assert config.defaults.timeout_s == 20.0
    assert config.defaults.jobs == 4
    assert config.cache.salt == "user"
    assert config.origins["defaults.timeout"] == "lok.toml"
    assert config.origins["defaults.jobs"] == str(explicit)
    assert config.origins["cache.salt"] == str(user / "lok.toml")
    assert config.files == (str(user / "lok.toml"), "lok.toml", str(explicit))


def test_an_explicit_config_must_exist(project: Project, user: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(project, Path("missing.toml"), user_config_dir=user)
    assert "missing.toml not found" in caught.value.message
    assert caught.value.hint


def test_the_originals_lok_toml_loads_unchanged(project: Project, user: Path) -> None:
    write(project.config_path, ORIGINAL_LOK_TOML)
    config = load_config(project, user_config_dir=user)
    assert config.backends["ollama"].model == "qwen3-coder-next:latest"
    assert config.backends["codex"].skip_lines == 0
    assert config.tasks["hunt"].prompts[0].prompt.startswith("Find at most 5")
    assert config.tasks["audit"].backends == ("gemini",)


def test_unknown_key_names_file_line_and_the_close_match(project: Project, user: Path) -> None:
    write(project.config_path, """
        [defaults]
        timeout = 30
        paralel = false
    """)
    with pytest.raises(ConfigError) as caught:
        load_config(project, user_config_dir=user)
    assert caught.value.message == (
        "lok.toml:3: unknown key 'paralel' in [defaults] (did you mean 'parallel'?)")
    assert "parallel" in (caught.value.hint or "")


def test_unknown_section_is_an_error(project: Project, user: Path) -> None:
    write(project.config_path, """
        [cahce]
        enabled = false
    """)
    with pytest.raises(ConfigError) as caught:
        load_config(project, user_config_dir=user)
    assert caught.value.message == "lok.toml:1: unknown section [cahce] (did you mean [cache]?)"


def test_wrong_type_says_what_was_expected(project: Project, user: Path) -> None:
    write(project.config_path, """
        [cache]
        enabled = "yes"
    """)
    with pytest.raises(ConfigError) as caught:
        load_config(project, user_config_dir=user)
    assert caught.value.message == (
        'lok.toml:2: [cache]: enabled must be true or false, got "yes"')
    assert caught.value.hint == "for example: enabled = true"


def test_every_problem_is_reported_at_once_in_line_order(project: Project, user: Path) -> None:
    write(project.config_path, """
        [defaults]
        jobs = 0
        [backends.mine]
        command = "my-llm"
        [conductor]
        max_round = 3
    """)
    with pytest.raises(ConfigError) as caught:
        load_config(project, user_config_dir=user)
    text = error_text(caught.value)
    assert text.splitlines()[0] == "Error: 3 problems in config (lok.toml)"
    assert "lok.toml:2: [defaults]: jobs must be an integer of at least 1, got 0" in text
    assert "lok.toml:3: [backends.mine] has no type" in text
    assert "lok.toml:6: unknown key 'max_round' in [conductor] (did you mean 'max_rounds'?)" in text
    assert text.index("lok.toml:2") < text.index("lok.toml:3") < text.index("lok.toml:6")


def test_syntax_error_names_file_and_line(project: Project, user: Path) -> None:
    write(project.config_path, """
        [defaults]
        timeout = 30
        jobs = = 3
    """)
    with pytest.raises(ConfigError) as caught:
        load_config(project, user_config_dir=user)
    assert caught.value.message.startswith("lok.toml:3: invalid TOML:")
    assert "jobs = = 3" in (caught.value.hint or "")


def test_backend_types_come_from_type_the_classic_name_or_an_http_command() -> None:
    config = parse_config_text("""
[backends.qwen]
command = "http://127.0.0.1:9999"
model = "qwen"
temperature = 0.2

[backends.fast]
type = "openai"
url = "http://127.0.0.1:8080/v1"
api_key_env = "MY_KEY"
headers = { X-Team = "a" }
options = { seed = 7 }

[backends.echo]
type = "command"
command = "cat"
prompt_via = "stdin"
timeout = "2m"

[backends.plug]
type = "someplugin"
anything = [1, 2]
""")
    qwen, fast = config.backends["qwen"], config.backends["fast"]
    assert (qwen.type, qwen.url, qwen.options) == ("ollama", "http://127.0.0.1:9999",
                                                   {"temperature": 0.2})
    assert (fast.type, fast.api_key_env, fast.extra, fast.options) == (
        "openai", "MY_KEY", {"headers": {"X-Team": "a"}}, {"seed": 7})
    assert config.backends["echo"].extra == {"prompt_via": "stdin"}
    assert config.backends["echo"].timeout_s == 120.0
    assert config.backends["plug"].extra == {"anything": [1, 2]}


def test_a_misspelt_backend_type_is_an_unknown_type_with_the_close_one() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config_text('[backends.mine]\ntype = "lcoal"\n')
    assert caught.value.message == (
        "lok.toml:2: [backends.mine] unknown type 'lcoal' (did you mean 'local'?)")
    assert "not installed" not in caught.value.message + (caught.value.hint or "")
    # a type far from every built-in one may be a plugin's: checked when it is used
    assert parse_config_text('[backends.p]\ntype = "someplugin"\n').backends["p"].type == (
        "someplugin")


def test_a_key_of_another_backend_type_is_unknown() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config_text('[backends.ollama]\nprompt_via = "arg"\n')
    assert caught.value.message.startswith("lok.toml:2: unknown key 'prompt_via' in [backends.ollama]")


def test_default_backend_must_name_a_configured_backend() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config_text('[defaults]\nbackend = "cladue"\n')
    assert "names backend 'cladue', which is not configured" in caught.value.message
    assert "did you mean 'claude'?" in (caught.value.hint or "")
    assert parse_config_text('[defaults]\nbackend = "auto"\n').defaults.backend == "auto"


def test_command_wrapper_needs_the_cmd_placeholder() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config_text('[defaults]\ncommand_wrapper = "nix-shell --run"\n')
    assert "command_wrapper must be a command containing {cmd}" in caught.value.message
    wrapped = parse_config_text("""[defaults]\ncommand_wrapper = "direnv exec . {cmd}"\n""")
    assert wrapped.defaults.command_wrapper == "direnv exec . {cmd}"


@pytest.mark.parametrize(
    ("wrapper", "place"),
    [("bash -c $'{cmd}'", "inside $'…'"), ('bash -c \\"${X:-{cmd}}\\"', "inside ${…}")],
)
def test_a_command_wrapper_whose_cmd_lok_cannot_quote_is_refused_when_the_config_loads(
    wrapper: str, place: str
) -> None:
    """It crashed the worker with a traceback when the first step started."""
    with pytest.raises(ConfigError) as caught:
        parse_config_text(f'[defaults]\ncommand_wrapper = "{wrapper}"\n')
    assert f"command_wrapper must be a command whose {{cmd}} lok can quote, not {{cmd}} {place}" in (
        caught.value.message
    )


def test_a_broken_lok_toml_fails_the_command_with_exit_2_and_no_traceback(tmp_path: Path) -> None:
    write(tmp_path / "lok.toml", """
        [backends.claude]
        modle = "opus"
    """)
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    proc = subprocess.run([sys.executable, "-m", "lokfile", "workflow", "list"], cwd=tmp_path,
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "Error: lok.toml:2: unknown key 'modle' in [backends.claude] (did you mean 'model'?)",
        proc.stderr.splitlines()[1],
    ]
    assert proc.stderr.splitlines()[1].startswith("Hint: ")
    assert "Traceback" not in proc.stderr
