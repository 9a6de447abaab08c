"""engine: (to be described)."""
