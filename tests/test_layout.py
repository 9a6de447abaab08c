"""The shape of the package, kept: no import cycles, a small top floor, small modules.

The layer order between wings is checked by import-linter (`lint-imports`, from
`[tool.importlinter]` in pyproject.toml, run by `.ci/run`); this file checks what a
layers contract cannot: that no two modules import each other in a loop, counting
imports made inside functions and under `if TYPE_CHECKING:`.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lokfile"
MAX_TOP_MODULES = 20
MAX_LINES = 600


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every lokfile module `path` imports, anywhere in the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from lokfile.x import y`: y may be a module of its own
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name.startswith("lokfile") and name != "lokfile":
                found.add(name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        # importing a package's face (its __init__) by name is not importing its modules
        graph[name] = {m for m in _imports(path, modules) if m != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _without_faces(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """A package's __init__ that only hands names on ties its modules to their users;
    an import of the face counts as an import of the modules it re-exports."""
    modules = _modules()
    faces = {n for n, p in modules.items() if p.name == "__init__.py"}
    flat: dict[str, set[str]] = {}
    for name, deps in graph.items():
        if name in faces:
            continue
        expanded: set[str] = set()
        for dep in deps:
            expanded |= graph[dep] - {name} if dep in faces else {dep}
        flat[name] = {d for d in expanded if d not in faces} - {name}
    return flat


def test_no_two_modules_import_each_other_in_a_loop() -> None:
    assert _cycles(_without_faces(_graph())) == []


def test_the_top_floor_holds_at_most_twenty_modules() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_MODULES, top


def test_no_module_is_longer_than_six_hundred_lines() -> None:
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_no_module_is_named_like_a_standard_library_module() -> None:
    # `backends/http.py` beside `import http` reads as the standard library's, and a
    # script run from inside the folder would shadow it
    names = sys.stdlib_module_names
    clash = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if p.stem in names)
    assert clash == []


def test_every_wing_says_what_it_is() -> None:
    for init in PACKAGE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert len(doc.splitlines()) >= 2 and "to be described" not in doc, init


def test_statuses_live_with_the_outcomes_which_import_no_other_lokfile_module() -> None:
    # the no-op fast path builds outcomes without loading the model or the engine
    modules = _modules()
    assert "lokfile.status" not in modules
    assert _imports(modules["lokfile.outcome"], modules) == set()


def test_no_comment_cites_a_document_the_repository_does_not_have() -> None:
    # the specification and the notes on the original tool live outside the repository:
    # a comment states the fact instead of pointing there
    cited = ("SPEC" + " §", "lok-" + "reference")
    repo = PACKAGE.parent
    files = [*PACKAGE.rglob("*.py"), *(repo / "tests").rglob("*.py")]
    files += (repo / "tests" / "examples").glob("*.toml")
    found = [
        f"{p.relative_to(repo)}:{n}"
        for p in files
        for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
        if any(c in line for c in cited)
    ]
    assert found == []


def _exports(face: Path) -> list[str] | None:
    """The names a wing's `__all__` lists (None without one)."""
    for node in ast.parse(face.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return [str(e.value) for e in ast.walk(node.value) if isinstance(e, ast.Constant)]
    return None


def _defined(face: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(face.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.ImportFrom):
            names |= {a.asname or a.name for a in node.names}
    return names


def test_every_wing_exports_names_it_has() -> None:
    for face in PACKAGE.glob("*/__init__.py"):
        exports = _exports(face)
        assert exports is not None, f"{face.relative_to(PACKAGE)} has no __all__"
        wing = face.parent
        missing = [
            n
            for n in exports
            if n not in _defined(face) and not (wing / f"{n}.py").exists()
        ]
        assert missing == [], f"{face.relative_to(PACKAGE)} exports what it does not have"


def test_other_wings_import_only_what_a_wing_exports() -> None:
    exports = {f.parent.name: set(_exports(f) or ()) for f in PACKAGE.glob("*/__init__.py")}
    unlisted: list[str] = []
    for path in PACKAGE.rglob("*.py"):
        here = path.relative_to(PACKAGE).parts[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                dotted = [a.name.split(".") for a in node.names]
                wanted = [(d[1], d[2]) for d in dotted if len(d) > 2 and d[0] == "lokfile"]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                d = node.module.split(".")
                if d[0] != "lokfile" or len(d) < 2:
                    continue
                names = [d[2]] if len(d) > 2 else [a.name for a in node.names]
                wanted = [(d[1], n) for n in names]
            else:
                continue
            unlisted += [
                f"{path.relative_to(PACKAGE)} imports {name} from lokfile.{wing}"
                for wing, name in wanted
                if wing in exports and wing != here and name not in exports[wing]
            ]
    # a name used from outside its wing belongs in that wing's __all__ (its __init__.py)
    assert unlisted == []
