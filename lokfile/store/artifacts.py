"""Content-addressed artifacts under `.lok/runs/objects/`, and run folders.

An artifact is immutable and named by its digest:
`objects/<algorithm>/<first two hex>/<rest>`. Writes go to a temporary file in
the same folder and are renamed into place, so a crash never leaves a partial
artifact under its final name; writing an artifact that exists is a no-op.

A run folder (`runs/<run-id>/`) holds one symlink per step output pointing at
its artifact, and `run.json`; `runs/latest` points at the newest run folder.
A replayed no-op (lokfile.engine.snapshot) repeats an earlier run's outputs
exactly, so its folder is one symlink to that run's folder (`alias_run`): the
same files to `ls`, O(1) entries per no-op instead of one per step. Its own
record is in lok.db; the run.json seen through it is the earlier run's, and
`write_run_json` never writes through an alias.

A write that fails because the disk is full raises DiskFullError, naming
what could not be written and where; anything else stays an OSError.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lokfile import hashing


class Store:
    """Artifacts by digest, plus the run folders beside them."""

    def __init__(self, runs_dir: Path) -> None:
        self.runs_dir = runs_dir
        self.objects_dir = runs_dir / "objects"
        self._later: list[tuple[str, str, str]] = []  # links to make (link_later)

    # -- artifacts ---------------------------------------------------------

    def path(self, digest: str) -> Path:
        """Where the artifact named `digest` lives (it may not exist)."""
        algo, hexpart = hashing.split(digest)
        return self.objects_dir / algo / hexpart[:2] / hexpart[2:]

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def put(self, data: bytes) -> str:
        """Store `data`; return its digest."""
        digest = hashing.digest_bytes(data)
        algo, hexpart = hashing.split(digest)
        folder = f"{self.objects_dir}/{algo}/{hexpart[:2]}"
        target = f"{folder}/{hexpart[2:]}"
        if os.path.isfile(target):
            return digest
        # a private temporary name in the same folder, created read-only, renamed into place
        tmp = f"{folder}/.tmp-{os.getpid()}-{threading.get_ident()}-{next(_serial)}"
        try:
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
            except FileNotFoundError:
                os.makedirs(folder, exist_ok=True)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, target)
            except BaseException:
                _unlink_quietly(tmp)
                raise
        except OSError as exc:
            _raise_if_full(exc, f"an artifact of {len(data)} bytes", self.objects_dir)
            raise
        return digest

    def put_text(self, text: str) -> str:
        return self.put(text.encode())

    def put_file(self, source: Path) -> str:
        """Store a copy of a file's bytes; return its digest."""
        return self.put(source.read_bytes())

    def get(self, digest: str) -> bytes:
        """The bytes of an artifact (FileNotFoundError when missing)."""
        algo, hexpart = hashing.split(digest)
        with open(f"{self.objects_dir}/{algo}/{hexpart[:2]}/{hexpart[2:]}", "rb") as fh:
            return fh.read()

    def get_text(self, digest: str) -> str:
        return self.get(digest).decode("utf-8", errors="replace")

    def restore(self, digest: str, dest: Path) -> None:
        """Write an artifact's bytes to `dest` atomically (for declared outputs)."""
        data = self.get(digest)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            import tempfile  # here: the no-op fast path imports this module, and never restores

            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".lok-restore-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, dest)
            except BaseException:
                _unlink_quietly(tmp)
                raise
        except OSError as exc:
            _raise_if_full(exc, "a declared output", dest)
            raise

    def iter_objects(self) -> Iterator[tuple[str, Path]]:
        """Every (digest, path) in the store."""
        if not self.objects_dir.is_dir():
            return
        for algo_dir in sorted(self.objects_dir.iterdir()):
            if not algo_dir.is_dir():
                continue
            for fan in sorted(algo_dir.iterdir()):
                if not fan.is_dir():
                    continue
                for obj in sorted(fan.iterdir()):
                    if not obj.name.startswith(".tmp-"):
                        yield f"{algo_dir.name}:{fan.name}{obj.name}", obj

    def verify(self, digest: str) -> bool:
        """True when the artifact exists and its bytes still hash to its name."""
        path = self.path(digest)
        algo, _ = hashing.split(digest)
        if algo != hashing.ALGORITHM or not path.is_file():
            return False
        return hashing.digest_file(str(path)) == digest

    # -- run folders ---------------------------------------------------------

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def link_output(self, run_id: str, filename: str, digest: str) -> None:
        """Make `runs/<run>/<filename>` show the artifact `digest`."""
        link = os.path.join(self.runs_dir, run_id, filename)
        algo, hexpart = hashing.split(digest)
        up = "../" * (filename.count("/") + 1)
        target = f"{up}objects/{algo}/{hexpart[:2]}/{hexpart[2:]}"
        try:
            try:
                os.symlink(target, link)
            except FileExistsError:
                os.unlink(link)
                os.symlink(target, link)
            except FileNotFoundError:
                os.makedirs(os.path.dirname(link), exist_ok=True)
                os.symlink(target, link)
        except OSError as exc:
            _raise_if_full(exc, f"the run folder entry {filename}", self.run_dir(run_id))
            raise

    def link_later(self, run_id: str, filename: str, digest: str) -> None:
        """`link_output`, made at the next `link_pending`: a run folder is a view of what
        lok.db holds, so the coordinator makes its links while the next jobs run."""
        self._later.append((run_id, filename, digest))

    def link_pending(self) -> None:
        """Make the links `link_later` was given (DiskFullError drops the rest)."""
        later, self._later = self._later, []
        for run_id, filename, digest in later:
            self.link_output(run_id, filename, digest)

    def alias_run(self, run_id: str, base: str) -> bool:
        """Make `runs/<run_id>` a symlink to the real folder `runs/<base>` (whose outputs the
        run repeats); False, and nothing written, when `base` is not such a folder."""
        target = self.run_dir(base)
        if not target.is_dir() or target.is_symlink():
            return False
        try:
            os.symlink(base, self.run_dir(run_id))
        except OSError as exc:
            _raise_if_full(exc, "a run folder", self.runs_dir)
            raise
        return True

    def write_run_json(self, run_id: str, doc: dict[str, Any]) -> None:
        """Write `run.json` atomically: the run's fields, then one line per step."""
        folder = self.run_dir(run_id)
        if folder.is_symlink():
            return  # an alias: that file is the earlier run's, this run's record is lok.db
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            _raise_if_full(exc, "a run folder", self.runs_dir)
            raise
        steps = doc.get("steps", [])
        head = {k: v for k, v in doc.items() if k != "steps"}
        encode = json.JSONEncoder(sort_keys=True, ensure_ascii=False).encode
        lines = [f'  "{k}": {encode(v)},' for k, v in sorted(head.items())]
        body = ",\n".join("    " + encode(s) for s in steps)
        text = "{\n" + "\n".join(lines) + '\n  "steps": [\n' + body + "\n  ]\n}\n"
        try:
            import tempfile

            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-run-")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(text)
                os.replace(tmp, folder / "run.json")
            except BaseException:
                _unlink_quietly(tmp)
                raise
        except OSError as exc:
            _raise_if_full(exc, "run.json", folder)
            raise

    def set_latest(self, run_id: str) -> None:
        """Atomically repoint `runs/latest` at `run_id`."""
        tmp = self.runs_dir / f".latest-{os.getpid()}"
        _unlink_quietly(str(tmp))
        try:
            os.symlink(run_id, tmp)
            os.replace(tmp, self.runs_dir / "latest")
        except OSError as exc:
            _raise_if_full(exc, "runs/latest", self.runs_dir)
            raise


