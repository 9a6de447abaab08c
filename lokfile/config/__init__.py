"""config: lok.toml, layered (built-in < user < project < --config) and checked.

    layers.py   the merged raw document and where each key came from
    check.py    every key checked and converted into `model.Config`
    load.py     reading the files: `load_config`, `parse_config_text`
"""

from __future__ import annotations

from lokfile.config.load import load_config, parse_config_text

__all__ = ["load_config", "parse_config_text"]
