"""The shell lexer behind `shellquote.places()`: a POSIX-shell state machine.

It reads the literal text around a template's markers and keeps a stack of
frames (command, `$(…)`, backticks, quotes, `$'…'`, `${…}`, `$((…))`, `((…))`,
comments, here-document bodies), so each marker's quoting context is known even
inside `"$(cat <<'EOF' … EOF)"`. Each command frame also follows its words
(`shell_words`): a `case` pattern's `)` does not end the `$(…)` around it, and
markers bash evaluates as arithmetic get a check. It reads the text the way both
dash and bash do, and refuses a marker where they part (`$'…'`). Only the text
lok writes is lexed; values never are.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from lokfile.errors import TemplateError
from lokfile.templates.shell_words import Words
from lokfile.templates.shellplace import BARE, COMMENT, DQ, HEREDOC, SQ, Place

_CMD, _BT, _SQ, _DQ, _ANSI, _COMMENT, _BRACE, _ARITH, _HD = (
    "cmd", "bt", "sq", "dq", "ansi", "comment", "brace", "arith", "heredoc"
)  # fmt: skip
_CMD_SPECIAL = re.compile(r"[\\'\"`$#<>()\n \t;&|]")
_BRACE_SPECIAL = re.compile(r"[\\'\"`${}]")
_ARITH_SPECIAL = re.compile(r"[\\$`()]")
_HD_SPECIAL = re.compile(r"[\\$`\n]")
_DQ_SPECIAL = re.compile(r'[\\"$`]')
_WORD_BREAK = " \t\n;&|()<>"
_EXPANDING_FRAMES = (_CMD, _BT, _DQ)
_FRAME_PLACES = {_CMD: BARE, _BT: BARE, _SQ: SQ, _DQ: DQ, _COMMENT: COMMENT}
_OPERATORS = (";;&", ";;", ";&", "&&", "||", "|&", ";", "&", "|")
_SHARED_PLACES = {
    (frame, bt): Place(place, bt) for frame, place in _FRAME_PLACES.items() for bt in (False, True)
}


class _Frame:
    """One level of the lexer's stack."""

    def __init__(
        self,
        kind: str,
        in_dq: bool = False,  # a ${…} inside "…"
        delimiter: str = "",
        expand: bool = False,
        strip_tabs: bool = False,
        words: Words | None = None,  # command frames: their words (see shell_words)
    ) -> None:
        self.kind = kind
        self.words = words
        self.nested = False  # a `…` opened by \` inside another `…`
        self.command = False  # an arithmetic frame opened by (( as a command
        self.depth = 0  # unmatched ( or { inside this frame
        self.in_dq = in_dq
        # here-document state
        self.delimiter = delimiter
        self.expand = expand
        self.strip_tabs = strip_tabs
        self.line = ""  # literal text of the current body line so far
        self.clean = True  # the line holds only literal text so far
        self.open_marker: int | None = None  # marker on this line still waiting for its suffix
        self.after = ""  # literal text since that marker
        self.pending: list[tuple[str, bool, bool]] = []


