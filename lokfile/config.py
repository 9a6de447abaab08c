"""Settings from lok.toml, layered key by key, remembering where each value came from.

    built-in defaults  <  user (~/.config/lok/lok.toml)  <  project lok.toml  <  --config

Layers merge table by table and key by key: a project `[backends.ollama]`
that only sets `model` keeps the default `command`. Arrays replace. Every
layer is checked in full (unknown keys with a close match, wrong types) and
all problems are reported at once, each with its file and line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lokfile import tomlfile
from lokfile.backends.keys import COMMON_KEYS, EXTRA_KEYS, OPTION_KEYS
from lokfile.durations import EXPECTED_S, DurationError, parse_seconds
from lokfile.errors import ConfigError, Problem
from lokfile.model import (
    BACKEND_TYPES,
    BackendConfig,
    CacheConfig,
    ConductorConfig,
    Config,
    ConsensusConfig,
    Defaults,
    TaskConfig,
    TaskPrompt,
)
from lokfile.project import Project, user_dir
from lokfile.tomlfile import BadValue, did_you_mean

Key = tuple[str | int, ...]
Checker = Callable[[Any], Any]

BUILTIN_LABEL = "built-in"

def _ask(what: str) -> str:
    return f"List at most 5 {what}, each with file:line and one concise sentence."


# The original's defaults (lok-reference §5.2): the bottom layer of every config. A
# literal rather than TOML text, so a project without lok.toml never imports tomllib.
BUILTIN: dict[str, Any] = {
    "defaults": {"parallel": True, "timeout": 300, "jobs": 8},
    "cache": {"enabled": True, "ttl_hours": 24, "salt": ""},
    "conductor": {"max_rounds": 5, "max_tokens": 4096},
    "consensus": {"weights": {"claude": 2.0, "codex": 1.5, "gemini": 1.5, "ollama": 1.0}},
    "backends": {
        "codex": {"command": "codex", "args": ["exec", "--json", "-s", "read-only"]},
        "gemini": {
            "command": "npx", "args": ["@google/gemini-cli"], "skip_lines": 1, "timeout": 600,
        },
        "claude": {"command": "claude"},
        "ollama": {"command": "http://localhost:11434", "model": "llama3.2"},
    },
    "tasks": {
        "hunt": {
            "description": "Find bugs, performance problems and dead code",
            "backends": ["codex"],
            "prompts": [
                {"name": "errors", "prompt": _ask(
                    "real bugs in this codebase (unhandled errors, crashes, wrong edge cases)")},
                {"name": "perf", "prompt": _ask(
                    "performance problems in this codebase (needless work, N+1 queries, "
                    "quadratic loops)")},
                {"name": "dead-code", "prompt": _ask(
                    "pieces of dead code in this codebase (unused functions, unreachable "
                    "branches, stale modules)")},
            ],
        },
        "audit": {
            "description": "Security audit: injection, authentication, secrets",
            "backends": ["gemini"],
            "prompts": [
                {"name": "injection", "prompt": _ask(
                    "injection risks in this codebase (SQL, shell, path traversal, templates)")},
                {"name": "auth", "prompt": _ask(
                    "authentication or authorization weaknesses in this codebase")},
                {"name": "secrets", "prompt": _ask(
                    "hard-coded secrets, keys or credentials in this codebase")},
            ],
        },
    },
}


class ConfigProblems(ConfigError):
    """Every problem found in the config files, reported at once."""

    def __init__(self, problems: list[Problem]) -> None:
        problems = sorted(problems, key=lambda p: (p.file or "", p.line or 0))
        self.problems = problems
        first = problems[0]
        if len(problems) == 1:
            super().__init__(str(first), first.hint)
        else:
            files = ", ".join(sorted({p.file or "?" for p in problems}))
            super().__init__(
                f"{len(problems)} problems in config ({files})",
                "fix them all; every lok command rereads the config",
            )

    def lines(self) -> list[str]:
        """`Error:` line, each problem indented, `Hint:` line."""
        out = [f"Error: {self.message}"]
        if len(self.problems) > 1:
            out += [f"  {p}" + (f" ({p.hint})" if p.hint else "") for p in self.problems]
        if self.hint:
            out.append(f"Hint: {self.hint}")
        return out


def _seconds(value: Any) -> float:
    try:
        return parse_seconds(value)
    except DurationError:
        raise BadValue(EXPECTED_S, value, '300 or "5m"') from None


def _positive(value: Any) -> int:
    return tomlfile.want_int(value, 1)


def _wrapper(value: Any) -> str:
    text = tomlfile.want_str(value)
    if "{cmd}" not in text:
        raise BadValue("a command containing {cmd}", value, "\"nix-shell --run '{cmd}'\"")
    return text


SECTIONS: dict[str, dict[str, Checker]] = {
    "defaults": {
        "parallel": tomlfile.want_bool,
        "timeout": _seconds,
        "command_wrapper": _wrapper,
        "backend": tomlfile.want_str,
        "jobs": _positive,
    },
    "cache": {
        "enabled": tomlfile.want_bool,
        "ttl_hours": lambda v: _non_negative(tomlfile.want_number(v), v),
        "salt": tomlfile.want_str,
    },
    "conductor": {
        "max_rounds": _positive,
        "max_tokens": _positive,
        "backend": tomlfile.want_str,
    },
    "consensus": {
        "synthesizer": tomlfile.want_str,
        "weights": tomlfile.want_table,
    },
}
TABLE_OF_TABLES = ("backends", "tasks")

BACKEND_KEYS: dict[str, Checker] = {
    "type": tomlfile.want_str,
    "enabled": tomlfile.want_bool,
    "command": tomlfile.want_str,
    "url": tomlfile.want_str,
    "args": tomlfile.want_str_list,
    "model": tomlfile.want_str,
    "api_key_env": tomlfile.want_str,
    "timeout": _seconds,
    "concurrency": _positive,
    "skip_lines": tomlfile.want_int,
    "temperature": tomlfile.want_number,
    "seed": tomlfile.want_int,
    "max_tokens": _positive,
    "system": tomlfile.want_str,
    "num_ctx": _positive,
    "options": tomlfile.want_table,
}
TASK_KEYS: dict[str, Checker] = {
    "description": tomlfile.want_str,
    "backends": tomlfile.want_str_list,
    "prompts": lambda v: v,  # checked item by item below
}
HTTP_TYPES = ("ollama", "openai", "anthropic")


def _non_negative(number: float, raw: Any) -> float:
    if number < 0:
        raise BadValue("a non-negative number", raw, "24")
    return number


# --------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------


class _Layers:
    """The merged raw document, where each key came from, and how to find its line."""

    def __init__(self) -> None:
        self.merged: dict[str, Any] = {}
        self.origins: dict[Key, str] = {}
        self.texts: dict[str, str] = {}
        self._lines: dict[str, tomlfile.KeyLines] = {}
        self.files: list[str] = []

    def add(self, label: str, data: dict[str, Any], text: str | None) -> None:
        if text is not None:
            self.texts[label] = text
            self.files.append(label)
        self._merge(self.merged, data, (), label)

    def _merge(self, into: dict[str, Any], data: dict[str, Any], prefix: Key, label: str) -> None:
        for key, value in data.items():
            path = (*prefix, key)
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                self.origins[path] = label
                self._merge(into[key], value, path, label)
                continue
            into[key] = _copy(value)
            self._mark(path, value, label)

    def _mark(self, path: Key, value: Any, label: str) -> None:
        self.origins[path] = label
        if isinstance(value, dict):
            for key, inner in value.items():
                self._mark((*path, key), inner, label)

    def problem(self, path: Key, message: str, hint: str) -> Problem:
        """A Problem located at the file (and line) that set `path`."""
        label = self.origins.get(path)
        probe = path
        while label is None and probe:
            probe = probe[:-1]
            label = self.origins.get(probe)
        line = None
        if label in self.texts:
            lines = self._lines.get(label)
            if lines is None:
                lines = self._lines[label] = tomlfile.KeyLines(self.texts[label])
            line = lines.line(path)
        return Problem(message, label, line, hint)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _read_layer(path: Path, layers: _Layers) -> None:
    label = _label(path)
    try:
        text, data = tomlfile.read(path)
    except tomlfile.TomlProblem as exc:
        where = f"{label}:{exc.line}" if exc.line else label
        raise ConfigError(f"{where}: {exc.message}", exc.hint) from None
    except OSError as exc:
        raise ConfigError(
            f"{label}: cannot read config: {exc.strerror or exc}",
            "check the path and its permissions",
        ) from None
    layers.add(label, data, text)


def _label(path: Path) -> str:
    """The path as a person would type it: relative to the cwd when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def load_config(
    project: Project, explicit: Path | None = None, user_config_dir: Path | None = None
) -> Config:
    """The merged settings: built-in < user lok.toml < project lok.toml < `explicit` (--config)."""
    layers = _Layers()
    layers.add(BUILTIN_LABEL, BUILTIN, None)
    seen: set[Path] = set()
    candidates = [
        (user_config_dir or user_dir()) / "lok.toml",
        project.config_path,
    ]
    for path in candidates:
        if path.is_file() and path.resolve() not in seen:
            seen.add(path.resolve())
            _read_layer(path, layers)
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(
                f"config file {explicit} not found",
                "--config needs an existing file; `lok init` writes a commented lok.toml",
            )
        if explicit.resolve() not in seen:
            _read_layer(explicit, layers)
    return _build(layers)


