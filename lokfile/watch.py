"""Watch mode's eyes: which paths matter to a workflow, and threads that report them.

The only watchfiles user. A `WatchSet` names what can make a workflow stale:
its files (the workflow, what it extends, the config) and its steps' source
globs. Files are watched through their folders, not by inode, because editors
save by writing a new file and renaming it over the old one. Source globs are
watched from their fixed prefix down. `.lok/` never triggers a rerun (the run
writes there), except for files named outright, such as `.lok/workflows/x.toml`;
nor do a step's declared `outputs` (the run writes those too, even when fresh).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from lokfile.model import Config, Workflow

_MAGIC = frozenset("*?[")

# watchfiles yields a batch once nothing changed for STEP_MS (or after DEBOUNCE_MS at most)
STEP_MS = 50
DEBOUNCE_MS = 400
# how often the watcher thread wakes without events; it also bounds how long arming takes to show
WAKE_MS = 100


def _magic(text: str) -> bool:
    return bool(_MAGIC & set(text))


def _match_parts(pattern: list[str], parts: list[str]) -> bool:
    """glob.glob(recursive=True) semantics on path segments: `**` spans folders, dot-names hide."""
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        for i in range(len(parts) + 1):
            if _match_parts(rest, parts[i:]):
                return True
            if i < len(parts) and parts[i].startswith("."):
                return False
        return False
    if not parts:
        return False
    part = parts[0]
    if not _magic(head):
        return head == part and _match_parts(rest, parts[1:])
    if part.startswith(".") and not head.startswith("."):
        return False
    return fnmatchcase(part, head) and _match_parts(rest, parts[1:])


def _existing(folder: Path) -> Path:
    """`folder`, or its nearest ancestor that exists."""
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    return folder


@dataclass(frozen=True)
class WatchSet:
    """What can make one workflow stale, and so what watch mode listens to."""

    root: Path
    files: frozenset[Path] = frozenset()
    patterns: tuple[str, ...] = ()  # step sources, relative to root
    ignored: tuple[str, ...] = ()  # declared step outputs, relative to root

    def _parts(self, pattern: str) -> list[str]:
        full = os.path.normpath(os.path.join(self.root, pattern))
        return full.split(os.sep)

    def _matches(self, pattern: str, path: str) -> bool:
        return _match_parts(self._parts(pattern), os.path.normpath(path).split(os.sep))

    def wants(self, path: str) -> bool:
        """True when a change to `path` (absolute) can make the workflow stale."""
        p = Path(os.path.normpath(path))
        if p in self.files:
            return True
        if p.is_relative_to(self.root / ".lok"):
            return False
        if p.is_dir():
            # a folder made (or moved) in: its files may predate the watch on it
            return any(self._wants_file(f) for f in _files_under(p))
        return self._wants_file(str(p))

    def explain(self, path: str) -> list[str]:
        """The paths to name for a wanted change: a new folder's matching files, else `path`."""
        p = Path(path)
        if p in self.files or not p.is_dir():
            return [path]
        return [f for f in _files_under(p) if self._wants_file(f)] or [path]

    def _wants_file(self, path: str) -> bool:
        if any(self._matches(pat, path) for pat in self.ignored):
            return False
        return any(self._matches(pat, path) for pat in self.patterns)

    def folders(self) -> tuple[frozenset[Path], frozenset[Path]]:
        """(folders to watch flat, folders to watch with everything under them)."""
        flat: set[Path] = set()
        deep: set[Path] = set()
        for f in self.files:
            parent = f.parent
            (flat if parent.is_dir() else deep).add(_existing(parent))
        for pattern in self.patterns:
            parts = self._parts(pattern)
            fixed = list(_prefix(parts))
            base = Path(os.sep.join(fixed) or os.sep)
            if len(fixed) == len(parts):  # a literal path: its folder is enough
                parent = base.parent
                (flat if parent.is_dir() else deep).add(_existing(parent))
            else:
                deep.add(_existing(base))
        # a flat folder inside a deep one is already covered
        flat = {f for f in flat if not any(f.is_relative_to(d) for d in deep)}
        return frozenset(flat), frozenset(deep)

    def describe(self) -> str:
        """`2 files and 3 source patterns` — for the 'watching' line."""
        n, m = len(self.files), len(self.patterns)
        text = f"{n} file{'s' * (n != 1)}"
        if m:
            text += f" and {m} source pattern{'s' * (m != 1)}"
        return text

    def show(self, path: str) -> str:
        """`path` as the user named it: relative to the project root when inside it."""
        p = Path(path)
        return str(p.relative_to(self.root)) if p.is_relative_to(self.root) else path


