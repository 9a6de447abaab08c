"""The backend registry: everything lok knows about a type of backend, in one place.

One frozen `BackendType` per built-in type, in the order lok lists them (error
messages, hints), and the plugin types installed packages register under the
entry-point group `lokfile.backends`:

    name         claude, codex, gemini, ollama, openai, anthropic, command, local, test
    family       how lok reaches it, and so how `ready` probes it:
                   cli      a vendor's agent CLI, run once per query   the program is on PATH
                   command  any program, run once per query            the program is on PATH
                   http     a server lok talks to                      a TCP connect opens
                   local    a small model inside lok                   runtime and model file exist
                   test     deterministic answers                      always
                 (a plugin type has no family: its class's own `ready`, else yes)
    target       "module:Class", imported on first use (start-up time matters)
    extra_keys   config keys it accepts beyond the common ones (backends.keys)
    option_keys  the keys an HTTP type's `options` table may hold: what it sends to
                 its API (lok's own temperature, max_tokens … among them); any other
                 is refused at load time. None: any (Ollama's own `options` object)
    program      the program a CLI type runs when `command` is not set, and its install hint
    url          an HTTP type's default server
    key_env      a variable it needs even when `api_key_env` names none
    auto_rank    where `auto` puts a backend of this *name* (the classic names first)
    weight       `weighted_vote`'s default weight for a backend of this name
    strengths    what `lok suggest` and `lok conduct` say it is good at
    pricing      how a call's cost is known without a configured `price`: "list" (the
                 genai-prices database, under `price_provider` when given), "none" (a
                 server whose models have no list price: unpriced) or "free" (cost 0)
    max_tokens   what lok sends as max_tokens when nothing says (a dry run's estimate)

Importing this module imports no backend implementation and no httpx: the
records are plain data, `load` imports a type's module when it is first used.
Who reads it: backends (create, ready, keys, the CLI and HTTP types), config
(checking `[backends.NAME]`, the default weights), engine (the modules workers
import early, weighted_vote), agents (suggest, conduct), cli (doctor, backends,
init's text).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from lokfile.backends.base import Backend

Family = Literal["cli", "command", "http", "local", "test"]

ENTRY_POINT_GROUP = "lokfile.backends"
GENERAL = "General"  # the category every backend can attempt (agents.suggest's name)


@dataclass(frozen=True, kw_only=True)
class BackendType:
    """One built-in backend type's traits (see the module docstring)."""

    name: str
    family: Family
    target: str
    extra_keys: frozenset[str] = frozenset()
    option_keys: frozenset[str] | None = None
    program: str | None = None
    install: str | None = None
    url: str | None = None
    key_env: str | None = None
    auto_rank: int | None = None
    weight: float | None = None
    strengths: tuple[str, ...] = (GENERAL,)
    style: str = ""
    pricing: Literal["list", "none", "free"] = "list"
    price_provider: str | None = None
    max_tokens: int | None = None

    @property
    def module(self) -> str:
        """The module that implements the type (not imported here)."""
        return self.target.partition(":")[0]

    @property
    def runs_program(self) -> bool:
        """A program is run once per query (the CLI types and `command`)."""
        return self.family in ("cli", "command")

    def load(self) -> type[Backend]:
        """The implementing class, its module imported now."""
        module, _, attr = self.target.partition(":")
        cls: type[Backend] = getattr(importlib.import_module(module), attr)
        return cls


_HTTP_KEYS = frozenset({"headers", "max_retries", "stream"})
# Chat Completions request parameters (platform.openai.com/docs/api-reference/chat/create)
# that make sense for one text answer (no tools, no n > 1, no streaming switches)
OPENAI_OPTIONS = frozenset({
    "top_p", "frequency_penalty", "presence_penalty", "stop", "logit_bias", "logprobs",
    "top_logprobs", "max_completion_tokens", "reasoning_effort", "response_format",
    "service_tier", "user", "metadata", "store", "verbosity",
    "temperature", "seed", "max_tokens", "system",  # lok's own, sent under these names
})
# Messages API request parameters (docs.anthropic.com/en/api/messages), same idea
ANTHROPIC_OPTIONS = frozenset({
    "top_p", "top_k", "stop_sequences", "metadata", "service_tier", "thinking",
    "temperature", "max_tokens", "system",  # lok's own it sends (the API has no seed)
})

