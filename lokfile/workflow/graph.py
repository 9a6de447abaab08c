"""Checks on a workflow's step graph: names, dependencies, cycles, what templates read.

Pure: nodes in, issues out. Each issue names the node (by index) and the key
at fault, so the loader can point at the file and line.
"""

from __future__ import annotations

from dataclasses import dataclass

from lokfile.tomlfile import did_you_mean


@dataclass(frozen=True)
class Node:
    """What the graph checks need of one step."""

    name: str | None
    depends_on: tuple[str, ...]
    refs: tuple[tuple[str, str], ...] = ()  # (key, step name its template reads)


@dataclass(frozen=True)
class Issue:
    """A problem at `nodes[index]`'s `key`; `other` is a second node it involves."""

    index: int
    key: str
    message: str
    hint: str
    other: int | None = None


def check(nodes: list[Node]) -> list[Issue]:
    """Duplicate names, unknown or self dependencies, a cycle, and reads of non-upstream steps."""
    issues: list[Issue] = []
    first: dict[str, int] = {}
    for i, node in enumerate(nodes):
        if node.name is None:
            continue
        if node.name in first:
            issues.append(
                Issue(
                    i,
                    "name",
                    f"duplicate step name '{node.name}'",
                    "step names must be unique: rename one",
                    first[node.name],
                )
            )
        else:
            first[node.name] = i
    names = list(first)
    for i, node in enumerate(nodes):
        for dep in node.depends_on:
            if dep == node.name:
                issues.append(
                    Issue(
                        i,
                        "depends_on",
                        f"step '{node.name}' depends on itself",
                        f"remove '{dep}' from depends_on",
                    )
                )
            elif dep not in first:
                close = did_you_mean(dep, names)
                issues.append(
                    Issue(
                        i,
                        "depends_on",
                        f"step '{node.name}' depends on unknown step '{dep}'" + _mean(close),
                        steps_hint(names),
                    )
                )
    if issues:
        return issues
    deps = {name: nodes[i].depends_on for name, i in first.items()}
    cycle = find_cycle(deps)
    if cycle:
        return [
            Issue(
                first[cycle[0]],
                "depends_on",
                "cycle: " + " -> ".join(cycle),
                "a step cannot depend on itself, even indirectly: remove one of these "
                "depends_on entries",
            )
        ]
    for i, node in enumerate(nodes):
        for key, ref in node.refs:
            issue = _reference(i, node, key, ref, first, deps)
            if issue is not None:
                issues.append(issue)
    return issues


def _mean(close: str | None) -> str:
    return f" (did you mean '{close}'?)" if close else ""


def steps_hint(names: list[str]) -> str:
    """The workflow's step names, for a hint."""
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    return f"steps in this workflow: {shown}" if names else "this workflow has no named steps"


def _reference(
    i: int, node: Node, key: str, ref: str, first: dict[str, int], deps: dict[str, tuple[str, ...]]
) -> Issue | None:
    label = f"step '{node.name}': {key}"
    if ref not in first:
        close = did_you_mean(ref, list(first))
        return Issue(
            i, key, f"{label} reads unknown step '{ref}'" + _mean(close), steps_hint(list(first))
        )
    if ref == node.name:
        return Issue(
            i, key, f"{label} reads its own output", "a step can only read the steps it depends on"
        )
    if node.name is not None and not upstream(ref, node.name, deps):
        return Issue(
            i,
            key,
            f"{label} reads step '{ref}', which it does not depend on",
            f"add '{ref}' to depends_on",
        )
    return None


def upstream(target: str, start: str, deps: dict[str, tuple[str, ...]]) -> bool:
    """Whether `target` is a (transitive) dependency of `start`."""
    direct = deps.get(start, ())
    if target in direct:
        return True
    seen: set[str] = set()
    stack = list(direct)
    while stack:
        name = stack.pop()
        if name == target:
            return True
        if name not in seen:
            seen.add(name)
            stack.extend(deps.get(name, ()))
    return False


def find_cycle(deps: dict[str, tuple[str, ...]]) -> list[str] | None:
    """The first dependency cycle as a closed path `[a, b, a]`, or None. Iterative: no recursion
    limit on long chains."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    for root in deps:
        if root in state:
            continue
        path = [root]
        pending = [iter(deps[root])]
        state[root] = 1
        while pending:
            nxt = next(pending[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                pending.pop()
                continue
            mark = state.get(nxt)
            if mark == 1:
                return [*path[path.index(nxt) :], nxt]
            if mark is None:
                state[nxt] = 1
                path.append(nxt)
                pending.append(iter(deps.get(nxt, ())))
    return None