def parse_config_text(text: str, label: str = "lok.toml") -> Config:
    """Settings from one TOML text over the built-in defaults (for tests and tools)."""
    layers = _Layers()
    layers.add(BUILTIN_LABEL, BUILTIN, None)
    try:
        data = tomlfile.parse(text)
    except tomlfile.TomlProblem as exc:
        where = f"{label}:{exc.line}" if exc.line else label
        raise ConfigError(f"{where}: {exc.message}", exc.hint) from None
    layers.add(label, data, text)
    return _build(layers)


# --------------------------------------------------------------------------
# Building Config from the merged document
# --------------------------------------------------------------------------


class _Builder:
    def __init__(self, layers: _Layers) -> None:
        self.layers = layers
        self.problems: list[Problem] = []

    def bad(self, path: Key, message: str, hint: str) -> None:
        self.problems.append(self.layers.problem(path, message, hint))

    def unknown(self, path: Key, key: str, allowed: list[str] | set[str], where: str) -> None:
        close = did_you_mean(key, allowed)
        message = f"unknown key '{key}' in {where}" + (
            f" (did you mean '{close}'?)" if close else ""
        )
        hint = f"valid keys in {where}: {', '.join(sorted(allowed))}"
        self.bad((*path, key), message, hint)

    def checked(
        self,
        table: dict[str, Any],
        path: Key,
        keys: dict[str, Checker],
        where: str,
        extra: frozenset[str] | None = frozenset(),
    ) -> dict[str, Any]:
        """The table's values, converted; unknown keys and bad values recorded as problems.

        Keys in `extra` (any key when `extra` is None) pass through unchecked.
        """
        out: dict[str, Any] = {}
        for key, value in table.items():
            check = keys.get(key)
            if check is None:
                if extra is None or key in extra:
                    out[key] = value
                else:
                    self.unknown(path, key, set(keys) | (extra or set()), where)
                continue
            try:
                out[key] = check(value)
            except BadValue as exc:
                self.bad((*path, key), f"{where}: {exc.message(key)}", _type_hint(key, exc))
        return out

    def section(self, name: str) -> dict[str, Any]:
        raw = self.layers.merged.get(name, {})
        if not isinstance(raw, dict):
            self.bad(
                (name,),
                f"[{name}] must be a table, got {tomlfile.describe(raw)}",
                f"write it as a section: [{name}]",
            )
            return {}
        return raw


