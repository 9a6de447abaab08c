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
    aiowire    the same POST on an asyncio loop, many at once (executors/httplane.py)
    retrying   transport retries of a transient failure
    local      a small GGUF model, in-process
    fake       `type = "test"`: deterministic answers for tests and demos
    ready      can a backend answer now: `auto`'s order, doctor's checks
    keys       the config keys every type accepts
    registry   THE seam: each type's traits (family, class, extra keys, program,
               default URL, `auto` rank, how it is probed), built-ins and plugins

This face makes backends: `create(config)` is the only way lok makes one, and a
type's module loads on first use. What lok knows about a type (is it a CLI or a
server, what keys, which program, where in `auto`'s order) it asks `registry`,
never a list of its own (a test holds every module outside backends/ to that).
Import the rest by module: `from lokfile.backends.ready import …`.
"""

from __future__ import annotations

from lokfile.backends import registry
from lokfile.backends.base import Backend
from lokfile.backends.registry import ENTRY_POINT_GROUP, backend_class, known_types
from lokfile.model import BackendConfig

__all__ = [
    "ENTRY_POINT_GROUP",
    "aiowire",
    "backend_class",
    "base",
    "create",
    "keys",
    "known_types",
    "ready",
    "registry",
    "subproc",
]


def create(config: BackendConfig) -> Backend:
    """A ready-to-query backend for `config`."""
    return backend_class(config.type)(config)
