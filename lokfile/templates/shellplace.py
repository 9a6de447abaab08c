"""Where a template value lands in a shell command: the quoting contexts, as values.

The lexer (`shell_lexer`, with `shell_words`) finds a `Place` for each marker
of a shell template; `shellquote.quote()` turns a value into text the shell
reads back as exactly that value in that place.
"""

from __future__ import annotations

BARE, SQ, DQ, COMMENT, HEREDOC = "bare", "sq", "dq", "comment", "heredoc"
NUMBER, NAME = "number", "name"  # the checks of shell_words


class Place:
    """The quoting context of one marker (immutable by convention)."""

    __slots__ = (
        "backtick",
        "check",
        "delimiter",
        "expand",
        "kind",
        "prefix",
        "strip_tabs",
        "suffix",
    )

    def __init__(
        self,
        kind: str,
        backtick: bool = False,  # inside `…`: the shell strips one layer of backslashes first
        delimiter: str = "",  # here-document only, from here on
        expand: bool = False,  # unquoted <<EOF: $ ` \\ are special in the body
        strip_tabs: bool = False,  # <<-EOF
        prefix: str | None = "",  # literal text before the marker on its line; None: unknown
        suffix: str | None = "",  # literal text after it on its line; None: unknown
        check: str = "",  # NUMBER / NAME: bash evaluates the word (see shell_words)
    ) -> None:
        self.kind = kind
        self.check = check
        self.backtick = backtick
        self.delimiter = delimiter
        self.expand = expand
        self.strip_tabs = strip_tabs
        self.prefix = prefix
        self.suffix = suffix

    def _key(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Place) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"Place({self.kind!r}, backtick={self.backtick}, delimiter={self.delimiter!r}, "
            f"check={self.check!r})"
        )
