"""`apply_edits`, `verify` and `fix_retries` of an LLM step, and `lok runs revert`.

An answer carries `{"edits": [{"file" | "path", "old", "new"}, …], "summary"?}`,
fenced or raw. Every edit is checked before any file is written: the path
stays inside the project root once symlinks are resolved (no `..`, no
absolute paths, nothing under .lok/ or .git/), the file exists or `old` is
empty to create it, and `old` occurs exactly once. The files about to change
are snapshotted into the store first, with a manifest artifact

    {"version": 1,
     "files": {path: digest of the original | null for a new file},
     "after": {path: digest of what the step wrote},   (stored too)
     "modes": {path: permission bits | null},
     "dirs":  [folders created for new files, outermost first]}

so a failed edit or verify restores the tree byte for byte (new files and
the folders made for them removed), and `revert` can undo a successful step
later. A successful step's result carries each touched file's digest before and
after (`EditOutcome.record`); when the tree has lost the edits, the engine sends
them back here as `EditSettings.replay`, and the stored after-bytes are written
again (snapshot, journal, verify and restore as for any edit) without asking
the backend. The engine links a successful step's manifest into its run folder as
`runs/<run>/<step>.snapshot.json` (see `snapshot_filename`); gc keeps what
it names, and `revert` finds it there. With `fix_retries`, the backend is asked again with the error, against
the restored tree, and everything starts over.

Edit steps take a lock (`.lok/runs/edits.lock`) while they write and verify,
so two edit steps never interleave on the same tree; it is released while
the backend is asked again. Before the first file is written, the originals
are also made durable in a journal (lokfile/worker/journal.py), so that if lok dies
anywhere between the first write and the end of verify, the next lok command
puts the files back.

A path an answer names is only ever data: one with a NUL byte, a name or a
path too long for the file system, or a symlink loop is an edit failure that
names it, like any other bad edit, and nothing is written.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lokfile.store.artifacts import Store
from lokfile.worker import journal, verify
from lokfile.worker.snapshots import (
    Change,
    Plan,
    ReplayError,
    apply_plan,
    refresh_after,
    replay_plan,
    restore,
    snapshot,
)

if TYPE_CHECKING:
    from lokfile.worker.cancel import Cancel
    from lokfile.worker.jobs import EditSettings

PROTECTED = (".lok", ".git")
FIX_MARKER = "## Your previous answer failed"


class RequeryFailed(Exception):
    """The backend could not be asked again for a corrected answer."""


class EditError(Exception):
    """An answer's edits cannot be applied; the message says which and why."""


@dataclass(frozen=True)
class Edit:
    file: str
    old: str
    new: str


@dataclass(frozen=True)
class EditOutcome:
    """What came of an answer: ok, the final answer text, the error, the snapshot manifest."""

    ok: bool
    text: str
    error: str | None = None
    snapshot: str | None = None  # digest of the manifest artifact, when files changed
    files: tuple[str, ...] = ()  # paths changed, relative to the root
    attempts: int = 1
    # with apply_edits: {"count": edits applied, "files": {path: [before | None, after]}},
    # the digests the step's result is fresh against (see lokfile.engine.freshness)
    record: dict[str, Any] | None = None


# -- reading the answer --------------------------------------------------------


def parse_edits(text: str) -> tuple[list[Edit], str | None]:
    """The edits and summary in an answer; EditError when there is no usable edits JSON."""
    doc = _edits_object(text)
    if doc is None:
        raise EditError('no JSON object with an "edits" list in the answer')
    raw = doc["edits"]
    if not isinstance(raw, list):
        raise EditError(f'"edits" must be a list, got {type(raw).__name__}')
    out = []
    for n, item in enumerate(raw, 1):
        if not isinstance(item, dict):
            raise EditError(f"edit {n} is not an object")
        path = item.get("file", item.get("path"))
        old, new = item.get("old", ""), item.get("new")
        if not isinstance(path, str) or not path.strip():
            raise EditError(f'edit {n} has no "file"')
        if not isinstance(old, str) or not isinstance(new, str):
            raise EditError(f'edit {n} ({path}): "old" and "new" must be strings')
        out.append(Edit(path.strip(), old, new))
    summary = doc.get("summary")
    return out, summary if isinstance(summary, str) else None


