"""worker: (to be described)."""
