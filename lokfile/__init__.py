"""lok: a make-like runner for multi-LLM workflows."""

__version__ = "0.1.0"
