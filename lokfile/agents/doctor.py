"""`lok doctor`: which configured backends can answer now, and the document it reports.

    check_backends   the chosen backends, checked in parallel: (chosen, checks, ready)
    doctor_document  the `lok doctor --json` document of those checks
    where            where a backend lives, for a person (its url or its command line)

The quick verdict is the one `auto` and `lok ask` use (lokfile.backends.ready);
a backend that passes it gets its own deeper check (version, model list).
`lok doctor` and the MCP server's `doctor` tool both report through here, so
they say the same thing. Keys are never reported, only whether their variable
is set.
"""

from __future__ import annotations

import shlex
from typing import Any

from lokfile.backends import registry
from lokfile.model import BackendConfig, Config

Check = tuple[Any, Any]  # (readiness verdict, Health or None)


def where(backend: BackendConfig) -> str:
    """Where a backend lives, for a person: its url, or its command line."""
    if registry.family(backend.type) == "http" or (backend.url and not backend.command):
        return str(backend.url or backend.command or "(default)")
    if backend.command:
        return shlex.join([*shlex.split(backend.command), *backend.args])
    return f"{backend.type} (default)"


def check(backend: BackendConfig, probe: bool) -> Check:
    """(readiness, Health or None): the shared quick verdict (lokfile.backends.ready),
    then, for a backend that can answer, its own deeper check (version, model list);
    with `probe` a one-line prompt decides (not answered: not ready)."""
    from lokfile.backends import create
    from lokfile.backends.base import BackendError, Health
    from lokfile.backends.ready import readiness

    verdict = readiness(backend)
    if not verdict.ready:
        return verdict, None
    try:
        health = create(backend).health(probe=probe)
    except BackendError as exc:
        return verdict, Health(ready=False, detail=exc.message)
    except Exception as exc:  # a plugin's bug: report it, check the others
        return verdict, Health(
            ready=False, detail=f"health check crashed: {type(exc).__name__}: {exc}"
        )
    if probe and not health.ready:
        # --probe asked it to answer: one that did not is not ready, whatever it lists
        from lokfile.backends.ready import Readiness

        return Readiness(False, health.detail), health
    return verdict, health


def check_backends(
    config: Config, names: str | None, probe: bool = False
) -> tuple[list[BackendConfig], dict[str, Check], list[str]]:
    """(the backends asked about, each enabled one's check, the names of the ready ones).

    `names` is `-b a,b` (None: every configured backend); checks run in parallel.
    """
    from concurrent.futures import ThreadPoolExecutor

    from lokfile.agents.ask import parse_names, select

    wanted = parse_names(names)
    if wanted is None:
        chosen = [config.backends[n] for n in sorted(config.backends)]
    else:
        chosen = list(select(config, wanted))
    enabled = [b for b in chosen if b.enabled]
    with ThreadPoolExecutor(max_workers=max(1, len(enabled))) as pool:
        checks = dict(
            zip(
                [b.name for b in enabled],
                pool.map(lambda b: check(b, probe), enabled),
                strict=True,
            )
        )
    ready = [b.name for b in enabled if checks[b.name][0].ready]
    return chosen, checks, ready


def doctor_document(
    chosen: list[BackendConfig], checks: dict[str, Check], ready: list[str]
) -> dict[str, Any]:
    """The `lok doctor --json` document."""
    return {
        "backends": [health_json(b, checks.get(b.name)) for b in chosen],
        "ready": ready,
        "ok": bool(ready),
    }


def health_json(backend: BackendConfig, checked: Check | None) -> dict[str, Any]:
    """One backend's entry in the doctor document."""
    doc: dict[str, Any] = {
        "name": backend.name,
        "type": backend.type,
        "enabled": backend.enabled,
        "where": where(backend),
    }
    if checked is None:
        return {**doc, "ready": False, "checked": False}
    verdict, health = checked
    return {
        **doc,
        "checked": True,
        "ready": verdict.ready,
        "healthy": health.ready if health is not None else False,
        "found": health.found if health is not None else False,
        "version": health.version if health is not None else None,
        "detail": health.detail if health is not None else verdict.detail,
        "key_set": key_set(backend),
        "api_key_env": backend.api_key_env,
    }


def key_set(backend: BackendConfig) -> bool | None:
    """Whether the backend's key variable holds a value (None: it needs no key)."""
    import os


    var = backend.api_key_env or registry.key_env(backend.type)
    return None if not var else bool(os.environ.get(var, "").strip())