BUILTINS: tuple[BackendType, ...] = (
    BackendType(
        name="claude",
        family="cli",
        target="lokfile.backends.claude:ClaudeBackend",
        extra_keys=frozenset({"env", "max_retries", "system_mode"}),
        program="claude",
        install="npm install -g @anthropic-ai/claude-code",
        auto_rank=0,
        weight=2.0,
        strengths=(GENERAL, "Architecture", "CodeAnalysis", "Writing", "SecurityAudit"),
        style="careful reasoning, design and code review in the repository",
        price_provider="anthropic",
    ),
    BackendType(
        name="codex",
        family="cli",
        target="lokfile.backends.codex:CodexBackend",
        extra_keys=frozenset({"env"}),
        program="codex",
        install="npm install -g @openai/codex",
        auto_rank=1,
        weight=1.5,
        strengths=("CodeAnalysis", "DeadCode", "Performance", GENERAL),
        style="fast, focused code analysis inside the repository",
        price_provider="openai",
    ),
    BackendType(
        name="gemini",
        family="cli",
        target="lokfile.backends.gemini:GeminiBackend",
        extra_keys=frozenset({"env", "max_retries"}),
        program="gemini",
        install="npm install -g @google/gemini-cli",
        auto_rank=2,
        weight=1.5,
        strengths=("SecurityAudit", "Architecture", GENERAL, "Writing"),
        style="thorough reading of large codebases, security and design",
        price_provider="google",
    ),
    BackendType(
        name="ollama",
        family="http",
        target="lokfile.backends.ollama:OllamaBackend",
        extra_keys=_HTTP_KEYS,
        url="http://localhost:11434",
        auto_rank=3,
        weight=1.0,
        strengths=("Private", "Quick", GENERAL, "Writing"),
        style="local model: private, free, good for quick or confidential work",
        pricing="none",
    ),
    BackendType(
        name="openai",
        family="http",
        target="lokfile.backends.openai:OpenAIBackend",
        extra_keys=_HTTP_KEYS,
        option_keys=OPENAI_OPTIONS,
        url="https://api.openai.com",
        strengths=(GENERAL, "Writing", "CodeAnalysis", "Performance"),
        style="general-purpose model over an OpenAI-compatible API",
    ),
    BackendType(
        name="anthropic",
        family="http",
        target="lokfile.backends.anthropic:AnthropicBackend",
        extra_keys=_HTTP_KEYS | {"anthropic_version"},
        option_keys=ANTHROPIC_OPTIONS,
        url="https://api.anthropic.com",
        key_env="ANTHROPIC_API_KEY",
        strengths=(GENERAL, "Writing", "Architecture", "CodeAnalysis"),
        style="careful reasoning and writing over the API (no repository access)",
        price_provider="anthropic",
        max_tokens=4096,
    ),
    BackendType(
        name="command",
        family="command",
        target="lokfile.backends.command:CommandBackend",
        extra_keys=frozenset({"prompt_via", "env"}),
        style="a configured command-line tool",
    ),
    BackendType(
        name="local",
        family="local",
        target="lokfile.backends.local:LocalBackend",
        extra_keys=frozenset({"model_path", "n_ctx", "threads"}),
        strengths=("Private", "Quick", GENERAL),
        style="small in-process model: private and offline, best for short tasks",
        pricing="free",
        max_tokens=128,
    ),
    BackendType(
        name="test",
        family="test",
        target="lokfile.backends.fake:TestBackend",
        extra_keys=frozenset({
            "reply", "rules", "latency_ms", "fail_when", "fail_times", "fail_kind",
            "retry_after", "state_dir", "log_file",
        }),
        style="deterministic test backend",
        pricing="free",
    ),
)

_BY_NAME: dict[str, BackendType] = {t.name: t for t in BUILTINS}

# a backend with no `type` whose `command` is an http(s) address is an Ollama server
# (the original's way to configure one)
URL_COMMAND_TYPE = "ollama"


# --------------------------------------------------------------------------
# Built-in types
# --------------------------------------------------------------------------


def names() -> tuple[str, ...]:
    """The built-in type names, in the registry's order (as error messages list them)."""
    return tuple(_BY_NAME)