def _type_hint(key: str, exc: BadValue) -> str:
    return f"for example: {key} = {exc.example}"


def _build(layers: _Layers) -> Config:
    b = _Builder(layers)
    for key in layers.merged:
        if key not in SECTIONS and key not in TABLE_OF_TABLES:
            close = did_you_mean(key, [*SECTIONS, *TABLE_OF_TABLES])
            b.bad(
                (key,),
                f"unknown section [{key}]" + (f" (did you mean [{close}]?)" if close else ""),
                "lok.toml sections: " + ", ".join(f"[{s}]" for s in (*SECTIONS, *TABLE_OF_TABLES)),
            )
    values = {
        name: b.checked(b.section(name), (name,), keys, f"[{name}]")
        for name, keys in SECTIONS.items()
    }
    backends = _backends(b)
    tasks = _tasks(b, backends)
    d, c, k, s = values["defaults"], values["cache"], values["conductor"], values["consensus"]
    for section, key in (
        ("defaults", "backend"),
        ("conductor", "backend"),
        ("consensus", "synthesizer"),
    ):
        name = values[section].get(key)
        if name is not None and name != "auto" and name not in backends:
            b.bad(
                (section, key),
                f"[{section}] {key} names backend '{name}', which is not configured",
                _backend_hint(name, backends),
            )
    weights: dict[str, float] = {}
    for name, weight in s.get("weights", {}).items():
        try:
            weights[name] = tomlfile.want_number(weight)
        except BadValue as exc:
            b.bad(
                ("consensus", "weights", name),
                f"[consensus.weights] {exc.message(name)}",
                f"write {name} = 1.5",
            )
    if b.problems:
        raise ConfigProblems(b.problems)
    return Config(
        defaults=Defaults(
            parallel=d.get("parallel", True),
            timeout_s=d.get("timeout", 300.0),
            command_wrapper=d.get("command_wrapper"),
            backend=d.get("backend"),
            jobs=d.get("jobs", 8),
        ),
        cache=CacheConfig(
            enabled=c.get("enabled", True),
            ttl_hours=c.get("ttl_hours") or None,
            salt=c.get("salt", ""),
        ),
        conductor=ConductorConfig(
            max_rounds=k.get("max_rounds", 5),
            max_tokens=k.get("max_tokens", 4096),
            backend=k.get("backend"),
        ),
        consensus=ConsensusConfig(synthesizer=s.get("synthesizer"), weights=weights),
        backends=backends,
        tasks=tasks,
        files=tuple(layers.files),
        origins={".".join(str(p) for p in path): label for path, label in layers.origins.items()},
    )


