"""Checking the merged lok.toml layers and building `Config` from them.

Every key of every section has a checker that converts its value or says
what was expected; unknown keys get the close match. Problems are collected,
never raised one by one, and located at the file (and line) that set the key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lokfile import tomlfile
from lokfile.backends import registry
from lokfile.backends.keys import COMMON_KEYS, OPTION_KEYS
from lokfile.config.sharing import CACHE_KEYS, EXECUTOR_KEYS, cache_config, executor_config
from lokfile.durations import EXPECTED_S, DurationError, parse_seconds
from lokfile.errors import ConfigError, Problem
from lokfile.model import (
    BackendConfig,
    BudgetConfig,
    ConductorConfig,
    Config,
    ConsensusConfig,
    Defaults,
    TaskConfig,
    TaskPrompt,
)
from lokfile.tomlfile import BadValue, did_you_mean

if TYPE_CHECKING:
    from lokfile.config.layers import Layers

Key = tuple[str | int, ...]
Checker = Callable[[Any], Any]


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
    from lokfile.errors import TemplateError
    from lokfile.templates.shellquote import places

    try:
        places(text.split("{cmd}"))  # where each {cmd} lands, as lok will quote it
    except TemplateError as exc:
        where = exc.message.removeprefix("lok cannot quote ").removesuffix(" safely")
        raise BadValue(
            f"a command whose {{cmd}} lok can quote, not {where.replace('a template value', '{cmd}')}",
            value,
            "\"nix-shell --run '{cmd}'\"",
        ) from None
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
        **CACHE_KEYS,
    },
    "executor": EXECUTOR_KEYS,
    "conductor": {
        "max_rounds": _positive,
        "max_tokens": _positive,
        "backend": tomlfile.want_str,
    },
    "consensus": {
        "synthesizer": tomlfile.want_str,
        "weights": tomlfile.want_table,
    },
    "budget": {
        "max_cost_usd": lambda v: _non_negative(tomlfile.want_number(v), v),
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
    "price": lambda v: _price(v),
}
PRICE_KEYS = ("input_per_mtok", "output_per_mtok", "cache_read_per_mtok", "cache_write_per_mtok")
PRICE_EXAMPLE = "{ input_per_mtok = 3.0, output_per_mtok = 15.0 }"
TASK_KEYS: dict[str, Checker] = {
    "description": tomlfile.want_str,
    "backends": tomlfile.want_str_list,
    "prompts": lambda v: v,  # checked item by item below
}


def _price(value: Any) -> dict[str, float]:
    """`price`: dollars per million tokens; input and output are required."""
    if not isinstance(value, dict):
        raise BadValue("a table of dollars per million tokens", value, PRICE_EXAMPLE)
    out: dict[str, float] = {}
    for key, raw in value.items():
        if key not in PRICE_KEYS:
            close = did_you_mean(key, list(PRICE_KEYS))
            wanted = f"only {', '.join(PRICE_KEYS)}" + (f" (did you mean '{close}'?)" if close else "")
            raise BadValue(wanted, {key: raw}, PRICE_EXAMPLE)
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw < 0:
            raise BadValue(f"{key} as a non-negative number of dollars", raw, PRICE_EXAMPLE)
        out[key] = float(raw)
    missing = [k for k in PRICE_KEYS[:2] if k not in out]
    if missing:
        raise BadValue(f"a table with {' and '.join(missing)}", value, PRICE_EXAMPLE)
    return out


def _non_negative(number: float, raw: Any) -> float:
    if number < 0:
        raise BadValue("a non-negative number", raw, "24")
    return number


# --------------------------------------------------------------------------
# Building Config from the merged document
# --------------------------------------------------------------------------


class _Builder:
    def __init__(self, layers: Layers) -> None:
        self.layers = layers
        self.problems: list[Problem] = []

    def bad(self, path: Key, message: str, hint: str) -> None:
        """Record a problem at `path`."""
        self.problems.append(self.layers.problem(path, message, hint))

    def unknown(self, path: Key, key: str, allowed: list[str] | set[str], where: str) -> None:
        """Record an unknown key with the closest allowed one."""
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
        """The merged table `[name]` (empty, with a problem, if it is not a table)."""
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


def build(layers: Layers) -> Config:
    """The Config of the merged `layers`; ConfigProblems lists everything wrong."""
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
    budget = values["budget"]
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
    cache = cache_config(c, b.bad)
    executor = executor_config(values["executor"], b.bad)
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
        cache=cache,
        executor=executor,
        conductor=ConductorConfig(
            max_rounds=k.get("max_rounds", 5),
            max_tokens=k.get("max_tokens", 4096),
            backend=k.get("backend"),
        ),
        consensus=ConsensusConfig(synthesizer=s.get("synthesizer"), weights=weights),
        budget=BudgetConfig(max_cost_usd=budget.get("max_cost_usd")),
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
        if registry.is_builtin(kind):  # common keys without a checker here pass through unchecked
            allowed = (COMMON_KEYS - BACKEND_KEYS.keys()) | registry.extra_keys(kind)
        values = b.checked(raw, path, BACKEND_KEYS, f"[backends.{name}]", allowed)
        options: dict[str, Any] = dict(values.pop("options", {}))
        _check_http(b, name, kind, options, values)  # the `options` table's own keys
        for key in sorted(OPTION_KEYS):
            if key in values:
                options[key] = values.pop(key)
        command = values.get("command")
        url = values.get("url")
        if (
            registry.family(kind) == "http"
            and command
            and command.startswith(("http://", "https://"))
            and (url is None or _only_built_in(b, (*path, "url"), (*path, "command")))
        ):
            url = command  # the original's way to give the address, over the built-in url
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
            price=values.get("price"),
        )
    return out


def _check_http(
    b: _Builder, name: str, kind: str, options: dict[str, Any], values: dict[str, Any]
) -> None:
    """`stream` is true or false; `options` holds only what the type forwards to its API."""
    path: Key = ("backends", name)
    if "stream" in values and not isinstance(values["stream"], bool):
        b.bad(
            (*path, "stream"),
            f"[backends.{name}] stream must be true or false, got {tomlfile.describe(values['stream'])}",
            "for example: stream = false",
        )
    if registry.family(kind) != "http":
        return
    forwarded = registry.option_keys(kind)
    for key in options:
        if key == "stream":
            b.bad(
                (*path, "options", key),
                f"[backends.{name}] options.stream is not a generation option",
                f"to turn streaming off write stream = false in [backends.{name}]",
            )
        elif forwarded is not None and key not in forwarded:
            b.bad(
                (*path, "options", key),
                f"[backends.{name}] options.{key} is not a parameter lok forwards to the {kind} API",
                f"{kind} options: {', '.join(sorted(forwarded))}",
            )


def _only_built_in(b: _Builder, key: Key, other: Key) -> bool:
    """`key` keeps its built-in value while a config file set `other`."""
    origins = b.layers.origins
    return origins.get(key) == "built-in" and origins.get(other) != "built-in"


def _backend_type(b: _Builder, name: str, raw: dict[str, Any]) -> str | None:
    kind = raw.get("type")
    if kind is not None:
        if not isinstance(kind, str) or not kind:
            b.bad(
                ("backends", name, "type"),
                f"[backends.{name}] type must be a type name, got {tomlfile.describe(kind)}",
                f"types: {', '.join(registry.names())} (or an installed plugin's)",
            )
            return None
        close = None if registry.is_builtin(kind) else did_you_mean(kind, list(registry.names()))
        # A type close to a built-in one is a typo; any other may be a plugin's, looked up
        # when the backend is used (a user config must not break where a plugin is absent).
        if close is not None and kind not in _plugin_types():
            b.bad(
                ("backends", name, "type"),
                f"[backends.{name}] unknown type '{kind}' (did you mean '{close}'?)",
                f"types: {', '.join(registry.names())}, or an installed plugin's",
            )
            return None
        return kind
    implied = registry.implied_type(name, raw.get("command"))
    if implied is not None:
        return implied
    b.bad(
        ("backends", name),
        f"[backends.{name}] has no type",
        f'add type = "..." (one of {", ".join(registry.names())}, or an installed plugin\'s type)',
    )
    return None


def _plugin_types() -> set[str]:
    """Backend types installed packages register (read only for a type that is not built in:
    for such a type, being known means being a plugin's)."""
    return set(registry.known_types())


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