def _files_under(folder: Path, limit: int = 2000) -> Iterable[str]:
    """Up to `limit` file paths below `folder` (a bound: a new folder may be a whole clone)."""
    seen = 0
    for dirpath, _dirs, names in os.walk(folder):
        for name in names:
            yield os.path.join(dirpath, name)
            seen += 1
            if seen >= limit:
                return


def _prefix(parts: list[str]) -> Iterable[str]:
    for part in parts:
        if _magic(part):
            return
        yield part


def watch_set(
    root: Path, workflow: Workflow | None, config: Config | None, extra: Iterable[Path] = ()
) -> WatchSet:
    """The WatchSet of a loaded workflow (or, while it is broken, of the files we know)."""
    files: set[Path] = {Path(os.path.abspath(p)).resolve() for p in extra}
    patterns: list[str] = []
    ignored: list[str] = []
    if config is not None:
        files.update(Path(os.path.abspath(f)).resolve() for f in config.files)
    if workflow is not None:
        files.update(Path(os.path.abspath(f)).resolve() for f in workflow.files)
        patterns.extend(workflow.sources)
        for step in workflow.steps:
            patterns.extend(step.sources)
            ignored.extend(step.outputs)
    return WatchSet(
        root.resolve(),
        frozenset(files),
        tuple(dict.fromkeys(patterns)),
        tuple(dict.fromkeys(ignored)),
    )


class Watcher:
    """Background threads that call `on_change(paths)` with each debounced batch of changes.

    `on_change` and `on_error` run on a watcher thread: keep them short and thread-safe.
    """

    def __init__(
        self,
        on_change: Callable[[set[str]], None],
        on_error: Callable[[str], None],
    ) -> None:
        self.on_change = on_change
        self.on_error = on_error
        self.current: WatchSet | None = None
        self._folders: tuple[frozenset[Path], frozenset[Path]] | None = None
        self._stop: threading.Event | None = None
        self._threads: list[threading.Thread] = []

    def watch(self, ws: WatchSet, ready_timeout: float = 3.0) -> None:
        """Listen to `ws` from now on; returns once the new watchers are armed."""
        self.current = ws
        folders = ws.folders()
        if folders == self._folders:
            return  # same folders: the filter reads self.current, nothing to restart
        stop = threading.Event()
        threads: list[threading.Thread] = []
        armed: list[threading.Event] = []
        for group, recursive in ((folders[0], False), (folders[1], True)):
            if not group:
                continue
            ready = threading.Event()
            t = threading.Thread(
                target=self._pump,
                args=(sorted(group), recursive, stop, ready),
                name=f"lok-watch-{'deep' if recursive else 'flat'}",
                daemon=True,
            )
            t.start()
            threads.append(t)
            armed.append(ready)
        for ready in armed:
            ready.wait(ready_timeout)
        # the old watchers stop only now, so no change falls in between
        self._retire()
        self._stop, self._threads, self._folders = stop, threads, folders

    def _retire(self) -> None:
        if self._stop is not None:
            self._stop.set()
        self._stop, self._threads = None, []

    def close(self) -> None:
        """Stop every watcher thread (they end within a few milliseconds)."""
        threads = self._threads
        self._retire()
        self._folders = None
        for t in threads:
            t.join(timeout=2)

    def _wants(self, _change: object, path: str) -> bool:
        ws = self.current
        return ws is not None and ws.wants(path)

    def _pump(
        self, folders: list[Path], recursive: bool, stop: threading.Event, ready: threading.Event
    ) -> None:
        from watchfiles import watch

        try:
            for batch in watch(
                *folders,
                watch_filter=self._wants,
                debounce=DEBOUNCE_MS,
                step=STEP_MS,
                stop_event=stop,
                rust_timeout=WAKE_MS,
                yield_on_timeout=True,  # the first (empty) yield says the watcher is armed
                debug=False,
                raise_interrupt=False,
                recursive=recursive,
                ignore_permission_denied=True,
            ):
                ready.set()
                ws = self.current
                if batch and ws is not None and not stop.is_set():
                    self.on_change({shown for _c, path in batch for shown in ws.explain(path)})
        except Exception as exc:  # a vanished folder, an inotify limit: say so, keep lok alive
            ready.set()
            if not stop.is_set():
                self.on_error(f"watching {', '.join(map(str, folders))} stopped: {exc}")