def _edits_object(text: str) -> dict[str, Any] | None:
    from lokfile.outputs import MISSING, json_value

    value = json_value(text, "{")
    if isinstance(value, dict) and "edits" in value:
        return value
    # the first object was something else: try the object around each "edits" key
    at = text.find('"edits"')
    while at >= 0:
        start = text.rfind("{", 0, at)
        if start >= 0:
            value = json_value(text[start:], "{")
            if value is not MISSING and isinstance(value, dict) and "edits" in value:
                return value
        at = text.find('"edits"', at + 1)
    return None


# -- checking ------------------------------------------------------------------


def _shown(name: str) -> str:
    """A path as an error message shows it: control characters escaped, long ones cut."""
    text = name.encode("unicode_escape").decode("ascii") if not name.isprintable() else name
    return text if len(text) <= 200 else text[:120] + f"… ({len(name)} characters)"


def _target(root: Path, name: str) -> tuple[str, Path]:
    """(path relative to the real root, absolute real path) of an edit's file."""
    if "\x00" in name:
        raise EditError(f"{_shown(name)}: a path cannot contain a NUL byte")
    try:
        return _resolve_target(root, name)
    except RuntimeError:  # Python before 3.13 reports a symlink loop this way
        raise EditError(f"{_shown(name)}: goes through a symlink loop") from None
    except OSError as exc:
        raise EditError(f"{_shown(name)}: {exc.strerror or exc}") from None


def _resolve_target(root: Path, name: str) -> tuple[str, Path]:
    if name.startswith(("/", "~")) or os.path.isabs(name):
        raise EditError(f"{name}: absolute paths are refused (give a path inside the project)")
    parts = Path(name).parts
    if ".." in parts:
        raise EditError(f"{name}: '..' is refused (give a path inside the project)")
    real_root = root.resolve()
    real = (real_root / name).resolve()
    if not real.is_relative_to(real_root):
        raise EditError(f"{name}: resolves outside the project root (through a symlink)")
    rel = real.relative_to(real_root)
    if rel.parts and rel.parts[0] in PROTECTED:
        raise EditError(f"{name}: lok does not edit files under {rel.parts[0]}/")
    if not rel.parts:
        raise EditError(f"{name}: is the project root, not a file")
    return rel.as_posix(), real


def plan(edits: list[Edit], root: Path) -> Plan:
    """Check every edit against the tree (nothing is written); EditError lists every problem."""
    result = Plan()
    problems: list[str] = []
    for edit in edits:
        try:
            _plan_one(edit, root, result)
        except EditError as exc:
            problems.append(str(exc))
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise EditError("; ".join(problems) if len(problems) <= 3 else problems[0] + more)
    return result


def _plan_one(edit: Edit, root: Path, result: Plan) -> None:
    rel, real = _target(root, edit.file)
    try:
        _plan_file(edit, rel, real, root, result)
    except OSError as exc:  # a name too long, a loop below the root, no permission …
        raise EditError(f"{_shown(edit.file)}: {exc.strerror or exc}") from None


def _plan_file(edit: Edit, rel: str, real: Path, root: Path, result: Plan) -> None:
    planned = result.files.get(rel)
    if planned is None:
        if real.is_dir():
            raise EditError(f"{edit.file}: is a folder")
        if real.exists():
            data = real.read_bytes()
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raise EditError(f"{edit.file}: is not UTF-8 text") from None
            planned = Change(data, text, real.stat().st_mode & 0o7777, "\r\n" in text)
        else:
            if edit.old:
                raise EditError(f'{edit.file}: file not found (an empty "old" creates a file)')
            planned = Change(None, "", None)
            _plan_dirs(root.resolve(), real.parent, result)
        result.files[rel] = planned
    if not edit.old:
        if planned.after:
            raise EditError(f'{edit.file}: "old" is empty but the file already has content')
        planned.after = edit.new
        return
    old, new = edit.old, edit.new
    count = planned.after.count(old)
    if count == 0 and planned.crlf and "\r\n" not in old:
        old, new = old.replace("\n", "\r\n"), new.replace("\n", "\r\n")
        count = planned.after.count(old)
    if count == 0:
        snippet = edit.old[:50].replace("\n", "\\n")
        raise EditError(f"{edit.file}: old text not found: {snippet!r}")
    if count > 1:
        raise EditError(
            f"{edit.file}: ambiguous edit, old text appears {count} times (make it more specific)"
        )
    planned.after = planned.after.replace(old, new, 1)


