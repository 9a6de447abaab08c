"""templates: (to be described)."""
