"""The hash contract: canonical JSON and algorithm-prefixed digests.

- Canonical JSON: `json.dumps(obj, sort_keys=True, separators=(",", ":"),
  ensure_ascii=False)` encoded as UTF-8. Only JSON types go in.
- A digest is `"<algorithm>:<lowercase hex>"`; today the algorithm is
  `xxh3-128` (32 hex digits). Every stored digest carries its prefix, so a
  later algorithm can live beside this one without silently mixing stores.
- A step key is the digest of the canonical JSON of its key components
  (see `plan.key_components`), which start with KEY_SCHEMA.

Changing anything here changes every key: bump KEY_SCHEMA when you do.
"""

from __future__ import annotations

import json
from typing import Any

import xxhash

ALGORITHM = "xxh3-128"
PREFIX = ALGORITHM + ":"
KEY_SCHEMA = 1
_CHUNK = 1 << 20


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def canonical_json(obj: Any) -> bytes:
    """The one byte encoding of a JSON value that every key is computed over (what
    `json.dumps` with these settings writes; one encoder, not one per call)."""
    return _CANONICAL(obj).encode()


def digest_bytes(data: bytes) -> str:
    """`xxh3-128:<hex>` of `data`."""
    return PREFIX + xxhash.xxh3_128_hexdigest(data)


def digest_text(text: str) -> str:
    """Digest of the UTF-8 encoding of `text`."""
    return digest_bytes(text.encode())


def digest_json(obj: Any) -> str:
    """Digest of the canonical JSON of `obj`."""
    return digest_bytes(canonical_json(obj))


def digest_file(path: str) -> str:
    """Digest of a file's bytes, read in chunks."""
    h = xxhash.xxh3_128()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return PREFIX + h.hexdigest()


def split(digest: str) -> tuple[str, str]:
    """(algorithm, hex) of a digest; ValueError for a malformed one."""
    algo, sep, hexpart = digest.partition(":")
    if not sep or not algo or len(hexpart) < 3 or "/" in digest or "." in hexpart:
        raise ValueError(f"not a digest: {digest!r}")
    return algo, hexpart