def _plan_dirs(real_root: Path, folder: Path, result: Plan) -> None:
    missing: list[str] = []
    while not folder.exists() and folder != real_root:
        missing.append(folder.relative_to(real_root).as_posix())
        folder = folder.parent
    if folder.exists() and not folder.is_dir():
        raise EditError(f"{folder.relative_to(real_root)}: is a file, not a folder")
    for d in reversed(missing):
        if d not in result.dirs:
            result.dirs.append(d)


# -- snapshot, write, restore ----------------------------------------------------


# -- the loop run by the worker ----------------------------------------------------


@contextmanager
def _edit_lock(store: Store) -> Iterator[None]:
    import fcntl

    store.runs_dir.mkdir(parents=True, exist_ok=True)
    with open(store.runs_dir / "edits.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def fix_prompt(prompt: str, error: str) -> str:
    """The prompt that asks again: the original, the failure, and what to send back."""
    return (
        f"{prompt.rstrip()}\n\n{FIX_MARKER}\n\n"
        f"```\n{error.strip()}\n```\n\n"
        "Every file was put back as it was before your edits. Reply again, in the same "
        "format, with edits that fix this."
    )


def apply_and_verify(
    answer_text: str,
    prompt: str,
    settings: EditSettings,
    root: Path,
    store: Store,
    timeout_s: float | None,
    requery: Callable[[str], str],
    emit: Callable[[str], None],
    cancel: Cancel | None = None,
    who: tuple[str, str, str] = ("", "", ""),
) -> EditOutcome:
    """Apply an answer's edits and verify them, asking again up to `fix_retries` times.

    `cancel` set (the worker is stopping) ends the loop: no verify starts, nobody
    is asked again, and files already written are put back. `who` (run, step,
    unit) names the edit in its journal.
    """
    check = verify.resolve(settings.verify, root) if settings.verify else None
    if check is not None and settings.verify and check.verify is None:
        emit(f"verify: nothing to run ({check.source})")
    text = answer_text
    tries = settings.fix_retries + 1
    for attempt in range(1, tries + 1):
        if attempt > 1:
            emit(f"fix attempt {attempt - 1}/{settings.fix_retries}")
        replay = settings.replay if attempt == 1 else None
        with _edit_lock(store):
            error, snap, record = _attempt(
                text, settings, check, root, store, timeout_s, emit, cancel, who, replay
            )
        if error is None:
            files = tuple(sorted(record["files"])) if record else ()
            kept = record if settings.apply_edits else None
            return EditOutcome(True, text, None, snap, files, attempt, kept)
        emit(error.splitlines()[0])
        if attempt == tries or _stopping(cancel):
            return EditOutcome(False, text, error, None, (), attempt)
        emit(f"asking again with the error ({attempt}/{settings.fix_retries})")
        try:
            text = requery(fix_prompt(prompt, error))
        except RequeryFailed as exc:
            return EditOutcome(False, text, f"{error}\nre-query failed: {exc}", None, (), attempt)
    raise AssertionError("unreachable")


INTERRUPTED = "interrupted: lok was stopped; the files were put back as they were"


def _stopping(cancel: Cancel | None) -> bool:
    return cancel is not None and cancel.is_set()


def _read_edits(
    text: str,
    root: Path,
    store: Store,
    replay: tuple[tuple[str, str | None, str], ...] | None,
) -> tuple[int, Plan]:
    """(how many edits, the plan that writes them): from the answer, or with `replay`
    the stored after-bytes of an earlier success. EditError when they cannot apply."""
    if replay is not None:
        try:
            count = len(parse_edits(text)[0])
        except EditError:
            count = len(replay)
        stored = {rel: (before, after) for rel, before, after in replay}
        try:
            return count, replay_plan(stored, root, store)
        except ReplayError as exc:
            raise EditError(str(exc)) from None
    edits, _summary = parse_edits(text)
    return len(edits), plan(edits, root) if edits else Plan()


def _attempt(
    text: str,
    settings: EditSettings,
    check: verify.Check | None,
    root: Path,
    store: Store,
    timeout_s: float | None,
    emit: Callable[[str], None],
    cancel: Cancel | None = None,
    who: tuple[str, str, str] = ("", "", ""),
    replay: tuple[tuple[str, str | None, str], ...] | None = None,
) -> tuple[str | None, str | None, dict[str, Any] | None]:
    """One try: (error or None, manifest digest, the edit record). A failure leaves no trace."""
    edit_plan = Plan()
    count = 0
    if settings.apply_edits:
        try:
            count, edit_plan = _read_edits(text, root, store, replay)
        except EditError as exc:
            return f"edit failed: {exc}", None, None
        if not count:
            emit("no edits in the answer")
    if not edit_plan.files:  # verify only: nothing to put back
        record: dict[str, Any] = {"count": count, "files": {}}
        if check is None or not check.verify:
            return None, None, record
        if _stopping(cancel):
            return INTERRUPTED, None, None
        failure = _verify(check, (), root, timeout_s, settings.command_wrapper, emit)
        if failure is not None:
            return (INTERRUPTED if _stopping(cancel) else failure), None, None
        return None, None, record
    manifest, snap = snapshot(edit_plan, store)
    originals = {
        manifest["files"][rel]: p.before
        for rel, p in edit_plan.files.items()
        if p.before is not None
    }
    with cancel.editing() if cancel is not None else nullcontext():
        if _stopping(cancel):
            return INTERRUPTED, None, None
        journal.write(store.runs_dir, manifest, originals, who)  # durable before the first write
        try:
            error = _write_and_check(
                (count, edit_plan), check, settings, root, timeout_s, emit, cancel, replay is not None
            )
        except BaseException:
            _put_back(manifest, root, store)
            raise
        if error is not None:
            _put_back(manifest, root, store)
            emit("restored the files as they were")
            return error, None, None
        if check is not None and check.format_files:
            snap = refresh_after(manifest, root, store) or snap
        journal.clear(store.runs_dir)
    files = {rel: [manifest["files"][rel], manifest["after"][rel]] for rel in manifest["files"]}
    return None, snap, {"count": count, "files": files}


def _write_and_check(
    planned: tuple[int, Plan],
    check: verify.Check | None,
    settings: EditSettings,
    root: Path,
    timeout_s: float | None,
    emit: Callable[[str], None],
    cancel: Cancel | None,
    replayed: bool = False,
) -> str | None:
    """Write the edits (`planned`: how many, and the plan), then verify them; the error,
    or None when they stay."""
    count, edit_plan = planned
    try:
        if not apply_plan(edit_plan, root, lambda: _stopping(cancel)):
            return INTERRUPTED  # lok stops: the files written so far are put back
    except OSError as exc:
        return f"edit failed: {exc}"
    if replayed:
        emit(f"wrote the stored edits again to {len(edit_plan.files)} file(s)")
    else:
        emit(f"applied {count} edit(s) to {len(edit_plan.files)} file(s)")
    if check is None or not check.verify:
        return None
    if _stopping(cancel):
        return INTERRUPTED
    files = tuple(sorted(edit_plan.files))
    failure = _verify(check, files, root, timeout_s, settings.command_wrapper, emit)
    if failure is not None and _stopping(cancel):
        return INTERRUPTED  # verify was ended because lok stops, not because it failed
    return failure


def _put_back(manifest: dict[str, Any], root: Path, store: Store) -> None:
    """Restore the snapshot, then drop the journal (it stays if the restore fails)."""
    restore(manifest, root, store)
    journal.clear(store.runs_dir)


def _verify(
    check: verify.Check,
    files: tuple[str, ...],
    root: Path,
    timeout_s: float | None,
    wrapper: str | None,
    emit: Callable[[str], None],
) -> str | None:
    existing = [f for f in files if (root / f).is_file()]
    fmt = verify.format_command(check, existing)
    if fmt:
        emit(f"format: {fmt}")
        done = verify.run(fmt, root, timeout_s, wrapper)
        if not done.ok:
            emit(f"format failed (ignored): {(done.error or '').splitlines()[0]}")
    assert check.verify is not None
    emit(f"verify: {check.verify}")
    result = verify.run(check.verify, root, timeout_s, wrapper)
    if result.ok:
        emit("verification passed")
        return None
    return f"verification failed: {result.error}"


