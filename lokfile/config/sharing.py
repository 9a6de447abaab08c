"""Checking the settings that reach beyond one machine: `[cache] remote…` and `[executor]`.

    [cache]
    remote = "s3://bucket/prefix"        any fsspec URL; file:///… for a shared folder
    remote_mode = "read-only"            or "read-write" (the default)
    [cache.storage_options]              handed to fsspec as they are, except credentials:
    client_kwargs = { endpoint_url = "http://…" }   those come from the environment

    [executor]
    type = "dask"                        or "local" (the default: worker processes here)
    address = "tcp://HOST:PORT"          the Dask scheduler (dask:// is the same)

Nothing here imports fsspec or distributed: a URL is checked for its shape, and
the protocol is looked up when the cache is first used.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from lokfile import tomlfile
from lokfile.model import CacheConfig, ExecutorConfig
from lokfile.tomlfile import BadValue

Key = tuple[str | int, ...]
Bad = Callable[[Key, str, str], None]

REMOTE_MODES = ("read-write", "read-only")
EXECUTOR_TYPES = ("local", "dask")
DASK_SCHEMES = ("dask://", "tcp://", "tls://")
# storage option names that hold a credential (s3fs key/secret/token, gcsfs token, adlfs
# account_key/sas_token, …): a config file is shared, so credentials come from the environment
_SECRET = re.compile(
    r"^(key|secret|token|password|passwd|credentials?)$|secret|password|token|access_key"
    r"|account_key|connection_string|credential",
    re.IGNORECASE,
)
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_USERINFO = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@]*:[^/@]*@", re.IGNORECASE)


def remote_url(value: Any) -> str:
    """A team cache location: an fsspec URL, or an absolute folder path."""
    text = tomlfile.want_str(value).strip()
    if not text or not (_URL.match(text) or text.startswith("/")):
        raise BadValue(
            "an fsspec URL (s3://bucket/prefix, file:///path) or an absolute folder path",
            value,
            '"s3://team-bucket/lok"',
        )
    if _USERINFO.match(text):
        raise BadValue(
            "a URL without a password in it (credentials come from the environment)",
            value,
            '"s3://team-bucket/lok"',
        )
    return text


def remote_mode(value: Any) -> str:
    text = tomlfile.want_str(value)
    if text not in REMOTE_MODES:
        raise BadValue(" or ".join(f'"{m}"' for m in REMOTE_MODES), value, '"read-only"')
    return text


def executor_type(value: Any) -> str:
    text = tomlfile.want_str(value)
    if text not in EXECUTOR_TYPES:
        raise BadValue(" or ".join(f'"{t}"' for t in EXECUTOR_TYPES), value, '"dask"')
    return text


def dask_address(value: Any) -> str:
    """A Dask scheduler address, as distributed spells it (dask:// becomes tcp://)."""
    text = tomlfile.want_str(value).strip()
    if not text.startswith(DASK_SCHEMES) or not re.search(r"://[^:/]+:\d+$", text):
        raise BadValue("a scheduler address tcp://HOST:PORT", value, '"tcp://10.0.0.5:8786"')
    return "tcp://" + text.removeprefix("dask://") if text.startswith("dask://") else text


CACHE_KEYS: dict[str, Callable[[Any], Any]] = {
    "remote": remote_url,
    "remote_mode": remote_mode,
    "storage_options": tomlfile.want_table,
}
EXECUTOR_KEYS: dict[str, Callable[[Any], Any]] = {"type": executor_type, "address": dask_address}


def secrets_in(options: dict[str, Any], path: Key = ()) -> list[Key]:
    """The paths of storage options whose names say they hold a credential."""
    found: list[Key] = []
    for key, value in options.items():
        here = (*path, key)
        if _SECRET.search(str(key)):
            found.append(here)
        elif isinstance(value, dict):
            found += secrets_in(value, here)
    return found


def cache_config(c: dict[str, Any], bad: Bad) -> CacheConfig:
    """`[cache]` as checked values; credentials among the storage options are problems."""
    options: dict[str, Any] = c.get("storage_options", {})
    for path in secrets_in(options):
        dotted = ".".join(str(p) for p in path)
        bad(
            ("cache", "storage_options", *path),
            f"[cache.storage_options] {dotted} is a credential, and lok.toml is shared",
            "remove it: credentials come from the environment (for S3: AWS_ACCESS_KEY_ID, "
            "AWS_SECRET_ACCESS_KEY, AWS_PROFILE) or the storage tool's own config files",
        )
    if c.get("storage_options") and not c.get("remote"):
        bad(
            ("cache", "storage_options"),
            "[cache.storage_options] is set but [cache] has no remote",
            'add remote = "s3://bucket/prefix" to [cache], or remove [cache.storage_options]',
        )
    return CacheConfig(
        enabled=c.get("enabled", True),
        ttl_hours=c.get("ttl_hours") or None,
        salt=c.get("salt", ""),
        remote=c.get("remote"),
        remote_mode=c.get("remote_mode", "read-write"),
        storage_options=options,
    )


def executor_config(e: dict[str, Any], bad: Bad) -> ExecutorConfig:
    """`[executor]` as checked values: a Dask executor needs its scheduler's address."""
    kind = e.get("type", "local")
    address = e.get("address")
    if kind == "dask" and address is None:
        bad(
            ("executor", "type"),
            '[executor] type = "dask" needs the scheduler\'s address',
            'add address = "tcp://HOST:PORT" to [executor] (where `dask scheduler` listens)',
        )
    return ExecutorConfig(type=kind, address=address)
