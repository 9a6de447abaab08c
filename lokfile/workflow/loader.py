"""Workflow files: where `NAME` comes from, reading, `extends`, listing.

Resolution: a path; else `.lok/workflows/NAME.toml` under the
project root; else the user folder; else the built-in workflows. `extends`
merges a parent first (its steps in order, a child step of the same name in
its place, the child's own steps after); a file that extends its own name gets
the next layer down, so a project can extend the built-in it overrides.
Checking the merged result is `build`'s job.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lokfile import tomlfile
from lokfile.errors import LokError, Problem, UsageError, WorkflowError
from lokfile.model import ArgSpec, Config, Workflow
from lokfile.project import Project, builtin_workflows_dir, user_dir
from lokfile.workflow import cache as wfcache
from lokfile.workflow.build import build
from lokfile.workflow.draft import WORKFLOW_KEYS, Draft, DraftStep, Source, unknown_key

MAX_EXTENDS_DEPTH = 10
ORIGINS = ("project", "user", "built-in")


@dataclass(frozen=True)
class WorkflowInfo:
    """One entry of `lok workflow list`."""

    name: str  # what `lok run NAME` takes (the file name without .toml)
    origin: str  # project | user | built-in
    path: str
    description: str = ""
    steps: int = 0
    error: str | None = None  # why it does not load, if it does not
    overrides: tuple[str, ...] = ()  # lower layers holding a file of the same name
    args: tuple[ArgSpec, ...] = ()  # the declared [args] (name, default, description, required)


def _layers(project: Project | None, user_config_dir: Path | None) -> list[tuple[str, Path]]:
    out = []
    if project is not None:
        out.append(("project", project.workflows_dir))
    out.append(("user", (user_config_dir or user_dir()) / "workflows"))
    out.append(("built-in", builtin_workflows_dir()))
    return out


def _display(path: Path, cwd: Path | None = None) -> str:
    """`path` relative to the cwd when it is inside it (what a person would type)."""
    base = cwd or Path.cwd()
    try:
        return os.path.relpath(path, base) if path.is_relative_to(base) else str(path)
    except (ValueError, OSError):
        return str(path)


def find_workflow(
    name_or_path: str,
    project: Project,
    user_config_dir: Path | None = None,
    cwd: Path | None = None,
) -> tuple[Path, str]:
    """(file, origin) for `lok run NAME_OR_PATH`: origin is path, project, user or built-in."""
    base = (cwd or Path.cwd()).absolute()
    given = Path(name_or_path).expanduser()
    for candidate in (base / given, project.root / given):
        if candidate.is_file():
            return candidate.absolute(), "path"
        if candidate.is_dir() and (name_or_path.endswith(".toml") or "/" in name_or_path):
            raise _fail(
                _display(candidate, base),
                "is a directory, not a workflow file",
                "name a .toml file",
            )
    name = name_or_path[:-5] if name_or_path.endswith(".toml") else name_or_path
    looked: list[str] = [_display(base / given, base)]
    if "/" not in name and os.sep not in name and name:
        for origin, folder in _layers(project, user_config_dir):
            candidate = folder / f"{name}.toml"
            if candidate.is_file():
                return candidate.absolute(), origin
            looked.append(str(candidate))
    else:
        raise UsageError(
            f"workflow file {name_or_path} not found",
            "check the path; it is relative to the current directory",
        )
    available = [info.name for info in _scan(project, user_config_dir)]
    close = tomlfile.did_you_mean(name, available)
    raise UsageError(
        f"workflow '{name}' not found" + (f" (did you mean '{close}'?)" if close else ""),
        "looked in " + ", ".join(looked[1:]) + "; `lok workflow list` shows what exists; "
        "`lok init` creates .lok/workflows/ with an example",
    )


def load_workflow(
    name_or_path: str,
    project: Project,
    config: Config,
    user_config_dir: Path | None = None,
    cwd: Path | None = None,
) -> Workflow:
    """Find, read, merge `extends` and check a workflow; WorkflowError lists every problem."""
    path, origin = find_workflow(name_or_path, project, user_config_dir, cwd)
    return load_file(path, origin, project, config, user_config_dir)


def load_file(
    path: Path,
    origin: str,
    project: Project | None,
    config: Config,
    user_config_dir: Path | None = None,
) -> Workflow:
    """Read, merge and check the workflow in `path` (known to be `origin`)."""
    path = path.absolute()
    label = _display(path)
    data = _read_bytes(path, label)
    cache_key = None
    if len(data) >= wfcache.MIN_BYTES:
        cache_key = wfcache.key(data, path, origin, config)
        cached = wfcache.get(cache_key)
        if cached is not None:
            return cached
    source = _source(_decode(data, label), label, path, origin)
    workflow = _finish(_Resolver(project, user_config_dir).draft(source, []), config)
    if cache_key is not None and len(workflow.files) == 1:
        wfcache.put(cache_key, workflow)
    return workflow


def load_workflow_text(
    text: str,
    path: str,
    config: Config,
    origin: str = "path",
    project: Project | None = None,
    user_config_dir: Path | None = None,
) -> Workflow:
    """A workflow from TOML text; `path` names it in messages.

    `extends` is looked up in the user and built-in layers (and the project's,
    when `project` is given).
    """
    source = _source(text, path, None, origin)
    return _finish(_Resolver(project, user_config_dir).draft(source, []), config)


def _finish(draft: Draft, config: Config) -> Workflow:
    workflow, problems = build(draft, config)
    if workflow is None:
        raise WorkflowError(problems)
    return workflow


def _fail(label: str, message: str, hint: str, line: int | None = None) -> WorkflowError:
    return WorkflowError([Problem(message, label, line, hint)])


def _read(path: Path, origin: str) -> Source:
    label = _display(path)
    return _source(_decode(_read_bytes(path, label), label), label, path.absolute(), origin)


def _read_bytes(path: Path, label: str) -> bytes:
    if path.is_dir():
        raise _fail(label, "is a directory, not a workflow file", "name a .toml file")
    try:
        return tomlfile.read_bytes(path)
    except OSError as exc:
        raise _fail(
            label, f"cannot read: {exc.strerror or exc}", "check the path and its permissions"
        ) from None
    except tomlfile.TomlProblem as exc:
        raise _fail(label, exc.message, exc.hint or "", exc.line) from None


def _decode(data: bytes, label: str) -> str:
    try:
        return tomlfile.decode(data)
    except tomlfile.TomlProblem as exc:
        raise _fail(label, exc.message, exc.hint or "", exc.line) from None


def _source(text: str, label: str, path: Path | None, origin: str) -> Source:
    if "\x00" in text[:8192]:
        raise _fail(label, "file is binary, not TOML text", "a workflow file is UTF-8 text")
    try:
        data = tomlfile.parse(text)
    except tomlfile.TomlProblem as exc:
        raise _fail(label, exc.message, exc.hint or "", exc.line) from None
    if not data:
        raise _fail(
            label,
            "file is empty (no keys)",
            'a workflow needs name = "..." and at least one [[steps]] table',
        )
    return Source(label, path, text, data, origin)


def _top_level(
    source: Source,
) -> tuple[dict[str, tuple[Any, Source]], list[DraftStep], list[Problem]]:
    """The file's workflow-level keys, its step tables, and the problems seen on the way."""
    problems: list[Problem] = []
    top: dict[str, tuple[Any, Source]] = {}
    for key, value in source.data.items():
        if key not in WORKFLOW_KEYS:
            message, hint = unknown_key(key, WORKFLOW_KEYS, "at the workflow level")
            problems.append(Problem(message, source.label, source.line((key,)), hint))
        elif key != "steps":
            top[key] = (value, source)
    if "name" not in source.data:
        problems.append(
            Problem(
                "workflow has no name", source.label, 1, 'add name = "..." at the top of the file'
            )
        )
    raw_steps = source.data.get("steps", [])
    steps: list[DraftStep] = []
    if not isinstance(raw_steps, list):
        problems.append(
            Problem(
                f"steps must be [[steps]] tables, got {tomlfile.describe(raw_steps)}",
                source.label,
                source.line(("steps",)),
                'write each step as a [[steps]] table with name = "..."',
            )
        )
        return top, steps, problems
    for index, table in enumerate(raw_steps):
        if isinstance(table, dict):
            steps.append(DraftStep(table, source, index))
        else:
            problems.append(
                Problem(
                    f"step #{index + 1} must be a table, got {tomlfile.describe(table)}",
                    source.label,
                    source.line(("steps",)),
                    'write each step as a [[steps]] table with name = "..."',
                )
            )
    return top, steps, problems