def _backend_hint(name: str, backends: dict[str, BackendConfig]) -> str:
    close = did_you_mean(name, list(backends))
    known = ", ".join(sorted(backends)) or "none"
    prefix = f"did you mean '{close}'? " if close else ""
    return f"{prefix}configured backends: {known}; or add [backends.{name}] to lok.toml"


def _backends(b: _Builder) -> dict[str, BackendConfig]:
    out: dict[str, BackendConfig] = {}
    for name, raw in b.section("backends").items():
        path: Key = ("backends", name)
        if not isinstance(raw, dict):
            b.bad(
                path,
                f"backends.{name} must be a table, got {tomlfile.describe(raw)}",
                f"write it as a section: [backends.{name}]",
            )
            continue
        kind = _backend_type(b, name, raw)
        if kind is None:
            continue
        # a plugin type's keys are its own business
        allowed = None
        if kind in BACKEND_TYPES:  # common keys without a checker here pass through unchecked
            allowed = (COMMON_KEYS - BACKEND_KEYS.keys()) | EXTRA_KEYS.get(kind, frozenset())
        values = b.checked(raw, path, BACKEND_KEYS, f"[backends.{name}]", allowed)
        options: dict[str, Any] = dict(values.pop("options", {}))
        for key in sorted(OPTION_KEYS):
            if key in values:
                options[key] = values.pop(key)
        command = values.get("command")
        url = values.get("url")
        if (
            url is None
            and kind in HTTP_TYPES
            and command
            and command.startswith(("http://", "https://"))
        ):
            url = command
        extra = {k: v for k, v in values.items() if k not in BACKEND_KEYS}
        out[name] = BackendConfig(
            name=name,
            type=kind,
            command=command,
            url=url,
            args=values.get("args", ()),
            model=values.get("model"),
            api_key_env=values.get("api_key_env"),
            timeout_s=values.get("timeout"),
            concurrency=values.get("concurrency"),
            enabled=values.get("enabled", True),
            skip_lines=values.get("skip_lines", 0),
            options=options,
            extra=extra,
        )
    return out


def _backend_type(b: _Builder, name: str, raw: dict[str, Any]) -> str | None:
    kind = raw.get("type")
    if kind is not None:
        if not isinstance(kind, str) or not kind:
            b.bad(
                ("backends", name, "type"),
                f"[backends.{name}] type must be a type name, got {tomlfile.describe(kind)}",
                f"types: {', '.join(BACKEND_TYPES)} (or an installed plugin's)",
            )
            return None
        return kind
    if name in BACKEND_TYPES:
        return name
    command = raw.get("command")
    if isinstance(command, str) and command.startswith(("http://", "https://")):
        return "ollama"
    b.bad(
        ("backends", name),
        f"[backends.{name}] has no type",
        f'add type = "..." (one of {", ".join(BACKEND_TYPES)}, or an installed plugin\'s type)',
    )
    return None


def _tasks(b: _Builder, backends: dict[str, BackendConfig]) -> dict[str, TaskConfig]:
    out: dict[str, TaskConfig] = {}
    for name, raw in b.section("tasks").items():
        path: Key = ("tasks", name)
        if not isinstance(raw, dict):
            b.bad(
                path,
                f"tasks.{name} must be a table, got {tomlfile.describe(raw)}",
                f"write it as a section: [tasks.{name}]",
            )
            continue
        values = b.checked(raw, path, TASK_KEYS, f"[tasks.{name}]")
        for backend in values.get("backends", ()):
            if backend not in ("all", "auto") and backend not in backends:
                b.bad(
                    (*path, "backends"),
                    f"[tasks.{name}] names backend '{backend}', which is not configured",
                    _backend_hint(backend, backends),
                )
        prompts: list[TaskPrompt] = []
        raw_prompts = values.get("prompts", [])
        if not isinstance(raw_prompts, list):
            raw_prompts = [raw_prompts]
        for index, item in enumerate(raw_prompts):
            where = (*path, "prompts", index)
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("name"), str)
                or not isinstance(item.get("prompt"), str)
            ):
                b.bad(
                    where,
                    f"[[tasks.{name}.prompts]] entry {index + 1} needs a name and a prompt",
                    f'write [[tasks.{name}.prompts]] with name = "..." and prompt = "..."',
                )
                continue
            for key in item:
                if key not in ("name", "prompt"):
                    b.unknown(where, key, {"name", "prompt"}, f"[[tasks.{name}.prompts]]")
            prompts.append(TaskPrompt(item["name"], item["prompt"]))
        out[name] = TaskConfig(
            name=name,
            description=values.get("description", ""),
            backends=values.get("backends", ()),
            prompts=tuple(prompts),
        )
    return out
