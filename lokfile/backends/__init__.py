"""backends: everything lok can ask a prompt, one module per type, and their registry.

    base       the contract: `query(Request) -> Answer`, BackendError and its kinds
    claude     the Claude Code CLI (print mode)
    codex      the Codex CLI (`exec`)
    gemini     the Gemini CLI
    agentcli   what those three agent CLIs share: prompt on stdin, answer parsing
    command    any command-line tool
    subproc    running a backend's program under lok's deadline (lokfile.process.run)
    ollama     an Ollama server
    openai     any OpenAI-compatible server
    anthropic  the Anthropic Messages API
    httpbase   what those three HTTP backends share: the query and health skeleton
    httpwire   one streaming POST under a deadline (the only httpx user)
    retrying   transport retries of a transient failure
    local      a small GGUF model, in-process
    fake       `type = "test"`: deterministic answers for tests and demos
    ready      can a backend answer now: `auto`'s order, doctor's checks
    keys       the config keys each type accepts

This face is the registry (built-in types by name, plugins by entry point):
`create(config)` is the only way lok makes a backend, and a type's module
loads on first use. Import the rest by module: `from lokfile.backends.ready import …`.
"""

from __future__ import annotations

import importlib
from typing import Any

from lokfile.backends.base import Backend, BackendError, ErrorKind
from lokfile.model import BackendConfig

# type name -> "module:Class", imported on first use (start-up time matters)
BUILTIN_TYPES: dict[str, str] = {
    "test": "lokfile.backends.fake:TestBackend",
    "local": "lokfile.backends.local:LocalBackend",
    "claude": "lokfile.backends.claude:ClaudeBackend",
    "codex": "lokfile.backends.codex:CodexBackend",
    "gemini": "lokfile.backends.gemini:GeminiBackend",
    "ollama": "lokfile.backends.ollama:OllamaBackend",
    "openai": "lokfile.backends.openai:OpenAIBackend",
    "anthropic": "lokfile.backends.anthropic:AnthropicBackend",
    "command": "lokfile.backends.command:CommandBackend",
}

ENTRY_POINT_GROUP = "lokfile.backends"

__all__ = [
    "BUILTIN_TYPES",
    "backend_class",
    "base",
    "create",
    "keys",
    "known_types",
    "ready",
    "subproc",
]


def _plugin_types() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_types() -> list[str]:
    """Every backend type name: built-ins first, then installed plugins."""
    return sorted(BUILTIN_TYPES) + sorted(t for t in _plugin_types() if t not in BUILTIN_TYPES)


def backend_class(type_name: str) -> type[Backend]:
    """The class implementing `type_name` (BackendError NOT_INSTALLED if unknown)."""
    target = BUILTIN_TYPES.get(type_name)
    if target is not None:
        module, _, attr = target.partition(":")
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
