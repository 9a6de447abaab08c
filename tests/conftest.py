"""Shared test settings.

In CI (`CI` set) hypothesis runs derandomized, so a run is reproducible from the
commit alone; locally it explores new examples on every run.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
