"""The words of a shell command, as far as quoting needs them: reserved words,
`case` patterns, test commands and arithmetic.

The lexer (`shell_lexer`) feeds one `Words` per command frame (the top level,
each `$(…)`, each `` `…` ``) with what it reads: literal word text, a quote or
expansion inside a word ("taint": such a word is never a reserved word), a
template marker, blanks, operators and parentheses. It answers three questions
the quoting context depends on:

    case x in a) …;; esac       is this `)` the end of a pattern (not the end of
                                the `$(…)` around it)?
    (( … ))                     does this `((` open an arithmetic command?
    [[ {{v}} -eq 3 ]]           which markers does bash evaluate as arithmetic
    [ -v {{v}} ]  let {{v}}     (or as a variable name), where `a[$(cmd)]` runs
                                `cmd`? Those markers get a check: the value must
                                be a plain number (or name), whatever its quoting.

    Words of one simple command           state of a `case`
    ───────────────────────────           ─────────────────
    [[  {{v}}  -eq  3  ]]                 case ─► subject ─► in ─► pattern ⇄ body
    0    1     2    3  4                       word     `in`  `)`      `;;`
    marker at 1, "-eq" beside it: number       `esac` ends it (pattern or body)

Only literal template text is read here, never a value.
"""

from __future__ import annotations

import re

from lokfile.templates.shellplace import NAME, NUMBER

# words after which the next word still starts a command
_KEEP_COMMAND = frozenset({"if", "then", "else", "elif", "do", "while", "until", "!", "{", "time"})
_END_COMPOUND = frozenset({"fi", "done", "}"})
_TESTS = frozenset({"[", "[[", "test"})
_ARITH_OPS = frozenset({"-eq", "-ne", "-lt", "-le", "-gt", "-ge"})
_NAME_OPS = frozenset({"-v", "-R"})
_DECLARE = frozenset({"declare", "typeset", "local", "readonly"})
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_EXTGLOB = "@?*+!"

_SUBJECT, _IN, _PATTERN, _BODY = "subject", "in", "pattern", "body"


