"""`lok ask`: one prompt to several backends at once, answers cached by content.

The cache key is the digest of {prompt, backend identity, cache salt}: the
backend's identity (type, command, url, model, options, …) and never its
secrets, the working directory or the order of the backends. Each backend's
answer is cached on its own, as an artifact in the store; failures are never
cached. `[cache] ttl_hours` ages entries out; `--no-cache` or `[cache]
enabled = false` skip the cache both ways.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lokfile.backends import create
from lokfile.backends.base import BackendError, ErrorKind, Request
from lokfile.errors import UsageError
from lokfile.model import BackendConfig, Config

CACHE_SCHEMA = 1


@dataclass(frozen=True)
class AskResult:
    """One backend's outcome: an answer (maybe from the cache) or a failure."""

    name: str
    text: str = ""
    error: BackendError | None = None
    cached: bool = False
    elapsed_s: float = 0.0
    model: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        """The result as `lok ask --json` prints it."""
        err = self.error
        return {
            "backend": self.name,
            "ok": self.ok,
            "text": self.text if self.ok else None,
            "cached": self.cached,
            "model": self.model,
            "elapsed_ms": round(self.elapsed_s * 1000),
            "error": None
            if err is None
            else {
                "kind": err.kind.value,
                "message": err.message,
                "summary": err.summary(),
                "retry_after": err.retry_after,
            },
        }


def parse_names(raw: str | None) -> list[str] | None:
    """`-b a, b` as ['a', 'b'] (trimmed, empties and repeats dropped); None when not given."""
    if raw is None:
        return None
    names: list[str] = []
    for part in raw.split(","):
        name = part.strip()
        if name and name not in names:
            names.append(name)
    return names


def select(config: Config, names: list[str] | None) -> list[BackendConfig]:
    """The backends to ask: the named ones in the given order, else every enabled one, sorted."""
    configured = sorted(config.backends)
    if names is None:
        chosen = [config.backends[n] for n in configured if config.backends[n].enabled]
        if not chosen:
            raise UsageError(
                "no backend is configured and enabled",
                "add a [backends.NAME] table to lok.toml (`lok backends` lists them)",
            )
        return chosen
    if not names:
        raise UsageError("-b names no backend", f"configured: {', '.join(configured) or 'none'}")
    out: list[BackendConfig] = []
    for name in names:
        cfg = config.backends.get(name)
        if cfg is None:
            close = _close_match(name, configured)
            raise UsageError(
                f"unknown backend '{name}'" + (f" (did you mean '{close}'?)" if close else ""),
                f"configured backends: {', '.join(configured) or 'none'}",
            )
        if not cfg.enabled:
            raise UsageError(
                f"backend '{name}' is disabled", f"set enabled = true in [backends.{name}]"
            )
        out.append(cfg)
    return out


def _close_match(name: str, options: Sequence[str]) -> str | None:
    import difflib

    found = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    return found[0] if found else None


def unavailable(error: BackendError) -> bool:
    """Not there at all (no binary, nothing listening), rather than failing."""
    return error.kind is ErrorKind.NOT_INSTALLED or (
        error.kind is ErrorKind.NETWORK and error.message.startswith("cannot connect")
    )


def cache_key(prompt: str, backend: BackendConfig, salt: str = "") -> str:
    """The digest that names this prompt asked of this backend (see the module docstring)."""
    from lokfile.hashing import digest_json

    return digest_json(
        {"ask": CACHE_SCHEMA, "prompt": prompt, "backend": backend.identity(), "salt": salt}
    )