class Lexer:
    """Reads the pieces of one template; see lex()."""

    def __init__(self) -> None:
        self.flags: dict[int, str] = {}  # marker -> value check (shell_words)
        self.stack: list[_Frame] = [self._command_frame(_CMD)]
        self.pending: list[tuple[str, bool, bool]] = []  # here-documents awaiting a newline
        self.prev = ""  # last unescaped character read, "" at the start of a frame
        self.escaped = False  # a backslash ended the previous piece
        self.out: list[Place] = []
        self.suffixes: dict[int, str | None] = {}
        self.last = False
        self.backticks = 0  # `…` frames on the stack
        self.diverged = False  # a $'…\'…' was read: dash and bash disagree from here on

    def _command_frame(self, kind: str) -> _Frame:
        return _Frame(kind, words=Words(self.flags))

    def run(self, pieces: Sequence[str]) -> list[Place]:
        for i, piece in enumerate(pieces):
            self.last = i == len(pieces) - 1
            self.feed(piece)
            if not self.last:
                self.mark()
        for frame in self.stack:
            if frame.kind == _HD and frame.open_marker is not None:
                self.suffixes[frame.open_marker] = frame.after
            if frame.words is not None:
                frame.words.finish()
        out = self.out
        for i, suffix in self.suffixes.items():
            p = out[i]
            out[i] = Place(
                p.kind, p.backtick, p.delimiter, p.expand, p.strip_tabs, p.prefix, suffix
            )
        for i, check in self.flags.items():
            p = out[i]
            out[i] = Place(p.kind, p.backtick, check=check)
        return out

    # -- markers ------------------------------------------------------------

    def mark(self) -> None:
        top = self.stack[-1]
        kind = top.kind
        if self.escaped and (kind != _HD or top.expand) and kind not in (_SQ, _COMMENT):
            raise _refuse("a template value right after a backslash", "remove the backslash")
        if self.prev == "$" and (kind in _EXPANDING_FRAMES or (kind == _HD and top.expand)):
            raise _refuse(
                "a template value right after '$'",
                "write \\$ for a literal dollar sign, or put the value in a variable first",
            )
        if kind == _BRACE:
            raise _refuse(
                "a template value inside ${…}",
                "put the value in a variable first: v={{ … }}; then use ${v}",
            )
        if kind == _ARITH:
            raise _refuse(
                "a template value inside $((…)) or ((…))",
                "bash evaluates a[$(…)] in arithmetic: put the value in a variable and check "
                "it is a number first: v={{ … }}; case $v in ''|*[!0-9]*) exit 1;; esac",
            )
        if kind == _ANSI:
            raise _refuse(
                "a template value inside $'…'",
                "$'…' is bash's quoting; steps run under sh, which in dash reads it as a '$' "
                "and a '…' string: write '{{ … }}' (lok quotes the value for that place)",
            )
        if self.diverged:
            raise _refuse(
                "a template value after a $'…' holding \\'",
                "dash ends $'…' at the \\' and bash does not, so the place of what follows "
                "depends on the shell: write the text as '…'\\''…' instead",
            )
        if self.backticks > 1:
            raise _refuse("a template value inside nested backticks", "use $(…) instead")
        bt = self.backticks == 1
        if kind == _HD:
            prefix = top.line if top.clean else None
            place = Place(HEREDOC, bt, top.delimiter, top.expand, top.strip_tabs, prefix)
            if top.open_marker is not None:
                self.suffixes[top.open_marker] = None
            top.open_marker = len(self.out)
            top.after = ""
            top.clean = False
        else:
            place = _SHARED_PLACES[kind, bt]
            if top.words is not None:
                top.words.marker(len(self.out))
        self.out.append(place)
        self.prev = "a"
        self.escaped = False

    # -- literal text -------------------------------------------------------

    def feed(self, text: str) -> None:
        pos, n = 0, len(text)
        if self.escaped and n:
            pos, self.escaped, self.prev = 1, False, "a"
        while pos < n:
            kind = self.stack[-1].kind
            if kind in (_CMD, _BT):
                pos = self._cmd(text, pos)
            elif kind == _SQ:
                pos = self._until(text, pos, "'")
            elif kind == _DQ:
                pos = self._dq(text, pos)
            elif kind == _ANSI:
                pos = self._ansi(text, pos)
            elif kind == _COMMENT:
                end = text.find("\n", pos)
                if end < 0:
                    return
                self.stack.pop()
                pos = end
            elif kind == _HD:
                pos = self._heredoc(text, pos)
            elif kind == _BRACE:
                pos = self._brace(text, pos)
            else:
                pos = self._arith(text, pos)

    def _push(self, frame: _Frame) -> None:
        top = self.stack[-1]
        if top.kind == _HD:
            # text inside the nested frame is not literal text of the line
            top.clean = False
            if top.open_marker is not None:
                self.suffixes[top.open_marker] = None
                top.open_marker = None
        self.stack.append(frame)
        self.prev = ""
        if frame.kind == _BT:
            self.backticks += 1

    def _pop(self) -> None:
        frame = self.stack.pop()
        if frame.kind == _BT:
            self.backticks -= 1
        if frame.words is not None:
            frame.words.finish()
        self.prev = "a"

    def _skip_escape(self, text: str, at: int) -> int:
        """`text[at]` is a backslash: skip it and the character it escapes."""
        if at + 1 >= len(text):
            self.escaped = True
            return at + 1
        self.prev = "a"
        return at + 2

    def _until(self, text: str, pos: int, closer: str) -> int:
        end = text.find(closer, pos)
        if end < 0:
            return len(text)
        self._pop()
        return end + 1

    def _dollar(self, text: str, at: int, in_dq: bool) -> int:
        """`text[at]` is `$`: push what it opens, if anything."""
        nxt = text[at + 1 : at + 3]
        if nxt.startswith("(("):
            self._push(_Frame(_ARITH))
            return at + 3
        if nxt.startswith("("):
            self._push(self._command_frame(_CMD))
            return at + 2
        if nxt.startswith("{"):
            self._push(_Frame(_BRACE, in_dq=in_dq))
            return at + 2
        if nxt.startswith("'") and not in_dq:
            self._push(_Frame(_ANSI))
            return at + 2
        self.prev = "$"
        return at + 1

    def _next_special(self, pattern: re.Pattern[str], text: str, pos: int) -> int:
        """Where the next character `pattern` cares about is (len(text) if none), keeping
        `prev` as the last character passed over."""
        m = pattern.search(text, pos)
        at = len(text) if m is None else m.start()
        if at > pos:
            self.prev = text[at - 1]
        return at

    def _cmd(self, text: str, pos: int) -> int:
        top = self.stack[-1]
        words = top.words
        assert words is not None
        at = self._next_special(_CMD_SPECIAL, text, pos)
        if at > pos:
            words.literal(text[pos:at])
        if at == len(text):
            return at
        c = text[at]
        if c == "\\":
            if self.backticks and text.startswith("`", at + 1):
                # \` inside `…` opens or closes a nested command substitution
                if top.kind == _BT and top.nested:
                    self._pop()
                else:
                    words.taint()
                    frame = self._command_frame(_BT)
                    frame.nested = True
                    self._push(frame)
                return at + 2
            if not text.startswith("\n", at + 1):
                words.taint()  # an escaped character: the word is no reserved word
            return self._skip_escape(text, at)
        if c in " \t":
            words.blank()
            self.prev = c
        elif c in ";&|":
            op = next(o for o in _OPERATORS if text.startswith(o, at))
            if op == "&" and text.startswith(">", at + 1):
                words.redirect("&>")  # bash: stdout and stderr to a file
                return self._output_redirect(text, at + 1)
            words.separator(op)
            self.prev = op[-1]
            return at + len(op)
        elif c == "'":
            words.taint()
            self._push(_Frame(_SQ))
        elif c == '"':
            words.taint()
            self._push(_Frame(_DQ))
        elif c == "`":
            if top.kind == _BT:
                self._pop()
            else:
                words.taint()
                self._push(self._command_frame(_BT))
        elif c == "$":
            words.taint()
            return self._dollar(text, at, in_dq=False)
        elif c == "#":
            if words.at_word_start:
                self._push(_Frame(_COMMENT))
            else:
                words.literal(c)
                self.prev = c
        elif c == "<":
            return self._redirect(text, at)
        elif c == ">":
            words.redirect(">")
            return self._output_redirect(text, at)
        elif c == "(":
            self.prev = c
            if text.startswith("(", at + 1) and words.opens_arithmetic():
                words.taint()
                frame = _Frame(_ARITH)
                frame.command = True  # bash's (( … )) command; to dash, two subshells
                self._push(frame)
                return at + 2
            if words.open_paren():
                top.depth += 1
        elif c == ")":
            self.prev = c
            if words.close_paren():  # not a case pattern's end: a group or the frame closes
                if top.depth > 0:
                    top.depth -= 1
                elif len(self.stack) > 1 and top.kind == _CMD:
                    self._pop()
        else:  # newline
            self.prev = c
            words.newline()
            if self.pending:
                self._start_heredoc(self.pending.pop(0), self.pending)
                self.pending = []
        return at + 1

    def _output_redirect(self, text: str, at: int) -> int:
        """`text[at]` is `>`: skip the operator (>, >>, >&, >|)."""
        self.prev = ">"
        return at + (2 if text[at + 1 : at + 2] in (">", "&", "|") and at + 1 < len(text) else 1)

    def _redirect(self, text: str, at: int) -> int:
        words = self.stack[-1].words
        assert words is not None
        if text.startswith("<<<", at) or not text.startswith("<<", at):
            self.prev = "<"
            op = "<<<" if text.startswith("<<<", at) else text[at : at + 2]
            op = op if op in ("<<<", "<&", "<>") else "<"
            words.redirect(op)
            return at + len(op)
        words.heredoc()
        i = at + 2
        strip_tabs = text.startswith("-", i)
        i += strip_tabs
        while i < len(text) and text[i] in " \t":
            i += 1
        word: list[str] = []
        quoted = False
        while i < len(text) and text[i] not in _WORD_BREAK:
            c = text[i]
            if c in "'\"":
                end = text.find(c, i + 1)
                if end < 0:
                    break
                word.append(text[i + 1 : end])
                quoted, i = True, end + 1
            elif c == "\\" and i + 1 < len(text):
                word.append(text[i + 1])
                quoted, i = True, i + 2
            else:
                word.append(c)
                i += 1
        if i >= len(text) and not self.last:
            raise _refuse(
                "a template value in a here-document delimiter",
                "write the delimiter literally, e.g. <<'EOF'",
            )
        if word:
            self.pending.append(("".join(word), not quoted, strip_tabs))
        self.prev = "a"
        return i

    def _start_heredoc(
        self, doc: tuple[str, bool, bool], rest: list[tuple[str, bool, bool]]
    ) -> None:
        delimiter, expand, strip_tabs = doc
        frame = _Frame(_HD, delimiter=delimiter, expand=expand, strip_tabs=strip_tabs)
        frame.pending = list(rest)
        self.stack.append(frame)
        self.prev = ""

    def _heredoc(self, text: str, pos: int) -> int:
        top = self.stack[-1]
        n = len(text)
        while pos < n:
            if top.expand:
                m = _HD_SPECIAL.search(text, pos)
                at = n if m is None else m.start()
            else:
                found = text.find("\n", pos)
                at = n if found < 0 else found
            segment = text[pos:at]
            top.line += segment
            top.after += segment
            if segment:
                self.prev = segment[-1]
            if at >= n:
                return n
            c = text[at]
            if c == "\n":
                self._end_line(top)
                if self.stack[-1] is not top:
                    return at + 1
                pos = at + 1
            elif c == "\\":
                top.clean = False
                if at + 1 < n:
                    top.line += text[at : at + 2]
                    top.after += text[at : at + 2]
                pos = self._skip_escape(text, at)
            elif c == "`":
                self._push(self._command_frame(_BT))
                return at + 1
            else:  # $
                before = len(self.stack)
                nxt = self._dollar(text, at, in_dq=True)
                if len(self.stack) != before:
                    return nxt
                top.line += "$"
                top.after += "$"
                pos = nxt
        return pos

    def _end_line(self, top: _Frame) -> None:
        if top.open_marker is not None:
            self.suffixes[top.open_marker] = top.after
            top.open_marker = None
        line = top.line.lstrip("\t") if top.strip_tabs else top.line
        done = top.clean and line == top.delimiter
        top.line, top.after, top.clean = "", "", True
        self.prev = ""
        if done:
            self.stack.pop()
            if top.pending:
                self._start_heredoc(top.pending[0], top.pending[1:])

    def _dq(self, text: str, pos: int) -> int:
        at = self._next_special(_DQ_SPECIAL, text, pos)
        if at == len(text):
            return at
        c = text[at]
        if c == "\\":
            return self._skip_escape(text, at)
        if c == '"':
            self._pop()
        elif c == "`":
            self._push(self._command_frame(_BT))
        else:
            return self._dollar(text, at, in_dq=True)
        return at + 1

    def _ansi(self, text: str, pos: int) -> int:
        while pos < len(text):
            c = text[pos]
            if c == "\\":
                if text.startswith("'", pos + 1):
                    self.diverged = True  # bash reads a quote here; dash ends the string
                pos = self._skip_escape(text, pos)
            elif c == "'":
                self._pop()
                return pos + 1
            else:
                pos += 1
        return pos

    def _brace(self, text: str, pos: int) -> int:
        m = _BRACE_SPECIAL.search(text, pos)
        if m is None:
            return len(text)
        at = m.start()
        c = text[at]
        top = self.stack[-1]
        if c == "\\":
            return self._skip_escape(text, at)
        if c == "'" and not top.in_dq:
            self._push(_Frame(_SQ))
        elif c == '"':
            self._push(_Frame(_DQ))
        elif c == "`":
            self._push(self._command_frame(_BT))
        elif c == "$":
            return self._dollar(text, at, in_dq=top.in_dq)
        elif c == "{":
            top.depth += 1
        elif c == "}":
            if top.depth:
                top.depth -= 1
            else:
                self._pop()
        return at + 1

    def _arith(self, text: str, pos: int) -> int:
        m = _ARITH_SPECIAL.search(text, pos)
        if m is None:
            return len(text)
        at = m.start()
        c = text[at]
        top = self.stack[-1]
        if c == "\\":
            return self._skip_escape(text, at)
        if c == "$":
            return self._dollar(text, at, in_dq=False)
        if c == "`":
            self._push(self._command_frame(_BT))
        elif c == "(":
            top.depth += 1
        elif top.depth:
            top.depth -= 1
        else:
            self._pop()
            if text.startswith("))", at):
                return at + 2
            if top.command:  # `((a) b)`: bash reads two nested subshells after all
                self.stack[-1].depth += 1
            return at + 1
        return at + 1


def _refuse(what: str, hint: str) -> TemplateError:
    return TemplateError(f"lok cannot quote {what} safely", hint)


def lex(pieces: Sequence[str]) -> list[Place]:
    """The place of each marker between consecutive `pieces`; TemplateError for a
    marker lok will not quote."""
    return Lexer().run(pieces)