class _Resolver:
    """Reads a file's `extends` chain and merges it into one Draft."""

    def __init__(self, project: Project | None, user_config_dir: Path | None) -> None:
        self.project = project
        self.user_config_dir = user_config_dir

    def draft(self, source: Source, chain: list[Source]) -> Draft:
        """`source` merged over everything it extends; `chain` holds the files below it."""
        top, steps, problems = _top_level(source)
        files = [str(source.path)] if source.path else []
        extends = top.pop("extends", None)
        if extends is None:
            return Draft(source, top, steps, files, problems)
        value = extends[0]
        line = source.line(("extends",))
        if not isinstance(value, str) or not value.strip():
            raise _fail(
                source.label,
                f"extends must be a workflow name, got {tomlfile.describe(value)}",
                'for example: extends = "review"',
                line,
            )
        parent = self._parent(value, source, line)
        here = [*chain, source]
        # reported at the file asked for: that is the one the user is looking at
        root = here[0]
        if any(_same(parent.path, s.path) for s in here):
            names = " -> ".join(s.label for s in [*here, parent])
            raise _fail(
                root.label,
                f"extends cycle: {names}",
                "a workflow cannot extend itself, even through others",
                root.line(("extends",)),
            )
        if len(here) >= MAX_EXTENDS_DEPTH:
            names = " -> ".join(s.label for s in [*here, parent])
            raise _fail(
                root.label,
                f"extends chain deeper than {MAX_EXTENDS_DEPTH}: {names}",
                "flatten the chain: copy steps instead of extending so deeply",
                root.line(("extends",)),
            )
        base = self.draft(parent, here)
        return _merge(base, Draft(source, top, steps, files, problems))

    def _parent(self, name: str, source: Source, line: int | None) -> Source:
        looked: list[str] = []
        if name.endswith(".toml") or "/" in name:
            # a path: next to the extending file
            folder = source.path.parent if source.path else Path.cwd()
            candidate = (folder / name).expanduser()
            if candidate.is_file() and not _same(candidate, source.path):
                return _read(candidate, "path")
            looked.append(str(candidate))
        if "/" not in name:
            stem = name.removesuffix(".toml")
            for origin, folder in _layers(self.project, self.user_config_dir):
                candidate = folder / f"{stem}.toml"
                # a file extending its own name means the next layer down
                if candidate.is_file() and not _same(candidate, source.path):
                    return _read(candidate, origin)
                looked.append(str(candidate))
        raise _fail(
            source.label,
            f"extends '{name}', which was not found",
            "looked in " + ", ".join(looked),
            line,
        )


