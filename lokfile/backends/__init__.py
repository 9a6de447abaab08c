"""backends: everything lok can ask a prompt, one module per type, and their registry.

    base       the contract: `query(Request) -> Answer`, BackendError and its kinds
    claude     the Claude Code CLI (print mode)
    codex      the Codex CLI (`exec`)
    gemini     the Gemini CLI
    agentcli   what those three agent CLIs share: prompt on stdin, answer parsing
    command    any command-line tool
    subproc    running a backend's program under lok's deadline
    ollama     an Ollama server
    openai     any OpenAI-compatible server
    anthropic  the Anthropic Messages API
    httpbase   what those three HTTP backends share: the query and health skeleton
    httpwire   one streaming POST under a deadline (the only httpx user)
    retrying   transport retries of a transient failure
    local      a small GGUF model, in-process
    fake       `type = "test"`: deterministic answers for tests and demos
    registry   every built-in type's traits: family (cli, http, local, test), class,
               keys, default program / url / key variable, place in `auto`'s order
    ready      can a backend answer now: `auto`'s order, doctor's checks
    keys       the config keys every type accepts

The seams are `registry` (what a type is; the one list of type names) and this
face: `create(config)` is the only way lok makes a backend (built-in types by
the registry, plugins by entry point), and a type's module loads on first use.
Import the rest by module: `from lokfile.backends.ready import …`.
"""

from __future__ import annotations

import importlib
from typing import Any

from lokfile.backends import registry
from lokfile.backends.base import Backend, BackendError, ErrorKind
from lokfile.model import BackendConfig

ENTRY_POINT_GROUP = "lokfile.backends"

__all__ = [
    "backend_class",
    "base",
    "create",
    "keys",
    "known_types",
    "ready",
    "registry",
    "subproc",
]


def _plugin_types() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_types() -> list[str]:
    """Every backend type name: built-ins first, then installed plugins."""
    builtin = registry.TYPES
    return sorted(builtin) + sorted(t for t in _plugin_types() if t not in builtin)


def backend_class(type_name: str) -> type[Backend]:
    """The class implementing `type_name` (BackendError NOT_INSTALLED if unknown)."""
    known = registry.get(type_name)
    if known is not None:
        module, _, attr = known.target.partition(":")
        cls: type[Backend] = getattr(importlib.import_module(module), attr)
        return cls
    plugin = _plugin_types().get(type_name)
    if plugin is None:
        raise BackendError(
            ErrorKind.NOT_INSTALLED,
            f"unknown backend type '{type_name}' (known: {', '.join(known_types())})",
        )
    loaded: type[Backend] = plugin.load()
    return loaded


def create(config: BackendConfig) -> Backend:
    """A ready-to-query backend for `config`."""
    return backend_class(config.type)(config)
