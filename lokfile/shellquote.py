"""Where a template value lands in a shell command, and how to quote it there.

`places()` reads the literal text of a shell template (the pieces between its
`{{ … }}` markers) with a small POSIX-shell state machine (`shell_lexer`), and
says for each marker which quoting context surrounds it. `quote()` then turns a value into
text that the shell reads back as exactly that value, and never as code:

    bare                 echo {{x}}            a single-quoted word ('' when empty)
    single quotes        echo '{{x}}'          each ' becomes '\\''
    double quotes        echo "{{x}}"          \\ " $ ` are backslash-escaped
    $'…'                 echo $'{{x}}'         \\ and ' are backslash-escaped
    $(…) and `…`         "$(echo {{x}})"       back to bare, whatever surrounds them;
                                               inside `…` one more escaping layer
    here-document        <<'EOF' / <<"EOF" / <<\\EOF: the text is literal;
                         <<EOF: \\ $ ` are backslash-escaped.
                         A line of the value that would read as the delimiter line
                         (e.g. a line `EOF`) gets one character appended (a space,
                         unless the delimiter holds one), and a line that starts
                         with the delimiter (`EOF)…`, which bash takes as the end
                         inside `$(…)`) gets that character in front, so no value
                         can end the document early. These are the only cases
                         where the text changes.
    # comment            newlines become spaces, so the comment cannot end early

Refused at compile time, with a TemplateError: a value inside `${…}` or
`$((…))`, right after an unquoted `\\` or `$`, as (part of) a here-document
delimiter, and inside nested backticks. Known limits of the lexer: `case`
patterns with a bare `)` inside `$(…)`, and `{% if %}` branches whose quotes do
not balance, can mislead it; each branch should be balanced on its own.

A shell bug lok cannot quote around: dash 0.5.12 (Debian's /bin/sh) drops a
byte from a here-document line that starts like the delimiter and goes on with
a non-ASCII character (`EOF` then `EOé…`), quoted delimiter or not. And bash 5.2 reads
two literal \\x01 bytes in a quoted here-document inside "$(…)" back as one. Neither
runs anything; both change bytes the script holds literally.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

BARE, SQ, DQ, ANSI, COMMENT, HEREDOC = "bare", "sq", "dq", "ansi", "comment", "heredoc"


class Place:
    """The quoting context of one marker (immutable by convention)."""

    __slots__ = ("backtick", "delimiter", "expand", "kind", "prefix", "strip_tabs", "suffix")

    def __init__(
        self,
        kind: str,
        backtick: bool = False,  # inside `…`: the shell strips one layer of backslashes first
        delimiter: str = "",  # here-document only, from here on
        expand: bool = False,  # unquoted <<EOF: $ ` \\ are special in the body
        strip_tabs: bool = False,  # <<-EOF
        prefix: str | None = "",  # literal text before the marker on its line; None: unknown
        suffix: str | None = "",  # literal text after it on its line; None: unknown
    ) -> None:
        self.kind = kind
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
        return f"Place({self.kind!r}, backtick={self.backtick}, delimiter={self.delimiter!r})"


BARE_PLACE = Place(BARE)
_PLAIN_PLACES = {BARE: BARE_PLACE, SQ: Place(SQ), DQ: Place(DQ)}

_DQ_SPECIAL = re.compile(r'[\\"$`]')
_EXPANDING = re.compile(r"[\\$`]")


def quote(text: str, place: Place) -> str:
    """`text` written so that, at `place`, the shell reads exactly `text`."""
    kind = place.kind
    if kind == BARE:
        out = "'" + text.replace("'", "'\\''") + "'"
    elif kind == SQ:
        out = text.replace("'", "'\\''")
    elif kind == DQ:
        out = _DQ_SPECIAL.sub(r"\\\g<0>", text)
    elif kind == ANSI:
        out = text.replace("\\", "\\\\").replace("'", "\\'")
    elif kind == COMMENT:
        out = text.replace("\n", " ")
    else:
        out = _heredoc(text, place)
    if place.backtick:
        out = _EXPANDING.sub(r"\\\g<0>", out)
    return out


def _heredoc(text: str, place: Place) -> str:
    if place.expand:
        text = _EXPANDING.sub(r"\\\g<0>", text)
    delimiter = place.delimiter
    filler = next(c for c in " ~_.-#" if c not in delimiter)
    lines = text.split("\n")
    last = len(lines) - 1
    for i, line in enumerate(lines):
        before = place.prefix if i == 0 else ""
        after = place.suffix if i == last else ""
        if _could_be_delimiter(before, line, after, delimiter, place.strip_tabs):
            lines[i] = line + filler
        elif _starts_like_delimiter(before, line, delimiter, place.strip_tabs):
            lines[i] = filler + line
    return "\n".join(lines)


def _starts_like_delimiter(before: str | None, line: str, delimiter: str, strip_tabs: bool) -> bool:
    """Whether the value makes its line START with the delimiter. bash (5.2) ends a
    here-document inside `$(…)` at such a line when shell syntax follows the
    delimiter (`EOF)`, `EOF$(…)`), so those lines get the filler in front."""
    if before is None:
        return False  # another value earlier on the line; it is checked on its own
    head = before.lstrip("\t") if strip_tabs else before
    whole = (before + line).lstrip("\t") if strip_tabs else before + line
    return whole.startswith(delimiter) and not head.startswith(delimiter)


def _could_be_delimiter(
    before: str | None, line: str, after: str | None, delimiter: str, strip_tabs: bool
) -> bool:
    """Whether the finished line could equal the delimiter; unknown neighbours (another
    value on the same line) count as anything."""

    def norm(s: str) -> str:
        return s.lstrip("\t") if strip_tabs else s

    if before is not None and after is not None:
        return norm(before + line + after) == delimiter
    if before is not None:
        return delimiter.startswith(norm(before + line))
    if after is not None:
        return delimiter.endswith(line + after) or delimiter.endswith(norm(line + after))
    return line in delimiter or norm(line) in delimiter


def places(pieces: Sequence[str]) -> list[Place]:
    """The place of each marker between consecutive literal `pieces` (len(pieces) - 1
    markers). Raises TemplateError for a marker lok will not quote."""
    if _NOT_JUST_QUOTES.search("".join(pieces)) is None:
        return _quotes_only(pieces)
    from lokfile.shell_lexer import lex

    return lex(pieces)


_NOT_JUST_QUOTES = re.compile(r"[\\`$#<()\n]")
_QUOTE = re.compile("['\"]")


def _quotes_only(pieces: Sequence[str]) -> list[Place]:
    """places() for text whose only special characters are quotes (most commands):
    the same answer as the lexer, in one pass."""
    state = BARE
    out: list[Place] = []
    for piece in pieces[:-1]:
        for m in _QUOTE.finditer(piece):
            quote_char = m.group()
            if state == BARE:
                state = SQ if quote_char == "'" else DQ
            elif (state == SQ) == (quote_char == "'"):
                state = BARE
        out.append(_PLAIN_PLACES[state])
    return out