_serial = itertools.count()


_PLAIN_NAME = re.compile(r"[a-z0-9_-]+")
_RESERVED = frozenset({"run"})  # run.json is the run folder's own file


def output_filename(step: str, suffix: str = ".txt", unit: str = "") -> str:
    """The file name of a step's output (or a unit's, e.g. its edit snapshot) inside a run
    folder: one name per (step, unit), even on a disk that ignores case.

        deep-dive        ->  deep-dive.txt                  lower-case letters, digits, - _
        fix/one          ->  fix_one~b9ba019f52db.txt       anything else: a readable
        Fix, fix one     ->  Fix~…, fix_one~…               part, then ~ and a hash of
        fix + item:0     ->  fix_item_0~….snapshot.json     the exact (step, unit)

    A plain name cannot hold `~` or `.`, so it never meets a hashed one, a suffix, or
    run.json; distinct hashed names differ in their lower-case hex.
    """
    if not unit and _PLAIN_NAME.fullmatch(step) and step not in _RESERVED:
        return step + suffix
    readable = "_".join(_readable(part) for part in (step, unit) if part)[:60]
    import hashlib

    tag = hashlib.sha256(json.dumps([step, unit]).encode()).hexdigest()[:12]
    return f"{readable}~{tag}{suffix}"


def legacy_output_filename(step: str, suffix: str = ".txt", unit: str = "") -> str:
    """The name lok gave before names were made distinct (`fix/one` and `fix one` both
    `fix_one.txt`); read only to find what older runs recorded."""
    name = f"{step}.{unit}" if unit else step
    return ("".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "_") + suffix


def _readable(text: str) -> str:
    return "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in text)


def _raise_if_full(exc: OSError, what: str, where: object) -> None:
    """Say a full disk plainly (DiskFullError); any other OSError is the caller's to raise."""
    from lokfile.errors import disk_full

    full = disk_full(exc, what, where)
    if full is not None:
        raise full from exc


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
