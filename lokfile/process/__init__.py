"""process: (to be described)."""
