"""The backend registry: what lok knows about each built-in backend type, in one place.

    family   how lok reaches it: a program run once per query ("cli"), a server
             it talks HTTP to ("http"), a model inside lok ("local"), the
             deterministic `test` type ("test")
    target   the class implementing it, "module:Class", imported on first use
    keys     the config keys it accepts beyond the common ones (`keys.COMMON_KEYS`)
    program  a CLI type's program when `command` is not set, and how to install it
    url      an HTTP type's address when `url` is not set
    key_env  the variable holding its key when `api_key_env` names none
    auto     its place in `auto`'s order (None: not tried by name; see ready.py)

Config checking, readiness (`auto`, `lok doctor`), the CLI and the dispatcher
ask here; no other module spells a list of type names. Plugin types (entry
point group `lokfile.backends`) are not listed: their family is unknown and
they accept any key. Importing this module imports no backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Family = Literal["cli", "http", "local", "test"]


@dataclass(frozen=True, kw_only=True)
class BackendType:
    """One built-in backend type's traits."""

    name: str
    family: Family
    target: str
    keys: frozenset[str] = frozenset()
    program: str | None = None
    install: str | None = None
    url: str | None = None
    key_env: str | None = None
    auto: int | None = None


def _keys(*names: str) -> frozenset[str]:
    return frozenset(names)


_TEST_KEYS = _keys(
    "reply", "rules", "latency_ms", "fail_when", "fail_times", "fail_kind", "retry_after",
    "state_dir", "log_file",
)  # fmt: skip

# In the order lok lists types (errors, `lok init`): the agent CLIs, the servers, the rest.
_ALL = (
    BackendType(
        name="claude",
        family="cli",
        target="lokfile.backends.claude:ClaudeBackend",
        keys=_keys("env", "max_retries", "system_mode"),
        program="claude",
        install="npm install -g @anthropic-ai/claude-code",
        auto=0,
    ),
    BackendType(
        name="codex",
        family="cli",
        target="lokfile.backends.codex:CodexBackend",
        keys=_keys("env"),
        program="codex",
        install="npm install -g @openai/codex",
        auto=1,
    ),
    BackendType(
        name="gemini",
        family="cli",
        target="lokfile.backends.gemini:GeminiBackend",
        keys=_keys("env", "max_retries"),
        program="gemini",
        install="npm install -g @google/gemini-cli",
        auto=2,
    ),
    BackendType(
        name="ollama",
        family="http",
        target="lokfile.backends.ollama:OllamaBackend",
        keys=_keys("headers", "max_retries"),
        url="http://localhost:11434",
        auto=3,
    ),
    BackendType(
        name="openai",
        family="http",
        target="lokfile.backends.openai:OpenAIBackend",
        keys=_keys("headers", "max_retries"),
        url="https://api.openai.com",
    ),
    BackendType(
        name="anthropic",
        family="http",
        target="lokfile.backends.anthropic:AnthropicBackend",
        keys=_keys("headers", "anthropic_version", "max_retries"),
        url="https://api.anthropic.com",
        key_env="ANTHROPIC_API_KEY",
    ),
    BackendType(
        name="command",
        family="cli",
        target="lokfile.backends.command:CommandBackend",
        keys=_keys("prompt_via", "env"),
    ),
    BackendType(
        name="local",
        family="local",
        target="lokfile.backends.local:LocalBackend",
        keys=_keys("model_path", "n_ctx", "threads"),
    ),
    BackendType(
        name="test",
        family="test",
        target="lokfile.backends.fake:TestBackend",
        keys=_TEST_KEYS,
    ),
)

TYPES: dict[str, BackendType] = {t.name: t for t in _ALL}
NAMES: tuple[str, ...] = tuple(TYPES)
# the names `auto` tries first, in order, after [defaults] backend
AUTO_ORDER: tuple[str, ...] = tuple(
    t.name for t in sorted((t for t in _ALL if t.auto is not None), key=lambda t: t.auto or 0)
)


def get(type_name: str) -> BackendType | None:
    """The built-in type called `type_name`, or None (a plugin's, or unknown)."""
    return TYPES.get(type_name)


def family(type_name: str) -> Family | None:
    """How lok reaches a type: "cli", "http", "local", "test"; None for a plugin type."""
    found = TYPES.get(type_name)
    return found.family if found else None


def of_family(kind: Family) -> tuple[str, ...]:
    """The built-in type names of one family, in registry order."""
    return tuple(t.name for t in _ALL if t.family == kind)
