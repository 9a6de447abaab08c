"""Reading lok.toml files into `Config`: every layer read, merged, then checked at once.

Problems are collected over all layers and reported together, each with its
file and line (see `config.check`).
"""

from __future__ import annotations

from pathlib import Path

from lokfile import tomlfile
from lokfile.config.check import build
from lokfile.config.layers import BUILTIN, BUILTIN_LABEL, Layers
from lokfile.errors import ConfigError
from lokfile.model import Config
from lokfile.project import Project, user_dir


def _read_layer(path: Path, layers: Layers) -> None:
    label = _label(path)
    try:
        text, data = tomlfile.read(path)
    except tomlfile.TomlProblem as exc:
        where = f"{label}:{exc.line}" if exc.line else label
        raise ConfigError(f"{where}: {exc.message}", exc.hint) from None
    except OSError as exc:
        raise ConfigError(
            f"{label}: cannot read config: {exc.strerror or exc}",
            "check the path and its permissions",
        ) from None
    layers.add(label, data, text)


def _label(path: Path) -> str:
    """The path as a person would type it: relative to the cwd when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def load_config(
    project: Project, explicit: Path | None = None, user_config_dir: Path | None = None
) -> Config:
    """The merged settings: built-in < user lok.toml < project lok.toml < `explicit` (--config)."""
    layers = Layers()
    layers.add(BUILTIN_LABEL, BUILTIN, None)
    seen: set[Path] = set()
    candidates = [
        (user_config_dir or user_dir()) / "lok.toml",
        project.config_path,
    ]
    for path in candidates:
        if path.is_file() and path.resolve() not in seen:
            seen.add(path.resolve())
            _read_layer(path, layers)
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(
                f"config file {explicit} not found",
                "--config needs an existing file; `lok init` writes a commented lok.toml",
            )
        if explicit.resolve() not in seen:
            _read_layer(explicit, layers)
    return build(layers)


def parse_config_text(text: str, label: str = "lok.toml") -> Config:
    """Settings from one TOML text over the built-in defaults (for tests and tools)."""
    layers = Layers()
    layers.add(BUILTIN_LABEL, BUILTIN, None)
    try:
        data = tomlfile.parse(text)
    except tomlfile.TomlProblem as exc:
        where = f"{label}:{exc.line}" if exc.line else label
        raise ConfigError(f"{where}: {exc.message}", exc.hint) from None
    layers.add(label, data, text)
    return build(layers)