def _same(a: Path | None, b: Path | None) -> bool:
    if a is None or b is None:
        return False
    try:
        return a.samefile(b)
    except OSError:
        return False


def _merge(parent: Draft, child: Draft) -> Draft:
    """Parent steps first; a child step of the same name replaces it in place; the rest appended."""
    steps = list(parent.steps)
    position = {_step_name(s): i for i, s in enumerate(steps) if _step_name(s) is not None}
    for step in child.steps:
        name = _step_name(step)
        if name is not None and name in position:
            steps[position[name]] = step
        else:
            steps.append(step)
    top = dict(parent.top)
    top.update(child.top)
    if "args" in parent.top and "args" in child.top:
        base, over = parent.top["args"][0], child.top["args"][0]
        if isinstance(base, dict) and isinstance(over, dict):
            top["args"] = ({**base, **over}, child.top["args"][1])
    return Draft(
        child.source, top, steps, child.files + parent.files, parent.problems + child.problems
    )


def _step_name(step: DraftStep) -> str | None:
    name = step.table.get("name")
    return name if isinstance(name, str) else None


# --------------------------------------------------------------------------
# Listing
# --------------------------------------------------------------------------


def _scan(project: Project | None, user_config_dir: Path | None) -> list[WorkflowInfo]:
    """Every workflow file by name, the highest layer winning (not loaded)."""
    found: dict[str, WorkflowInfo] = {}
    for origin, folder in _layers(project, user_config_dir):
        try:
            files = sorted(p for p in folder.glob("*.toml") if p.is_file())
        except OSError:
            continue
        for path in files:
            name = path.stem
            if name in found:
                winner = found[name]
                found[name] = WorkflowInfo(
                    winner.name, winner.origin, winner.path, overrides=(*winner.overrides, origin)
                )
            else:
                found[name] = WorkflowInfo(name, origin, str(path))
    return sorted(found.values(), key=lambda info: (ORIGINS.index(info.origin), info.name))


def list_workflows(
    project: Project, config: Config, user_config_dir: Path | None = None
) -> list[WorkflowInfo]:
    """Every workflow `lok run NAME` can reach, loaded; a broken one carries its error."""
    out = []
    for info in _scan(project, user_config_dir):
        try:
            workflow = load_file(Path(info.path), info.origin, project, config, user_config_dir)
        except LokError as exc:
            error = exc.message
            if isinstance(exc, WorkflowError) and len(exc.problems) > 1:
                error = f"{exc.problems[0]} (and {len(exc.problems) - 1} more)"
            out.append(
                WorkflowInfo(
                    info.name,
                    info.origin,
                    info.path,
                    _description(info.path),
                    0,
                    error,
                    info.overrides,
                )
            )
            continue
        out.append(
            WorkflowInfo(
                info.name,
                info.origin,
                info.path,
                workflow.description,
                len(workflow.steps),
                None,
                info.overrides,
                workflow.args,
            )
        )
    return out


def workflows_document(infos: list[WorkflowInfo]) -> dict[str, Any]:
    """The `lok workflow list --json` document."""
    from dataclasses import asdict

    return {"workflows": [asdict(info) for info in infos]}


def find_listed(
    name: str, project: Project, user_config_dir: Path | None = None
) -> tuple[Path, str] | None:
    """(file, origin) of the workflow `lok workflow list` shows as NAME, else None:
    a name only, never a path (the MCP server runs nothing else by name)."""
    for info in _scan(project, user_config_dir):
        if info.name == name:
            return Path(info.path), info.origin
    return None


def _description(path: str) -> str:
    try:
        _, data = tomlfile.read(Path(path))
    except (tomlfile.TomlProblem, OSError):
        return ""
    value = data.get("description", "")
    return value if isinstance(value, str) else ""
