"""history: (to be described)."""
