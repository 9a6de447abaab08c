"""executors: (to be described)."""