class AskCache:
    """Answers by key: the text in the store, the key -> digest row in the run database.

    The database is opened on first need: a project that has none yet costs
    nothing to read (there is nothing to find), and creating it overlaps the
    queries (`prepare`) instead of delaying them.
    """

    def __init__(
        self, runs_dir: Path, db_path: Path, ttl_hours: float | None, salt: str = ""
    ) -> None:
        from lokfile.store.artifacts import Store

        self.store = Store(runs_dir)
        self.db_path = db_path
        self.ttl_s = ttl_hours * 3600 if ttl_hours else None
        self.salt = salt
        self.warnings: list[str] = []
        self._db: Any = None
        self._broken = False

    def prepare(self) -> Any:
        """The open run database (None, with a warning, when it cannot be opened)."""
        if self._db is None and not self._broken:
            from lokfile.errors import LokError
            from lokfile.store.rundb import RunDB

            try:
                self._db = RunDB.open(self.db_path)
            except (LokError, OSError) as exc:
                self._broken = True
                self.warnings.append(f"answers are not cached: {exc}")
        return self._db

    def close(self) -> None:
        """Close the database if it was opened."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def get(self, prompt: str, backend: BackendConfig, now: float | None = None) -> str | None:
        """The cached answer, or None when absent, expired or unreadable."""
        if self._db is None and not self.db_path.exists():
            return None
        db = self.prepare()
        if db is None:
            return None
        try:
            entry = db.cache_get(cache_key(prompt, backend, self.salt))
            if entry is None:
                return None
            age = (now if now is not None else time.time()) - float(entry.created_at)
            if self.ttl_s is not None and (age > self.ttl_s or age < -60):
                return None  # expired, or written by a clock far ahead of ours
            text: str = self.store.get(entry.digest).decode("utf-8")
            return text
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            self.warnings.append(f"cache read for {backend.name}: {exc}")
            return None

    def put(self, prompt: str, backend: BackendConfig, text: str) -> None:
        """Remember a successful answer (never call this with a failure)."""
        db = self.prepare()
        if db is None:
            return
        try:
            digest = self.store.put(text.encode("utf-8"))
            db.cache_put(cache_key(prompt, backend, self.salt), digest)
        except Exception as exc:  # a cache that cannot be written must not fail the answer
            self.warnings.append(f"cache write for {backend.name}: {exc}")


def choose(
    config: Config, wanted: list[str] | None
) -> tuple[list[BackendConfig], dict[str, Any]]:
    """(the backends to ask, the verdicts of those left out): the named ones whatever
    their state, else every enabled one that can answer now (NoBackend when none can)."""
    chosen = select(config, wanted)
    if wanted is not None:
        return chosen, {}
    from lokfile.backends.ready import check_all, no_backend

    verdicts = check_all(chosen)
    ready = [b for b in chosen if verdicts[b.name].ready]
    if not ready:
        raise no_backend(config, verdicts, "this prompt")
    return ready, {b.name: verdicts[b.name] for b in chosen if not verdicts[b.name].ready}


@dataclass(frozen=True)
class AskReport:
    """What one `lok ask` found: the answers, and who was left out and why."""

    prompt: str
    results: list[AskResult]
    not_ready: dict[str, Any]  # name -> readiness verdict: not asked
    skipped: list[AskResult]  # asked, but not there at all (no binary, nothing listening)
    warnings: list[str]  # the cache's troubles

    @property
    def ok(self) -> bool:
        return any(r.ok for r in self.results)

    def to_json(self) -> dict[str, Any]:
        """The `lok ask --json` document."""
        return {
            "prompt": self.prompt,
            "ok": self.ok,
            "results": [r.to_json() for r in self.results],
            "skipped": [{"backend": n, "summary": v.detail} for n, v in self.not_ready.items()]
            + [
                {"backend": r.name, "summary": r.error.summary()}
                for r in self.skipped
                if r.error is not None
            ],
        }


def ask_chosen(
    project: Any,
    config: Config,
    prompt: str,
    chosen: tuple[list[BackendConfig], dict[str, Any]],
    named: bool,
    cwd: str,
    no_cache: bool = False,
    notify: Callable[[str, str], None] | None = None,
) -> AskReport:
    """Ask the backends `choose` picked, through the cache (unless `no_cache` or
    `[cache] enabled = false`); without `named`, a backend that is not there at all
    is left out of the results, as not available."""
    backends, not_ready = chosen
    cache = None if no_cache or not config.cache.enabled else open_cache(project, config)
    try:
        results = ask(prompt, backends, config, cwd, cache, notify=notify)
    finally:
        if cache is not None:
            cache.close()
    skipped: list[AskResult] = []
    if not named:
        skipped = [r for r in results if r.error is not None and unavailable(r.error)]
        results = [r for r in results if r not in skipped]
    warnings = list(cache.warnings) if cache is not None else []
    return AskReport(prompt, results, not_ready, skipped, warnings)


def open_cache(project: Any, config: Config) -> AskCache:
    """The ask cache: the project's .lok/, or the user's cache outside a lok project."""
    from lokfile.project import Project

    if not (project.lok_dir.is_dir() or project.config_path.is_file()):
        # not a lok project: keep answers in the user's cache rather than strew .lok/ folders
        project = Project(user_cache_dir() / "ask")
    return AskCache(project.runs_dir, project.db_path, config.cache.ttl_hours, config.cache.salt)


def user_cache_dir() -> Path:
    """`~/.cache/lok` (honouring XDG_CACHE_HOME)."""
    import os

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lok"


def timeout_for(backend: BackendConfig, config: Config) -> float | None:
    """The backend's `timeout`, else `[defaults] timeout` (0 = none)."""
    value = backend.timeout_s if backend.timeout_s is not None else config.defaults.timeout_s
    return value or None


