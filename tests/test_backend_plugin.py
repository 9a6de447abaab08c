"""A backend type from another package, found through the `lokfile.backends` entry points.

The example plugin in examples/plugin/ is put on the path of a real `lok`
process with a dist-info folder built from its own pyproject.toml, exactly as
pip would leave it, so importlib.metadata.entry_points() finds it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lokfile import tomlfile
from tests.lokrun import BUILTINS_OFF

PLUGIN = Path(__file__).resolve().parents[1] / "examples" / "plugin"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A folder holding what `pip install examples/plugin` leaves: the module and its dist-info."""
    site = tmp_path / "site"
    meta = tomlfile.parse((PLUGIN / "pyproject.toml").read_text())["project"]
    site.mkdir(parents=True)
    shutil.copy(PLUGIN / "lok_reverse.py", site / "lok_reverse.py")
    info = site / f"{meta['name'].replace('-', '_')}-{meta['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n"
    )
    groups = meta["entry-points"]
    (info / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items())
            for group, eps in groups.items()
        )
    )
    return site


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "lok.toml").write_text(
        BUILTINS_OFF + '[backends.rev]\ntype = "reverse"\nprefix = ">> "\n'
    )
    return root


def lok(project: Path, site: Path | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CONFIG_HOME": str(project.parent / "xdg")}
    env.pop("PYTHONPATH", None)
    if site is not None:
        env["PYTHONPATH"] = str(site)
    return subprocess.run(
        [sys.executable, "-m", "lokfile", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_installed_plugin_type_answers_like_a_built_in(project: Path, site: Path) -> None:
    done = lok(project, site, "ask", "--no-cache", "-b", "rev", "hello")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "\n=== rev ===\n\n>> olleh\n\n"


def test_a_plugin_failure_is_reported_like_any_backend_failure(project: Path, site: Path) -> None:
    done = lok(project, site, "ask", "--no-cache", "-b", "rev", "   ")
    assert done.returncode == 1
    assert "bad response (the answer could not be read): nothing to reverse" in done.stdout


def test_doctor_and_backends_list_the_plugin_type(project: Path, site: Path) -> None:
    doctor = lok(project, site, "doctor", "--json", "-b", "rev")
    assert doctor.returncode == 0, doctor.stderr
    entry = json.loads(doctor.stdout)["backends"][0]
    assert entry["ready"] is True and entry["version"] == "lok-reverse 0.1.0"
    listing = lok(project, site, "backends")
    assert any(line.split()[:2] == ["rev", "reverse"] for line in listing.stdout.splitlines())


def test_without_the_plugin_the_type_is_unknown_and_the_known_types_are_named(
    project: Path,
) -> None:
    done = lok(project, None, "ask", "--no-cache", "-b", "rev", "hello")
    assert done.returncode == 1
    assert "unknown backend type 'reverse'" in done.stdout
    assert "openai" in done.stdout
