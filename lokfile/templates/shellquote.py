"""Where a template value lands in a shell command, and how to quote it there.

`places()` reads the literal text of a shell template (the pieces between its
`{{ … }}` markers) with a small POSIX-shell state machine (`shell_lexer`), and
says for each marker which quoting context surrounds it. `quote()` then turns a value into
text that the shell reads back as exactly that value, and never as code:

    bare                 echo {{x}}            a single-quoted word ('' when empty)
    single quotes        echo '{{x}}'          each ' becomes '\\''
    double quotes        echo "{{x}}"          \\ " $ ` are backslash-escaped
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

Every rendering holds for the shells a command may meet: `sh` (dash on Debian,
bash elsewhere) and whatever shell a `command_wrapper` starts. So lok refuses,
at compile time with a TemplateError, the places where they disagree or where
no quoting keeps a value data: inside `$'…'` (bash's ANSI-C quoting; dash reads
a `$` and a '…' string, so no rendering reads back the same in both) and after
a `$'…'` holding `\\'` (dash ends it there, bash does not); inside `${…}`,
`$((…))` and bash's `((…))` command; right after an unquoted `\\` or `$`; as
(part of) a here-document delimiter; inside nested backticks.

bash evaluates some words as arithmetic, where `a[$(cmd)]` runs `cmd` however
the word was quoted: the operands of `-eq`-style tests in `[[ … ]]` (`[` and
`test` only take integers there), the arguments of `let` and `declare -i`. A
value there must be a plain number, and a value after `-v`/`-R` (any test) a
plain variable name, or the step fails with a TemplateError (`shell_words`
finds these places). A NUL byte
fails everywhere: no command line can hold one. What a script does with data
later (`eval "$v"`, `sh -c "$v"`, `$(( v ))` on a variable) is the script's own
choice, as is text handed to another interpreter (an awk or python program).

Known limit of the lexer: `{% if %}` branches whose quotes do not balance can
mislead it; each branch should be balanced on its own.

A shell bug lok cannot quote around: dash 0.5.12 (Debian's /bin/sh) drops a
byte from a here-document line that starts like the delimiter and goes on with
a non-ASCII character (`EOF` then `EOé…`), quoted delimiter or not. And bash 5.2 reads
a literal \\x01 followed by \\x01 or \\x7f in a quoted here-document inside "$(…)"
as the second byte alone (its internal CTLESC escape leaks). Neither runs
anything; both change bytes the script holds literally.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from lokfile.errors import TemplateError
from lokfile.templates.shellplace import (
    BARE,
    COMMENT,
    DQ,
    HEREDOC,
    NAME,
    NUMBER,
    SQ,
    Place,
)

__all__ = ["BARE", "COMMENT", "DQ", "HEREDOC", "NAME", "NUMBER", "SQ", "Place", "places", "quote"]


class ValueRefused(TemplateError):
    """A value that cannot go where the template puts it (a NUL byte, a non-number
    where bash evaluates arithmetic); templates name the value and re-raise."""


def named_refusal(name: str, exc: TemplateError) -> TemplateError:
    """A value `quote` refused, named as the template wrote it (`name`)."""
    return TemplateError(f"the value of {{{{ {name} }}}} {exc.message}", exc.hint)


BARE_PLACE = Place(BARE)
_PLAIN_PLACES = {BARE: BARE_PLACE, SQ: Place(SQ), DQ: Place(DQ)}

_DQ_SPECIAL = re.compile(r'[\\"$`]')
_EXPANDING = re.compile(r"[\\$`]")
_NUMBER = re.compile(r"[ \t]*[-+]?[0-9]+[ \t]*")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def quote(text: str, place: Place) -> str:
    """`text` written so that, at `place`, the shell reads exactly `text`; ValueRefused
    when no writing can keep it data there."""
    if "\0" in text:
        raise ValueRefused(
            f"holds a NUL byte (at offset {text.index(chr(0))}), which no shell command can carry",
            "remove it first, e.g. {{ … | replace('\\x00', '') }}, or write the value to a "
            "file from the step that produces it",
        )
    if place.check:
        _check(text, place.check)
    kind = place.kind
    if kind == BARE:
        out = "'" + text.replace("'", "'\\''") + "'"
    elif kind == SQ:
        out = text.replace("'", "'\\''")
    elif kind == DQ:
        out = _DQ_SPECIAL.sub(r"\\\g<0>", text)
    elif kind == COMMENT:
        out = text.replace("\n", " ")
    else:
        out = _heredoc(text, place)
    if place.backtick:
        out = _EXPANDING.sub(r"\\\g<0>", out)
    return out


def _check(text: str, check: str) -> None:
    if check == NUMBER and _NUMBER.fullmatch(text) is None:
        raise ValueRefused(
            f"is not a plain number ({_preview(text)}), and bash evaluates this word as "
            "arithmetic, where a[$(…)] would run a command",
            "compare text with = instead of -eq/-lt/…, or check the value first: "
            "case {{ … }} in ''|*[!0-9]*) exit 1;; esac",
        )
    if check == NAME and _NAME.fullmatch(text) is None:
        raise ValueRefused(
            f"is not a plain variable name ({_preview(text)}), and bash evaluates a subscript "
            "here, where a[$(…)] would run a command",
            "test a variable lok does not fill in, or check the value first",
        )


def _preview(text: str) -> str:
    short = text if len(text) <= 40 else text[:40] + "…"
    return repr(short)


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
    from lokfile.templates.shell_lexer import lex

    return lex(pieces)


# anything but quotes goes to the lexer; so do `[`, `test`, `let` and `declare`-style words,
# whose arithmetic checks only the lexer finds
_NOT_JUST_QUOTES = re.compile(r"[\\`$#<()\n\[]|\b(?:test|let|declare|typeset|local|readonly)\b")
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


# a bare {cmd} right after `-c` (or a cluster ending in it: `-lc`, `-ec`) is a shell's
# command string (`bash -c {cmd}`, `docker exec dev sh -c {cmd}`), not a program
_AFTER_DASH_C = re.compile(r"(?:^|\s)-[A-Za-z]*c[ \t]+$")


def wrap_command(wrapper: str, command: str) -> str:
    """Put `command` inside `[defaults] command_wrapper`, quoted for wherever each {cmd} lands
    (bare, '…', "…", a here-document…), with the same rules as template values."""
    pieces = wrapper.split("{cmd}")
    out = [pieces[0]]
    for before, place, piece in zip(pieces, places(pieces), pieces[1:], strict=False):
        # A bare {cmd} stands where a program goes (`direnv exec . {cmd}`): hand it to sh
        # whole; after `-c` it is already the command string a shell runs.
        program = place.kind == BARE and _AFTER_DASH_C.search(before) is None
        out += [("sh -c " if program else "") + quote(command, place), piece]
    return "".join(out)
