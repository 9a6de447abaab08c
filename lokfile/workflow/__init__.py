"""workflow: (to be described)."""
