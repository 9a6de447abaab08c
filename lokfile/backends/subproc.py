"""Running a backend CLI under lok's deadline.

The CLI runs through lokfile.process.run, lok's one runner of commands: in a
session of its own, so at the deadline (or on Ctrl-C, `stop_all`) lok stops the
CLI *and* everything it spawned with the runner's one kill policy (SIGTERM to
the group and its family, a grace, SIGKILL). The kernel SIGKILLs it if lok dies
(PR_SET_PDEATHSIG), so a killed `lok ask` leaves no CLI behind. Prompts travel
on stdin or in a file, never through a shell.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Protocol

from lokfile.backends.base import Answer, BackendError, ErrorKind, Health, Request
from lokfile.model import BackendConfig
from lokfile.process.run import Finished, Running
from lokfile.process.run import run as run_command
from lokfile.process.run import stop_all as stop_commands

# CLIs running right now, so that Ctrl-C can stop them from the main thread.
_LIVE: set[Running] = set()
_LIVE_LOCK = threading.Lock()
# Variables that make a nested agent CLI believe it runs inside another one.
_NESTING_VARS = ("CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT")


Completed = Finished  # what a CLI left behind: exit code, both streams, how long it took


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """lok's environment for a CLI: inherited, minus nesting markers, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in _NESTING_VARS}
    for key, value in (extra or {}).items():
        env[str(key)] = str(value)
    return env


def resolve_program(program: str, env: Mapping[str, str] | None = None) -> str:
    """The executable's full path, or BackendError NOT_INSTALLED naming what is missing."""
    path = (env or os.environ).get("PATH")
    found = shutil.which(program, path=path)
    if found is None:
        raise BackendError(ErrorKind.NOT_INSTALLED, f"'{program}' was not found on PATH")
    return found


def run(
    argv: Sequence[str],
    *,
    stdin: bytes | None = None,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: float | None = None,
) -> Completed:
    """Run argv to completion or until `timeout_s`, whichever comes first.

    `stdin` None means the child's stdin is closed (/dev/null), so a CLI that
    waits for input cannot hang. On the deadline the CLI's whole tree is
    ended and BackendError(TIMEOUT) is raised.
    """
    program = resolve_program(argv[0], env)
    mine: list[Running] = []

    def track(live: Running) -> None:
        with _LIVE_LOCK:
            _LIVE.add(live)
        mine.append(live)

    try:
        done = run_command(
            [program, *argv[1:]],
            stdin=stdin,
            cwd=cwd or None,
            env=env,
            timeout_s=timeout_s,
            register=track,
        )
    except FileNotFoundError as exc:
        raise BackendError(
            ErrorKind.NOT_INSTALLED, f"'{argv[0]}' could not be started: {exc.strerror}"
        ) from None
    except OSError as exc:
        if exc.errno == errno.E2BIG:
            raise BackendError(
                ErrorKind.FAILED,
                f"the command line for '{argv[0]}' is too long for the operating system "
                "(send the prompt on stdin or in a file instead)",
            ) from None
        raise BackendError(ErrorKind.FAILED, f"'{argv[0]}' could not be started: {exc}") from None
    finally:
        with _LIVE_LOCK:
            _LIVE.difference_update(mine)
    if done.timed_out:
        raise BackendError(
            ErrorKind.TIMEOUT, f"'{argv[0]}' gave no answer within {timeout_s:g}s (stopped)"
        )
    return done


def stop_all() -> None:
    """Stop every CLI this process is running (Ctrl-C while backends answer in threads)."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    stop_commands(live)


def version_of(
    argv: Sequence[str], env: Mapping[str, str] | None = None, timeout_s: float = 5.0
) -> str:
    """The first non-empty output line of `argv` (a `--version` call), or BackendError."""
    done = run(argv, env=env, timeout_s=timeout_s)
    text = done.out.strip() or done.err.strip()
    if done.returncode != 0:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        # launchers such as npx print warnings before the line that matters
        errors = [ln for ln in lines if "error" in ln.lower()]
        first = (errors or lines or [f"exit code {done.returncode}"])[0]
        raise BackendError(ErrorKind.FAILED, f"'{' '.join(argv)}' failed: {first}")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # Some CLIs print warnings first; the version is the last line they print.
    return lines[-1] if lines else "unknown version"


def effective_timeout(request_timeout: float | None, config: BackendConfig) -> float | None:
    """lok's deadline for one attempt: the request's, else the backend's `timeout` (0 = none)."""
    value = request_timeout if request_timeout is not None else config.timeout_s
    return value if value else None