class Words:
    """Word state of one command frame; `flags` collects marker index -> check."""

    def __init__(self, flags: dict[int, str]) -> None:
        self.flags = flags
        self.in_word = False
        self.text = ""  # literal text of the current word, up to its first taint
        self.tainted = False
        self.markers: list[int] = []  # markers in the current word
        self.words: list[str | None] = []  # the current simple command (None: tainted)
        self.word_markers: list[tuple[int, int]] = []  # (word position, marker index)
        self.command = True  # the next word starts a command (reserved words count)
        self.target = False  # the next word is a redirection target
        self.cases: list[str] = []
        self.pattern_started = False
        self.pattern_depth = 0  # open extglob groups in a pattern: @(a|b)
        self.test_depth = 0  # open ( inside [[ … ]]

    # -- what the lexer reports -----------------------------------------------------

    def literal(self, text: str) -> None:
        if not self.in_word:
            self._start()
        if not self.tainted:
            self.text += text

    def taint(self) -> None:
        if not self.in_word:
            self._start()
        self.tainted = True

    def marker(self, index: int) -> None:
        self.taint()
        self.markers.append(index)

    def blank(self) -> None:
        self._end_word()

    def newline(self) -> None:
        self._end_word()
        if self.cases and self.cases[-1] in (_SUBJECT, _IN, _PATTERN):
            return  # `case x⏎in⏎a)`: newlines are allowed there
        if not self.in_test:
            self._end_command()

    def separator(self, op: str) -> None:
        """`op` is one of ; ;; ;& ;;& & && | || |&."""
        self._end_word()
        if self.in_test and op in ("&&", "||"):
            self._token(op)
            return
        if op == "|" and self.in_pattern:
            return  # a|b) separates patterns
        if op in (";;", ";;&", ";&") and self.cases and self.cases[-1] == _BODY:
            self.cases[-1] = _PATTERN
            self.pattern_started = False
        self._end_command()

    def redirect(self, op: str) -> None:
        """A redirection operator (not a here-document): its target word is no argument."""
        self._end_word()
        if self.in_test and op in ("<", ">"):
            self._token(op)  # [[ a < b ]] compares strings
        else:
            self.target = True

    def heredoc(self) -> None:
        """`<<WORD`: the lexer has read the delimiter word itself."""
        self._end_word()

    def opens_arithmetic(self) -> bool:
        """Whether `((` here opens an arithmetic command: at the start of a command."""
        return (
            self.command
            and not self.in_word
            and not self.cases_pending
            and not self.in_pattern
            and not self.in_test
        )

    def open_paren(self) -> bool:
        """A `(`; True when it opens a group the lexer counts (subshell, `<(`, `f()`)."""
        if self.in_pattern and self.in_word and self._last_char() in _EXTGLOB:
            self.pattern_depth += 1  # @(a|b): part of the pattern word
            self.taint()
            return False
        self._end_word()
        if self.in_pattern:
            return False  # the optional opening paren of `(a)`
        if self.in_test:
            self.test_depth += 1
            self._token("(")
            return False
        self._end_command()
        return True

    def close_paren(self) -> bool:
        """A `)`; True when it closes a group the lexer counts (or the frame)."""
        if self.in_pattern and self.pattern_depth:
            self.pattern_depth -= 1
            return False
        self._end_word()  # `esac)` ends the case first
        if self.in_pattern:
            self.cases[-1] = _BODY
            self.command = True
            return False
        if self.in_test and self.test_depth:
            self.test_depth -= 1
            self._token(")")
            return False
        self._end_command()
        self.command = False
        return True

    def finish(self) -> None:
        """The frame ends (or the template does): settle the last command."""
        self._end_word()
        self._end_command()

    # -- state the lexer asks about -------------------------------------------------

    @property
    def in_pattern(self) -> bool:
        return bool(self.cases) and self.cases[-1] == _PATTERN

    @property
    def in_test(self) -> bool:
        return bool(self.words) and self.words[0] == "[["

    @property
    def at_word_start(self) -> bool:
        return not self.in_word

    @property
    def cases_pending(self) -> bool:
        return bool(self.cases) and self.cases[-1] in (_SUBJECT, _IN)

    # -- internals --------------------------------------------------------------------

    def _start(self) -> None:
        self.in_word, self.text, self.tainted, self.markers = True, "", False, []

    def _last_char(self) -> str:
        return self.text[-1:] if not self.tainted else ""

    def _token(self, text: str) -> None:
        self.words.append(text)

    def _end_word(self) -> None:
        if not self.in_word:
            return
        self.in_word = False
        word = None if self.tainted else self.text
        markers = self.markers
        if self.target:
            self.target = False
            return
        if self.cases:
            state = self.cases[-1]
            if state == _SUBJECT:
                self.cases[-1] = _IN
                return
            if state == _IN:
                if word == "in":
                    self.cases[-1] = _PATTERN
                    self.pattern_started = False
                else:
                    self.cases.pop()  # not a case after all; the shell will say so
                return
            if state == _PATTERN:
                if word == "esac" and not self.pattern_started:
                    self._close_case()
                else:
                    self.pattern_started = True
                return
        if self.command and not self.words and word is not None:
            if word == "case":
                self.cases.append(_SUBJECT)
                self.command = False
                return
            if word == "esac" and self.cases and self.cases[-1] == _BODY:
                self._close_case()
                return
            if word in _KEEP_COMMAND:
                return
            if word in _END_COMPOUND:
                self.command = False
                return
        if not self.words and _ASSIGNMENT.match(self.text):
            self.command = False  # `A=1 cmd`: a prefix assignment, then the command
            return
        self.command = False
        position = len(self.words)
        self.words.append(word)
        self.word_markers += [(position, m) for m in markers]
        if word == "]]" and self.words[0] == "[[" and not self.test_depth:
            self._end_command()

    def _close_case(self) -> None:
        self.cases.pop()
        self.command = False

    def _end_command(self) -> None:
        words, markers = self.words, self.word_markers
        self.words, self.word_markers = [], []
        self.command = True
        self.test_depth = 0
        if not markers or not words or words[0] is None:
            return
        head = words[0]
        if head in _TESTS:
            for position, index in markers:
                before = words[position - 1] if position > 0 else None
                after = words[position + 1] if position + 1 < len(words) else None
                if before in _NAME_OPS:
                    self._flag(index, NAME)
                elif head == "[[" and (before in _ARITH_OPS or after in _ARITH_OPS):
                    self._flag(index, NUMBER)  # `[`/`test` -eq take integers and evaluate nothing
        elif head == "let":
            for position, index in markers:
                if position > 0:
                    self._flag(index, NUMBER)
        elif head in _DECLARE:
            integer = False
            for position, word in enumerate(words[1:], 1):
                if word is not None and word.startswith("-") and "i" in word:
                    integer = True
                if integer:
                    for at, index in markers:
                        if at == position:
                            self._flag(index, NUMBER)

    def _flag(self, index: int, check: str) -> None:
        if self.flags.get(index) != NAME:
            self.flags[index] = check
