"""store: (to be described)."""
