"""The backend registry (lokfile.backends.registry): one record per type, and the rest of
lok reading it rather than a list of its own.

Real modules, a real lok.toml read by the public loader, the real `lok` process for
exit codes and for what doctor, backends and `auto` report (test and command
backends, and an HTTP one on a closed port, so nothing outside the machine is needed).
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lokfile.backends import create, registry
from lokfile.backends.keys import COMMON_KEYS
from lokfile.config import load_config, parse_config_text
from lokfile.model import BackendConfig
from lokfile.project import Project
from tests.lokrun import lok, write

PACKAGE = Path(__file__).resolve().parents[1] / "lokfile"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again: nothing listens there


def _env(tmp_path: Path) -> dict[str, str]:
    return {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "XDG_CACHE_HOME": str(tmp_path / "cache")}


def _builtins_off(but: set[str]) -> str:
    """Tables switching off the backends lok has without a file, except `but`."""
    names = sorted(set(parse_config_text("").backends) - but)
    return "".join(f"[backends.{n}]\nenabled = false\n\n" for n in names)


# -- every record is real ------------------------------------------------------------


@pytest.mark.parametrize("kind", registry.names())
def test_every_builtin_type_resolves_to_a_backend_class_in_an_existing_module(kind: str) -> None:
    record = registry.builtin(kind)
    assert importlib.util.find_spec(record.module) is not None, record.module
    cls = registry.backend_class(kind)
    assert cls.__module__ == record.module
    assert cls.type_name == kind  # the class answers to the name it is registered under
    # the Backend contract (a Protocol): query(request) and health(probe=False)
    query = inspect.signature(cls.query)
    assert list(query.parameters) == ["self", "request"]
    health = inspect.signature(cls.health)
    assert list(health.parameters) == ["self", "probe"]
    assert health.parameters["probe"].default is False
    command = "true" if record.family == "command" else None  # `command` needs its program
    backend = create(BackendConfig(name=f"a-{kind}", type=kind, command=command))
    assert isinstance(backend, cls)
    if record.family == "cli":  # the program the class runs is the one the registry names
        assert getattr(cls, "program", None) == record.program
        assert record.install


def test_families_carry_what_their_probe_needs() -> None:
    for record in registry.BUILTINS:
        assert (record.url is not None) == (record.family == "http"), record.name
        assert (record.program is not None) == (record.family == "cli"), record.name
    assert registry.of_family("cli", "command") == tuple(
        t.name for t in registry.BUILTINS if t.runs_program
    )
    assert registry.family("no-such-type") is None  # a plugin's type: its own `ready`


def test_the_auto_ranks_are_distinct_and_name_built_in_types() -> None:
    ranks = [t.auto_rank for t in registry.BUILTINS if t.auto_rank is not None]
    assert len(ranks) == len(set(ranks)) and ranks
    assert set(registry.auto_order()) <= set(registry.names())
    assert set(registry.default_weights()) <= set(registry.names())


def test_every_strength_is_one_of_suggests_categories() -> None:
    from lokfile.agents.suggest import CATEGORIES, GENERAL

    for record in registry.BUILTINS:
        unknown = set(record.strengths) - set(CATEGORIES) - {GENERAL}
        assert not unknown, (record.name, unknown)
        assert record.style, record.name


def test_importing_the_registry_imports_no_backend_implementation_nor_httpx() -> None:
    code = (
        "import sys, lokfile.backends.registry as r\n"
        "mods = {t.module for t in r.BUILTINS} | {'httpx', 'lokfile.backends.httpwire'}\n"
        "print(sorted(m for m in mods if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


# -- each type's keys, through the loader and the CLI ------------------------------------

_SAMPLES: dict[str, str] = {
    "env": "{ LOK_REGISTRY_TEST = \"1\" }",
    "headers": "{ X-Test = \"1\" }",
    "rules": '[{ contains = "a", reply = "b" }]',
    "stream": "false",  # a bool key (issue 17)
    "latency_ms": "0",
    "fail_times": "0",
    "retry_after": "1",
    "max_retries": "2",
    "n_ctx": "512",
    "threads": "1",
}


def _table(name: str, kind: str, keys: dict[str, str]) -> str:
    lines = [f"[backends.{name}]", f'type = "{kind}"', "enabled = false"]
    return "\n".join([*lines, *(f"{k} = {v}" for k, v in keys.items())]) + "\n\n"


def test_each_types_extra_keys_are_accepted_by_the_loader(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    text = "".join(
        _table(f"t-{t.name}", t.name, {k: _SAMPLES.get(k, '"x"') for k in sorted(t.extra_keys)})
        for t in registry.BUILTINS
    )
    write(root, "lok.toml", text)
    config = load_config(Project(root), user_config_dir=tmp_path / "user")
    for record in registry.BUILTINS:
        backend = config.backends[f"t-{record.name}"]
        assert backend.type == record.name
        assert set(backend.extra) == set(record.extra_keys), record.name
    proc = lok(root, "backends", "--json", env=_env(tmp_path))
    assert proc.returncode == 0, proc.stderr


def test_a_key_no_type_accepts_and_another_types_key_are_refused_with_exit_2(
    tmp_path: Path,
) -> None:
    every_extra = frozenset().union(*(t.extra_keys for t in registry.BUILTINS))
    foreign: dict[str, str] = {}
    text = ""
    for record in registry.BUILTINS:
        others = sorted(every_extra - record.extra_keys - COMMON_KEYS)
        assert others, record.name  # each type lacks some key another type has
        foreign[record.name] = others[0]
        keys = {"colour": '"blue"', others[0]: _SAMPLES.get(others[0], '"x"')}
        text += _table(f"t-{record.name}", record.name, keys)
    root = tmp_path / "proj"
    write(root, "lok.toml", text)
    proc = lok(root, "backends", env=_env(tmp_path))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("Error: ") and lines[-1].startswith("Hint: ")
    for record in registry.BUILTINS:
        where = f"[backends.t-{record.name}]"
        for key in ("colour", foreign[record.name]):
            assert any(f"unknown key '{key}' in {where}" in line for line in lines), (where, key)


def test_a_misspelt_type_lists_the_types_in_the_registrys_order(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    write(root, "lok.toml", '[backends.x]\ntype = "olama"\n')
    proc = lok(root, "backends", env=_env(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == (
        f"Hint: types: {', '.join(registry.names())}, or an installed plugin's"
    )


# -- `auto`'s order: the registry's, as doctor, backends and a run report it ---------------


def _expected_order(backends: list[dict[str, Any]]) -> list[str]:
    """`auto`'s order as the registry describes it: the ranked names, then the others by
    name, then the embedded models."""
    enabled = {b["name"]: b["type"] for b in backends if b["enabled"]}
    ranked = [n for n in registry.auto_order() if n in enabled]
    rest = sorted(n for n in enabled if n not in ranked)
    local = [n for n in rest if registry.family(enabled[n]) == "local"]
    return ranked + [n for n in rest if n not in local] + local


def _mixed_config(port: int, ready: bool) -> str:
    """Every ranked name, two not-ready CLIs, a ready test backend, Ollama on a closed port;
    a server and a test backend under other names; an embedded model whose name sorts
    first (it still comes last)."""
    first, second, third, fourth = registry.auto_order()
    flag = "true" if ready else "false"
    missing = 'type = "command"\ncommand = "lok-no-such-tool"\nargs = []\n\n'
    return (
        _builtins_off({first, second, third, fourth})
        + f"[backends.{first}]\n{missing}"
        + f"[backends.{second}]\n{missing}"
        + f'[backends.{third}]\ntype = "test"\nargs = []\nskip_lines = 0\nenabled = {flag}\n\n'
        + f'[backends.{fourth}]\ntype = "ollama"\nurl = "http://127.0.0.1:{port}"\n\n'
        + f'[backends.aa-server]\ntype = "openai"\nurl = "http://127.0.0.1:{port}/v1"\n\n'
        + f'[backends.zz-test]\ntype = "test"\nenabled = {flag}\n\n'
        + '[backends.a-local]\ntype = "local"\nmodel_path = "no-such-model.gguf"\n\n'
    )


def test_auto_follows_the_registrys_order_over_what_doctor_finds_ready(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    env = _env(tmp_path)
    write(root, "lok.toml", _mixed_config(_closed_port(), ready=True))
    write(root, ".lok/workflows/q.toml",
          'name = "q"\nbackend = "auto"\n[[steps]]\nname = "a"\nprompt = "hi"\n')
    listed = json.loads(lok(root, "backends", "--json", env=env, check=True).stdout)["backends"]
    order = _expected_order(listed)
    third = registry.auto_order()[2]
    assert order[:2] == list(registry.auto_order()[:2]) and order[-1] == "a-local"
    doctor = json.loads(lok(root, "doctor", "--json", env=env).stdout)
    assert sorted(doctor["ready"]) == sorted([third, "zz-test"])
    first_ready = next(n for n in order if n in doctor["ready"])
    ran = json.loads(lok(root, "run", "--json", "q", env=env).stdout)
    assert ran["steps"][0]["backend"] == first_ready == third


def test_when_none_is_ready_the_error_lists_them_in_the_registrys_order(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    env = _env(tmp_path)
    write(root, "lok.toml", _mixed_config(_closed_port(), ready=False))
    write(root, ".lok/workflows/q.toml",
          'name = "q"\nbackend = "auto"\n[[steps]]\nname = "a"\nprompt = "hi"\n')
    listed = json.loads(lok(root, "backends", "--json", env=env, check=True).stdout)["backends"]
    doctor = json.loads(lok(root, "doctor", "--json", env=env).stdout)
    assert doctor["ready"] == [] and doctor["ok"] is False
    proc = lok(root, "run", "q", env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0] == "Error: no backend can answer `auto`"
    named = [line.split(":", 1)[0].strip() for line in lines[1:-1]]
    assert named == _expected_order(listed)
    assert len(named) == 5  # two CLIs, Ollama, the server, the embedded model


# -- the knowledge stays in one place --------------------------------------------------


def _type_lists(source: str) -> list[int]:
    """Lines of `source` that spell a collection of two or more backend type names: a
    tuple, list or set of them, or a dict keyed by them (one holding a table per name,
    like the built-in `[backends.NAME]` sections, is config, not type knowledge)."""
    types = set(registry.names())

    def names(nodes: list[ast.expr | None]) -> bool:
        strings = [n.value for n in nodes if isinstance(n, ast.Constant)]
        return len(nodes) >= 2 and len(strings) == len(nodes) and set(strings) <= types

    def spells(node: ast.AST) -> bool:
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return names(list(node.elts))
        if isinstance(node, ast.Dict):
            tables = all(isinstance(v, ast.Dict) for v in node.values)
            return names(list(node.keys)) and not tables
        return False

    return [getattr(n, "lineno", 0) for n in ast.walk(ast.parse(source)) if spells(n)]


def test_the_detector_finds_type_lists_and_passes_other_strings() -> None:
    assert _type_lists('CLI = ("claude", "codex", "gemini")\n') == [1]
    assert _type_lists('W = {"claude": 2.0, "ollama": 1.0}\n') == [1]
    assert _type_lists('ok = t in {"openai", "anthropic"}\n') == [1]
    assert _type_lists(
        'B = {"codex": {"command": "codex"}, "local": {"type": "local"}}\n'
        'key = ("backends", name, "type")\n'
        'pair = ("command", "command changed")\n'
        'one = ["codex"]\n'
        'text = "claude, codex, gemini"\n'
    ) == []


def test_no_module_outside_backends_spells_a_list_of_backend_types() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).parts[0] == "backends":
            continue
        found += [f"{path.relative_to(PACKAGE)}:{n}" for n in _type_lists(path.read_text())]
    assert found == [], "ask lokfile.backends.registry instead: " + ", ".join(found)
