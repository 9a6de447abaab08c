"""The backend registry is the one place a type's traits live, and the rest of lok
agrees with it: config checking, readiness and `auto`, the classes that answer."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from lokfile import backends
from lokfile.backends import ready, registry
from lokfile.config import parse_config_text
from lokfile.errors import ConfigError

PACKAGE = Path(backends.__file__).resolve().parent.parent

# a plausible value for every type-specific key, to load a config that uses them all
SAMPLE = {
    "env": {"LOK_SAMPLE": "1"},
    "max_retries": 2,
    "system_mode": "append",
    "prompt_via": "stdin",
    "headers": {"X-Sample": "1"},
    "anthropic_version": "2023-06-01",
    "model_path": "/nonexistent/model.gguf",
    "n_ctx": 512,
    "threads": 1,
    "reply": "hi",
    "rules": [],
    "latency_ms": 0,
    "fail_when": "never-in-this-prompt",
    "fail_times": 1,
    "fail_kind": "network",
    "retry_after": 1,
    "state_dir": "/tmp",
    "log_file": "/tmp/lok-sample.log",
}


def toml_value(value: object) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f'"{k}" = {toml_value(v)}' for k, v in value.items()) + " }"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return str(value)


@pytest.mark.parametrize("name", registry.NAMES)
def test_every_type_names_a_backend_class_that_calls_itself_by_that_name(name: str) -> None:
    cls = backends.backend_class(name)
    assert cls.type_name == name
    assert callable(getattr(cls, "query", None)) and callable(getattr(cls, "health", None))


@pytest.mark.parametrize("name", registry.NAMES)
def test_a_types_own_keys_load_into_extra_and_a_stranger_is_refused(name: str) -> None:
    kind = registry.TYPES[name]
    assert set(kind.keys) <= set(SAMPLE), "give the new key a sample value above"
    lines = ["[backends.mine]", f'type = "{name}"']
    lines += [f"{key} = {toml_value(SAMPLE[key])}" for key in sorted(kind.keys)]
    config = parse_config_text("\n".join(lines) + "\n")
    assert set(config.backends["mine"].extra) == set(kind.keys)
    with pytest.raises(ConfigError) as refused:
        parse_config_text("\n".join([*lines, "surely_not_a_key = 1"]) + "\n")
    assert "surely_not_a_key" in str(refused.value)


def test_auto_tries_the_registrys_order_then_other_names_then_the_embedded_model() -> None:
    assert registry.AUTO_ORDER == ("claude", "codex", "gemini", "ollama")
    names = ["zeta", "local", "ollama", "alpha", "gemini", "claude", "codex"]
    text = "".join(
        f'[backends.{n}]\ntype = "{"local" if n == "local" else "test"}"\n' for n in names
    )
    config = parse_config_text('[defaults]\nbackend = "auto"\n' + text)
    order = [b.name for b in ready.in_auto_order(config) if b.name in names]
    assert order == ["claude", "codex", "gemini", "ollama", "alpha", "zeta", "local"]


def test_readiness_goes_by_the_family_the_registry_gives(tmp_path: Path) -> None:
    # an http type on a closed port is not ready, whatever its name; a cli type whose
    # program is missing is not ready; the test type always is
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends
    config = parse_config_text(
        f'[backends.srv]\ntype = "openai"\nurl = "http://127.0.0.1:{port}"\n'
        '[backends.prog]\ntype = "command"\ncommand = "surely-not-a-program-here"\n'
        '[backends.fake]\ntype = "test"\n'
    )
    verdicts = {n: ready.readiness(config.backends[n]) for n in ("srv", "prog", "fake")}
    assert not verdicts["srv"].ready and str(port) in verdicts["srv"].detail
    assert not verdicts["prog"].ready and "surely-not-a-program-here" in verdicts["prog"].detail
    assert verdicts["fake"].ready


def test_an_unknown_type_is_one_line_listing_the_registrys_types(tmp_path: Path) -> None:
    (tmp_path / "lok.toml").write_text('[backends.x]\ntype = "olama"\n')
    done = subprocess.run(
        [sys.executable, "-m", "lokfile", "-C", str(tmp_path), "backends"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2, done.stderr
    assert "did you mean 'ollama'" in done.stderr
    assert ", ".join(registry.NAMES) in done.stderr
    assert "Traceback" not in done.stderr


def _spelt_type_lists(tree: ast.AST) -> list[int]:
    """Lines holding a tuple, list or set literal of three or more built-in type names."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            words = {
                e.value
                for e in node.elts
                if isinstance(e, ast.Constant) and isinstance(e.value, str)
            }
            if len(words & set(registry.NAMES)) >= 3:
                found.append(node.lineno)
    return found


def test_no_module_but_the_registry_spells_a_list_of_type_names() -> None:
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "registry.py" and path.parent.name == "backends":
            continue
        lines = _spelt_type_lists(ast.parse(path.read_text(), str(path)))
        if lines:
            offenders[str(path.relative_to(PACKAGE))] = lines
    assert offenders == {}
    # the check itself finds such a list
    assert _spelt_type_lists(ast.parse('KINDS = ("claude", "codex", "ollama")')) == [1]