def query_one(backend: BackendConfig, request: Request) -> AskResult:
    """Ask one backend once; every failure becomes a result, never an exception."""
    started = time.monotonic()
    try:
        answer = create(backend).query(request)
    except BackendError as exc:
        return AskResult(backend.name, error=exc, elapsed_s=time.monotonic() - started)
    except Exception as exc:  # a plugin's bug is that backend's failure, not the command's
        err = BackendError(ErrorKind.FAILED, f"{type(exc).__name__}: {exc}")
        return AskResult(backend.name, error=err, elapsed_s=time.monotonic() - started)
    return AskResult(
        backend.name, answer.text, elapsed_s=time.monotonic() - started, model=answer.model
    )


def ask(
    prompt: str,
    backends: Sequence[BackendConfig],
    config: Config,
    cwd: str,
    cache: AskCache | None = None,
    runner: Callable[[BackendConfig, Request], AskResult] = query_one,
    notify: Callable[[str, str], None] | None = None,
) -> list[AskResult]:
    """Every backend's result, in the order given; the misses are asked in parallel
    (one after another, in that order, with `[defaults] parallel = false`).

    The cache is read and written in this thread only (one database
    connection); the queries run in one thread each. `notify(backend, text)`
    hears each backend's transport retries.
    """
    results: dict[str, AskResult] = {}
    misses: list[BackendConfig] = []
    for backend in backends:
        hit = cache.get(prompt, backend) if cache is not None else None
        if hit is not None:
            results[backend.name] = AskResult(backend.name, hit, cached=True, model=backend.model)
        else:
            misses.append(backend)
    if misses:
        jobs = [
            (
                b,
                Request(
                    prompt=prompt,
                    cwd=cwd,
                    timeout_s=timeout_for(b, config),
                    notify=_told(notify, b.name),
                ),
            )
            for b in misses
        ]
        meanwhile = cache.prepare if cache is not None else None
        if config.defaults.parallel:
            done = _in_parallel(jobs, runner, meanwhile)
        else:
            done = [
                r
                for i, job in enumerate(jobs)
                for r in _in_parallel([job], runner, meanwhile if i == 0 else None)
            ]
        for backend, result in zip(misses, done, strict=True):
            results[backend.name] = result
            if result.ok and cache is not None:
                cache.put(prompt, backend, result.text)
    return [results[b.name] for b in backends]


def _told(
    notify: Callable[[str, str], None] | None, name: str
) -> Callable[[str], None] | None:
    if notify is None:
        return None
    return lambda text: notify(name, text)


def _in_parallel(
    jobs: Sequence[tuple[BackendConfig, Request]],
    runner: Callable[[BackendConfig, Request], AskResult],
    meanwhile: Callable[[], object] | None = None,
) -> list[AskResult]:
    """Run every job in its own daemon thread and wait for all of them
    (calling `meanwhile` in this thread once they are started).

    Daemon threads (not an executor) so that Ctrl-C returns at once: the CLIs
    still running are stopped, process group and all, and the HTTP exchanges
    die with the interpreter.
    """
    import threading

    from lokfile.backends import subproc

    slots: list[AskResult | None] = [None] * len(jobs)

    def work(index: int, backend: BackendConfig, request: Request) -> None:
        slots[index] = runner(backend, request)

    threads = [
        threading.Thread(target=work, args=(i, b, r), name=f"lok-ask-{b.name}", daemon=True)
        for i, (b, r) in enumerate(jobs)
    ]
    for thread in threads:
        thread.start()
    try:
        if meanwhile is not None:
            meanwhile()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)
    except KeyboardInterrupt:
        subproc.stop_all()
        raise
    out: list[AskResult] = []
    for (backend, _), slot in zip(jobs, slots, strict=True):
        lost = BackendError(ErrorKind.FAILED, "the query thread ended without a result")
        out.append(slot if slot is not None else AskResult(backend.name, error=lost))
    return out