def get(type_name: str) -> BackendType | None:
    """The built-in type `type_name`, or None (a plugin's or an unknown type)."""
    return _BY_NAME.get(type_name)


def builtin(type_name: str) -> BackendType:
    """The built-in type `type_name` (KeyError when it is not one)."""
    return _BY_NAME[type_name]


def is_builtin(type_name: str) -> bool:
    return type_name in _BY_NAME


def family(type_name: str) -> Family | None:
    """How a type is reached; None for a plugin (or unknown) type."""
    found = _BY_NAME.get(type_name)
    return found.family if found is not None else None


def of_family(*families: Family) -> tuple[str, ...]:
    """The built-in types of these families, in registry order."""
    return tuple(t.name for t in BUILTINS if t.family in families)


def pricing(type_name: str) -> tuple[str, str | None]:
    """How a call of this type is priced ("list", "none", "free"; plugins: "list") and
    the provider to look its model up under."""
    kind = _BY_NAME.get(type_name)
    return (kind.pricing, kind.price_provider) if kind else ("list", None)


def default_max_tokens(type_name: str) -> int | None:
    """What lok sends as max_tokens for this type when nothing says (None: nothing)."""
    kind = _BY_NAME.get(type_name)
    return kind.max_tokens if kind else None


def extra_keys(type_name: str) -> frozenset[str]:
    """Keys a built-in type accepts beyond the common ones (none for a plugin type)."""
    found = _BY_NAME.get(type_name)
    return found.extra_keys if found is not None else frozenset()


def option_keys(type_name: str) -> frozenset[str] | None:
    """The `options` a built-in HTTP type forwards to its API; None: any."""
    found = _BY_NAME.get(type_name)
    return found.option_keys if found is not None else None


def program(type_name: str) -> str | None:
    """The program a CLI type runs when `command` is not set."""
    found = _BY_NAME.get(type_name)
    return found.program if found is not None else None


def install_hint(type_name: str) -> str | None:
    """How to install the program a vendor's CLI type runs."""
    found = _BY_NAME.get(type_name)
    return found.install if found is not None else None


def default_url(type_name: str) -> str:
    """An HTTP type's default server (KeyError for a type without one)."""
    url = _BY_NAME[type_name].url
    if url is None:
        raise KeyError(type_name)
    return url


def key_env(type_name: str) -> str | None:
    """The variable a type needs even when `api_key_env` names none."""
    found = _BY_NAME.get(type_name)
    return found.key_env if found is not None else None


def auto_order() -> tuple[str, ...]:
    """The backend names `auto` tries first, in order (after `[defaults] backend`)."""
    ranked = sorted((t.auto_rank, t.name) for t in BUILTINS if t.auto_rank is not None)
    return tuple(name for _, name in ranked)


def default_weights() -> dict[str, float]:
    """`weighted_vote`'s built-in weights, by backend name."""
    return {t.name: t.weight for t in BUILTINS if t.weight is not None}


def implied_type(name: str, command: object) -> str | None:
    """The type of `[backends.NAME]` without `type`: a built-in type's name is its type;
    an http(s) `command` means an Ollama server; else None (a type is needed)."""
    if name in _BY_NAME:
        return name
    if isinstance(command, str) and command.startswith(("http://", "https://")):
        return URL_COMMAND_TYPE
    return None


# --------------------------------------------------------------------------
# Built-ins and plugins
# --------------------------------------------------------------------------


def plugin_types() -> dict[str, Any]:
    """Entry points of the backend types installed packages register, by name."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_types() -> list[str]:
    """Every backend type name: built-ins first (sorted), then installed plugins (sorted)."""
    return sorted(_BY_NAME) + sorted(t for t in plugin_types() if t not in _BY_NAME)


def backend_class(type_name: str) -> type[Backend]:
    """The class implementing `type_name` (BackendError NOT_INSTALLED if unknown)."""
    found = _BY_NAME.get(type_name)
    if found is not None:
        return found.load()
    plugin = plugin_types().get(type_name)
    if plugin is None:
        from lokfile.backends.base import BackendError, ErrorKind

        raise BackendError(
            ErrorKind.NOT_INSTALLED,
            f"unknown backend type '{type_name}' (known: {', '.join(known_types())})",
        )
    loaded: type[Backend] = plugin.load()
    return loaded
