"""config: lok.toml, layered (built-in < user < project < --config) and checked.

    layers   the merged raw document and where each key came from
    check    every key checked and converted into `model.Config`
    sharing  the keys that reach beyond one machine: `[cache] remote…`, `[executor]`
    load     reading the files: `load_config`, `parse_config_text`

The seam is `load_config(project)`: a `Config` whose `origins` say where each
value came from, or a ConfigError listing every problem. This face imports
`load`, and through it the checks and the model; neither start-up nor the
no-op fast path imports config.
"""

from __future__ import annotations

from lokfile.config.load import load_config, parse_config_text

__all__ = ["load_config", "parse_config_text", "sharing"]
