"""A cache of loaded workflows, keyed by file content, for big files.

tomllib is pure Python: a 1000-step workflow (about 200 kB) takes 60–100 ms
to parse on a slow machine, most of the budget of a no-op `lok run`. A loaded
workflow unpickles in a few milliseconds, so files over `MIN_BYTES` that
load cleanly are kept in the user cache folder (`~/.cache/lok/workflows`).

The key covers everything the result depends on: the file's bytes, its path
and origin, the configured backend names and default backend (validation
reads them), the Python version, and the size and mtime of lok's own modules
(a changed validator must not serve stale results). Only single-file
workflows are cached: with `extends`, which file a name resolves to can
change without any file's content changing. Failures are never cached, and a
cache that cannot be read or written is simply not used.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
from pathlib import Path

from lokfile.codestamp import code_stamp
from lokfile.model import Config, Workflow

MIN_BYTES = 16 * 1024  # below this, parsing is as fast as reading the cache
MAX_ENTRIES = 64
FORMAT = b"lok-workflow-cache-1"


def cache_dir() -> Path:
    """`$XDG_CACHE_HOME/lok/workflows`, else `~/.cache/lok/workflows`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lok" / "workflows"


def _code_stamp() -> bytes:
    """What loading depends on: the workflow, config and templates wings and the ground floor."""
    return repr(code_stamp("workflow", "config", "templates")).encode()


def key(data: bytes, path: Path, origin: str, config: Config) -> str:
    """The cache key of the workflow in `path` holding `data`, loaded under `config`."""
    digest = hashlib.blake2b(digest_size=20)
    for part in (
        FORMAT,
        sys.version.encode(),
        _code_stamp(),
        str(path).encode(),
        origin.encode(),
        "\0".join(sorted(config.backends)).encode(),
        (config.defaults.backend or "").encode(),
        data,
    ):
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()


def get(cache_key: str, folder: Path | None = None) -> Workflow | None:
    """The cached workflow for `cache_key`, if there is a readable one."""
    try:
        blob = ((folder or cache_dir()) / cache_key).read_bytes()
        found = pickle.loads(blob)
    except Exception:  # a missing, truncated or foreign entry is a miss, never an error
        return None
    return found if isinstance(found, Workflow) else None


def put(cache_key: str, workflow: Workflow, folder: Path | None = None) -> None:
    """Keep `workflow` under `cache_key` (best effort; the oldest entries go past MAX_ENTRIES)."""
    folder = folder or cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{cache_key}.{os.getpid()}.tmp"
        tmp.write_bytes(pickle.dumps(workflow, protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(tmp, folder / cache_key)
        entries = sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime_ns)
        for old in entries[:-MAX_ENTRIES]:
            old.unlink(missing_ok=True)
    except OSError:
        pass
