"""A team cache's storage: any fsspec URL, holding artifacts and action-cache entries.

    <url>/objects/<algorithm>/<first two hex>/<rest>         an artifact's bytes, by digest
    <url>/actions/<algorithm>/<first two hex>/<rest>.json    a key's result (lokfile.store.tiered)

The only module that imports fsspec (and through it s3fs, gcsfs, …), and only
when a `[cache] remote` is configured. `[cache.storage_options]` go to fsspec
as they are; credentials come from the environment, read by the storage
library itself, and never pass through lok.

Every call answers, raises FileNotFoundError for an object that is not there
(reads only), or raises RemoteError: whatever the storage library raised
(no network, access denied, no such bucket on write, a missing extra) turned
into one message at this boundary. A local folder (`file://` or a path) is
written atomically (a temporary name, then a rename); an object store writes
an object whole by itself.
"""

from __future__ import annotations

import os
import re
import uuid
from typing import Any

from lokfile import hashing
from lokfile.errors import EXIT_FAILED, LokError

HINT = "check [cache] remote and [cache.storage_options] in lok.toml, and the credentials in the environment"


class RemoteError(LokError):
    """The team cache cannot be used: the message says why, in one line (exit 1 from
    `lok cache`; a run says it once and goes on with the local cache)."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, hint: str | None = HINT) -> None:
        super().__init__(message, hint)


def redact(url: str) -> str:
    """`url` without anything between `://` and `@` (a user name or a password)."""
    return re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@]*@", r"\1", url)


def _why(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]


class Remote:
    """The team cache at `url` (an fsspec URL or an absolute folder path)."""

    def __init__(self, url: str, storage_options: dict[str, Any]) -> None:
        self.url = redact(url)
        try:
            import fsspec  # type: ignore[import-untyped,import-not-found,unused-ignore]
        except ImportError as exc:
            raise RemoteError(
                f"the team cache {self.url} needs fsspec: pip install 'lokfile[s3]'"
            ) from exc
        try:
            fs, root = fsspec.core.url_to_fs(url, **storage_options)
        except ImportError as exc:
            s3 = url.startswith(("s3://", "s3a://"))
            need = "pip install 'lokfile[s3]'" if s3 else _why(exc)
            raise RemoteError(f"the team cache {self.url} needs a package: {need}") from exc
        except Exception as exc:  # an unknown protocol, options the library refuses
            raise RemoteError(f"the team cache {self.url} cannot be opened: {_why(exc)}") from exc
        self.fs = fs
        self.root = str(root).rstrip("/")
        protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
        self.local = "file" in protocols or "local" in protocols

    # -- where things are -----------------------------------------------------

    def object_path(self, digest: str) -> str:
        algo, hexpart = hashing.split(digest)
        return f"{self.root}/objects/{algo}/{hexpart[:2]}/{hexpart[2:]}"

    def action_path(self, key: str) -> str:
        algo, hexpart = hashing.split(key)
        return f"{self.root}/actions/{algo}/{hexpart[:2]}/{hexpart[2:]}.json"

    # -- reading and writing -----------------------------------------------------

    def read(self, path: str) -> bytes:
        """The bytes at `path`; FileNotFoundError when nothing is there."""
        try:
            data: bytes = self.fs.cat_file(path)
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise RemoteError(f"cannot read {self.url}: {_why(exc)}") from exc
        return data

    def exists(self, path: str) -> bool:
        try:
            return bool(self.fs.exists(path))
        except Exception as exc:
            raise RemoteError(f"cannot read {self.url}: {_why(exc)}") from exc

    def write(self, path: str, data: bytes) -> None:
        """Put `data` at `path`, whole (a reader never sees a part of it under that name)."""
        try:
            if self.local:
                folder = path.rsplit("/", 1)[0]
                os.makedirs(folder, exist_ok=True)
                tmp = f"{folder}/.tmp-{uuid.uuid4().hex}"
                with open(tmp, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, path)
            else:
                self.fs.pipe_file(path, data)
        except Exception as exc:  # FileNotFoundError here is a missing bucket: an error too
            raise RemoteError(f"cannot write to {self.url}: {_why(exc)}") from exc

    def listing(self, kind: str) -> set[str]:
        """Every digest under `objects` or key under `actions`."""
        base = f"{self.root}/{kind}"
        try:
            paths = self.fs.find(base)
        except FileNotFoundError:
            return set()
        except Exception as exc:
            raise RemoteError(f"cannot list {self.url}: {_why(exc)}") from exc
        out: set[str] = set()
        for path in paths:
            parts = str(path).rstrip("/").split("/")
            if len(parts) < 3 or parts[-1].startswith(".tmp-"):
                continue
            algo, fan, rest = parts[-3], parts[-2], parts[-1].removesuffix(".json")
            out.add(f"{algo}:{fan}{rest}")
        return out