def program_argv(config: BackendConfig, default: str) -> list[str]:
    """`command` split into words (`npx @google/gemini-cli` is two), never through a shell."""
    import shlex

    words = shlex.split(config.command) if config.command else []
    return words or [default]


def config_env(config: BackendConfig) -> dict[str, str]:
    """The `env` table of a backend (extra variables for its CLI)."""
    table = config.extra.get("env") or {}
    return {str(k): str(v) for k, v in dict(table).items()}


def cli_health(
    config: BackendConfig,
    argv: Sequence[str],
    env: Mapping[str, str],
    key_set: bool | None = None,
    timeout_s: float = 5.0,
    install: str = "",
) -> Health:
    """Found on PATH and answering `--version` within `timeout_s`."""
    try:
        resolve_program(argv[0], env)
    except BackendError as exc:
        detail = f"{exc.message} (install: {install})" if install else exc.message
        return Health(ready=False, found=False, detail=detail, key_set=key_set)
    try:
        version = version_of([*argv, "--version"], env=env, timeout_s=timeout_s)
    except BackendError as exc:
        return Health(ready=False, found=True, detail=exc.message, key_set=key_set)
    ready = key_set is not False
    detail = "" if ready else "API key variable is not set"
    return Health(ready=ready, found=True, version=version, detail=detail, key_set=key_set)


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every secret replaced by `***` (values under 6 chars would mangle words)."""
    for secret in secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, "***")
    return text


def first_line(text: str) -> str:
    """The first non-blank line of `text`, stripped ('' if none)."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def env_key(var: str) -> str:
    """The value of the key variable `var`, or BackendError AUTH saying it is unset."""
    value = os.environ.get(var, "").strip()
    if not value:
        raise BackendError(
            ErrorKind.AUTH, f"environment variable {var} is not set (it should hold the API key)"
        )
    return value


class _Queryable(Protocol):
    def query(self, request: Request) -> Answer: ...


PROBE_PROMPT = "Reply with the single word: ok"


def probe(
    backend: _Queryable, health: Health, timeout_s: float = 60.0, keep_failure: bool = False
) -> Health:
    """`health` after sending a one-line prompt: ready only if it was answered (with
    `keep_failure`, a `health` that is not ready stays so, answered or not)."""
    try:
        backend.query(Request(prompt=PROBE_PROMPT, cwd=".", timeout_s=timeout_s))
    except BackendError as exc:
        return replace(
            health, ready=False, detail=_join(health.detail, f"probe failed: {exc.summary()}")
        )
    return replace(
        health,
        ready=health.ready or not keep_failure,
        detail=_join(health.detail, "probe answered"),
    )


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def split_args(
    args: Sequence[str], lok_flags: Mapping[str, int], lok_words: Sequence[str] = ()
) -> tuple[list[str], list[str]]:
    """Configured `args` as (leading words, other args), minus what lok adds itself.

    Leading words are the ones before the first flag: `npx`'s package name
    (`args = ["@google/gemini-cli"]`) belongs right after the command, and a
    subcommand lok adds anyway (`exec` for codex, in `lok_words`) is dropped.
    `lok_flags` maps each flag lok sets to the number of values it takes, so
    the original's `args = ["exec", "--json", …]` do not end up twice.
    """
    words: list[str] = []
    rest: list[str] = []
    leading = True
    skip = 0
    for arg in args:
        if skip:
            skip -= 1
            continue
        if leading and not arg.startswith("-"):
            if arg not in lok_words:
                words.append(arg)
            continue
        leading = False
        name = arg.split("=", 1)[0]
        if name in lok_flags:
            skip = 0 if "=" in arg else lok_flags[name]
            continue
        rest.append(arg)
    return words, rest
