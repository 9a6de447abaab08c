"""config: (to be described)."""
