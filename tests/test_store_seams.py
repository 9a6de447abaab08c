"""The store's seams: the engine finds and records results only through the action
cache (key -> result) and the artifact store, driven here with the coordinator in
process over a real project, its SQLite history and its object folder."""

from __future__ import annotations

from pathlib import Path

from lokfile import api
from lokfile.engine.coordinator import Coordinator, RunOptions
from lokfile.executors.inline import InlineExecutor
from lokfile.outcome import RunOutcome, Status
from lokfile.store.artifacts import Store
from lokfile.store.rundb import RunDB
from lokfile.store.seams import LocalActionCache
from tests.test_engine_inprocess import Collect, Project, chdir, statuses

__all__ = ["chdir"]  # the fixture, used by name

# Shell steps with sources are cached (without, they run every time).
CHAIN = """
name = "w"
[[steps]]
name = "a"
sources = ["in.txt"]
shell = "cut -c1-3 in.txt"
[[steps]]
name = "b"
depends_on = ["a"]
sources = ["in.txt"]
shell = "echo got-{{ steps.a.output }}"
"""


def chain(root: Path) -> Project:
    (root / "in.txt").write_text("one two\n")
    return Project(root, CHAIN)


def unit_key(outcome: RunOutcome, step: str) -> str:
    (unit,) = outcome.results[step].units
    key: str = unit.key
    return key


def run_with(project: Project, cache: LocalActionCache) -> RunOutcome:
    """One run whose action cache is `cache` (not the project's own history table)."""
    ctx = api.open_project(project.root, say=lambda text: None)
    wf = api.load(ctx, str(project.root / "wf.toml"))
    db = RunDB.open(ctx.project.db_path)
    try:
        coordinator = Coordinator(
            wf,
            ctx.config,
            project.root,
            Store(ctx.project.runs_dir),
            db,
            RunOptions(jobs=2),
            Collect(),
            InlineExecutor,
            cache=cache,
        )
        return coordinator.run()
    finally:
        db.close()


def test_a_finished_units_key_names_its_artifact_in_the_action_cache(chdir: Path) -> None:
    project = chain(chdir)
    outcome, _ = project.run()
    db = RunDB.open(chdir / ".lok" / "lok.db")
    try:
        entry = LocalActionCache(db).lookup(unit_key(outcome, "b"))
    finally:
        db.close()
    assert entry is not None
    assert Store(chdir / ".lok" / "runs").get_text(entry.digest) == "got-one"


def test_a_failed_unit_is_never_recorded_as_a_result(chdir: Path) -> None:
    project = Project(chdir, 'name = "w"\n[[steps]]\nname = "a"\nshell = "echo no; exit 3"\n')
    outcome, _ = project.run()
    assert statuses(outcome) == {"a": Status.FAILED}
    db = RunDB.open(chdir / ".lok" / "lok.db")
    try:
        assert LocalActionCache(db).lookup(unit_key(outcome, "a")) is None
    finally:
        db.close()


def test_forgetting_a_key_reruns_that_step_and_its_unchanged_output_cuts_off_below(
    chdir: Path,
) -> None:
    project = chain(chdir)
    first, _ = project.run()
    db = RunDB.open(chdir / ".lok" / "lok.db")
    try:
        cache = LocalActionCache(db)
        cache.forget(unit_key(first, "a"))
        assert not cache.has_all([unit_key(first, "a"), unit_key(first, "b")])
        assert cache.has_all([unit_key(first, "b")])
    finally:
        db.close()
    second, _ = project.run()
    assert statuses(second) == {"a": Status.RAN, "b": Status.REUSED}


def test_the_coordinator_consults_and_fills_the_action_cache_it_is_given(chdir: Path) -> None:
    project = chain(chdir)
    first, _ = project.run()
    assert statuses(first) == {"a": Status.RAN, "b": Status.RAN}
    # Another action cache (a history file elsewhere) knows none of these keys: everything
    # runs again although the project's own table has them, and the keys land there.
    elsewhere = RunDB.open(chdir / "elsewhere.db")
    try:
        other = LocalActionCache(elsewhere)
        second = run_with(project, other)
        assert statuses(second) == {"a": Status.RAN, "b": Status.RAN}
        assert other.has_all([unit_key(second, "a"), unit_key(second, "b")])
        third = run_with(project, other)
        assert statuses(third) == {"a": Status.REUSED, "b": Status.REUSED}
    finally:
        elsewhere.close()


def test_a_deferred_link_appears_only_once_the_pending_links_are_made(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs")
    digest = store.put_text("answer")
    store.link_later("r1", "a.txt", digest)
    assert not (store.run_dir("r1") / "a.txt").exists()
    store.link_pending()
    assert (store.run_dir("r1") / "a.txt").read_text() == "answer"
    store.link_pending()  # nothing left: a no-op
    assert sorted(p.name for p in store.run_dir("r1").iterdir()) == ["a.txt"]


def test_when_a_run_returns_its_folder_links_every_settled_step(chdir: Path) -> None:
    # the coordinator makes a step's link after starting the next job: none may be left over
    project = chain(chdir)
    outcome, _ = project.run()
    folder = Store(chdir / ".lok" / "runs").run_dir(outcome.run_id)
    for name in ("a", "b"):
        link = folder / f"{name}.txt"
        assert link.is_symlink()
        assert link.read_text() == outcome.results[name].output
