"""The built-in workflows as `lok hunt/audit/explain/diff/ci/fix` run them.

The commands load the workflow by name (so a project's `.lok/workflows/hunt.toml`
still overrides the built-in), then adapt it: `-b` backends, the prompts of
the original's `[tasks.hunt]` / `[tasks.audit]` when lok.toml sets them, and
notes about the detected stack.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from lokfile.errors import UsageError
from lokfile.model import Config, Step, StepKind, TaskConfig, Workflow
from lokfile.stack import describe, detect, prompt_notes

BUILTIN_LABEL = "built-in"
_REF = re.compile(r"^#?(\d+)$")
_URL = re.compile(r"^https?://[^/]+/[^/]+/[^/]+/(issues|pull|pulls)/(\d+)(?:[/?#].*)?$")
_REPO_REF = re.compile(r"^([\w.-]+)/([\w.-]+)#(\d+)$")


def parse_backends(raw: str | None, config: Config) -> tuple[str, ...]:
    """`-b a,b` as backend names (spaces trimmed); UsageError naming the unknown ones."""
    if not raw:
        return ()
    names = tuple(dict.fromkeys(n.strip() for n in raw.split(",") if n.strip()))
    if names == ("all",):
        return usable_backends(config)
    unknown = [n for n in names if n != "auto" and n not in config.backends]
    if unknown:
        known = ", ".join(sorted(config.backends)) or "none"
        raise UsageError(
            f"-b: backend '{unknown[0]}' is not configured",
            f"configured backends: {known}, or auto, or all",
        )
    return names


def usable_backends(config: Config) -> tuple[str, ...]:
    """Every enabled backend that can answer now, in `auto` order (NoBackend if none)."""
    from lokfile.backends.ready import check_all, in_auto_order, no_backend

    ordered = in_auto_order(config)
    verdicts = check_all(ordered)
    found = tuple(b.name for b in ordered if verdicts[b.name].ready)
    if not found:
        raise no_backend(config, verdicts, "`all`")
    return found


def task_backends(config: Config, task: str) -> tuple[str, ...]:
    """The backends `[tasks.TASK] backends` names, when lok.toml (not the built-in) sets them."""
    entry = config.tasks.get(task)
    if entry is None or _from_builtin(config, f"tasks.{task}.backends") or not entry.backends:
        return ()
    if "all" in entry.backends:
        return usable_backends(config)
    return tuple(entry.backends)


def _from_builtin(config: Config, key: str) -> bool:
    return config.origins.get(key, BUILTIN_LABEL) == BUILTIN_LABEL


def with_backends(workflow: Workflow, names: tuple[str, ...]) -> Workflow:
    """Point the LLM steps at `names`: steps that read only shell output ask all of them
    (merged by the step's consensus); steps that merge other LLM steps ask the first."""
    if not names:
        return workflow
    llm = {s.name for s in workflow.steps if s.kind is StepKind.LLM}
    steps = []
    for step in workflow.steps:
        if step.kind is StepKind.LLM:
            merges = any(d in llm for d in step.depends_on)
            step = replace(step, backends=names[:1] if merges else names)
        steps.append(step)
    return replace(workflow, steps=tuple(steps))


def with_task_prompts(workflow: Workflow, config: Config, task: str) -> Workflow:
    """The workflow with its `TASK-*` steps replaced by lok.toml's `[tasks.TASK]` prompts.

    Unchanged when the prompts are the built-in ones. The new steps copy the
    first `TASK-*` step (its dependencies and settings) and feed the same code.
    """
    entry: TaskConfig | None = config.tasks.get(task)
    if entry is None or not entry.prompts or _from_builtin(config, f"tasks.{task}.prompts"):
        return workflow
    prefix = f"{task}-"
    old = [s for s in workflow.steps if s.name.startswith(prefix) and s.kind is StepKind.LLM]
    if not old:
        return workflow
    template = old[0]
    new: list[Step] = []
    for p in entry.prompts:
        slug = re.sub(r"[^A-Za-z0-9_-]+", "-", p.name).strip("-") or "prompt"
        name = prefix + slug
        if any(s.name == name for s in new):
            name = f"{name}-{len(new) + 1}"
        new.append(replace(template, name=name, prompt=_task_prompt(p.prompt, template)))
    names = tuple(s.name for s in new)
    replaced = {s.name for s in old}
    steps: list[Step] = []
    for step in workflow.steps:
        if step.name in replaced:
            if step.name == template.name:
                steps.extend(new)
            continue
        if replaced & set(step.depends_on):
            kept = tuple(d for d in step.depends_on if d not in replaced)
            step = replace(step, depends_on=kept + names)
        steps.append(step)
    return replace(workflow, steps=tuple(steps))


def _task_prompt(text: str, template: Step) -> str:
    # a user's prompt is text, not a template: keep any braces in it literal
    reads_code = "steps.code.output" in (template.prompt or "")
    code = "\n\n{{ steps.code.output }}\n" if reads_code else "\n"
    return (
        "{% if arg.context %}{{ arg.context }}\n\n{% endif %}"
        "{% raw %}" + text.strip() + "{% endraw %}" + code
    )


def context_note(root: Path, task: str) -> str:
    """What the prompts are told about the codebase: the detected stack, and task notes."""
    stack = detect(root)
    if stack.language is None and not stack.infra:
        return ""
    lines = [f"Detected stack: {describe(stack)}."]
    notes = prompt_notes(stack, task, "")
    if notes:
        lines.append(notes)
    return "\n".join(lines)


def parse_ref(ref: str, what: str) -> str:
    """An issue or PR as gh takes it: `12`, `#12`, a URL, or `owner/repo#12` (made a URL)."""
    ref = ref.strip()
    m = _REF.match(ref)
    if m:
        return m.group(1)
    if _URL.match(ref):
        return ref
    m = _REPO_REF.match(ref)
    if m:
        kind = "issues" if what == "issue" else "pull"
        return f"https://github.com/{m.group(1)}/{m.group(2)}/{kind}/{m.group(3)}"
    raise UsageError(
        f"'{ref}' is not {'an issue' if what == 'issue' else 'a pull request'}",
        "give a number (12 or #12), a GitHub URL, or owner/repo#12",
    )


def relative_dir(root: Path, directory: Path | None) -> str:
    """DIR as a path relative to the project root ('.' for the root itself)."""
    if directory is None:
        return "."
    real = directory.resolve()
    try:
        rel = real.relative_to(root.resolve())
    except ValueError:
        return "."
    return rel.as_posix() or "."
