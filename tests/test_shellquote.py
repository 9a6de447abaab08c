"""Shell safety: a step output interpolated into a command is read back as exactly that
text by a real shell, wherever it lands, and never runs as code."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lokfile import shell_lexer, shellquote
from lokfile.errors import TemplateError
from lokfile.shellquote import BARE, COMMENT, DQ, HEREDOC, SQ, places
from lokfile.templates import Context, StepView, render_shell

# Pieces an LLM output might contain that break naive quoting, plus delimiter lines.
FRAGMENTS = [
    "$(touch MARKER)",
    "`touch MARKER`",
    "'; touch MARKER; '",
    '"; touch MARKER; "',
    "\\",
    "\\\\",
    "'",
    '"',
    "$",
    "`",
    "\n",
    "EOF",
    "LOKEOF",
    "\nEOF\n",
    "\nLOKEOF\n",
    "\tEOF",
    "${HOME}",
    "$((1+1))",
    "{{ steps.s.output }}",
    "!",
    "#",
    " ",
    "\t",
    "\r",
    ")",
    "(",
    "}",
    "*",
    "~",
    "é",
    "💥",
]
ANY_CHAR = st.characters(exclude_characters="\x00", exclude_categories=["Cs"])
VALUES = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.text(ANY_CHAR, max_size=4)), max_size=10
).map("".join)

VALUE = "{{ steps.s.output }}"
VALUE_JINJA = '{{ steps["s"].output }}'  # same value, through the Jinja renderer

# place -> a command printing the value that lands there
PLACES = {
    "bare": "printf '%s' " + VALUE,
    "single quotes": "printf '%s' '" + VALUE + "'",
    "double quotes": "printf '%s' \"" + VALUE + '"',
    # $(…) strips trailing newlines: the `.` keeps them, and is removed after
    "$() inside double quotes": "v=\"$(printf '%s' "
    + VALUE
    + '; printf .)"; printf \'%s\' "${v%.}"',
    "backticks inside double quotes": "v=\"`printf '%s' "
    + VALUE
    + '; printf .`"; printf \'%s\' "${v%.}"',
    "quoted heredoc": "cat <<'LOKEOF'\n" + VALUE + "\nLOKEOF",
    "double-quoted heredoc": 'cat <<"EOF"\n' + VALUE + "\nEOF",
    "unquoted heredoc": "cat <<EOF\n" + VALUE + "\nEOF",
    "tab-stripping heredoc": "cat <<-EOF\n\t" + VALUE + "\nEOF",
    "the original's heredoc in $()": "printf '%s' \"$(cat <<'LOKEOF'\n" + VALUE + '\nLOKEOF\n)"',
}


def neutralized(value: str, delimiter: str, strip_tabs: bool = False) -> str:
    """The documented change: a value line that reads as the delimiter gets a space after it;
    one that starts with the delimiter (bash ends `$(…)` heredocs at `EOF)`) gets one in front."""
    lines = []
    for line in value.split("\n"):
        core = line.lstrip("\t") if strip_tabs else line
        if core == delimiter:
            lines.append(core + " ")
        elif core.startswith(delimiter):
            lines.append(" " + line)  # the leading space also keeps <<- from stripping tabs
        else:
            lines.append(core)
    return "\n".join(lines)


def expected(place: str, value: str) -> str:
    if place == "quoted heredoc":
        return neutralized(value, "LOKEOF") + "\n"
    if place in ("double-quoted heredoc", "unquoted heredoc"):
        return neutralized(value, "EOF") + "\n"
    if place == "tab-stripping heredoc":
        return neutralized(value, "EOF", strip_tabs=True) + "\n"
    if place == "the original's heredoc in $()":
        return neutralized(value, "LOKEOF").rstrip("\n")
    return value


HEREDOC_DELIMITERS = {
    "quoted heredoc": "LOKEOF",
    "double-quoted heredoc": "EOF",
    "unquoted heredoc": "EOF",
    "tab-stripping heredoc": "EOF",
    "the original's heredoc in $()": "LOKEOF",
}
SH_IS_DASH = os.path.realpath(shutil.which("sh") or "sh").endswith("dash")


def dash_mangles(value: str, delimiter: str) -> bool:
    """dash 0.5.12 drops a byte from a here-document line that starts like the delimiter
    and then has a non-ASCII character (quoted or not; `printf 'cat <<E\\nE\\xc3\\xa9\\nE\\n'
    | sh` prints E\\251). That is the shell's bug, not lok's quoting."""
    for line in value.split("\n"):
        line = line.lstrip("\t")
        k = 0
        while k < len(line) and k < len(delimiter) and line[k] == delimiter[k]:
            k += 1
        if 0 < k < len(line) and ord(line[k]) >= 0x80:
            return True
    return False


def ctx_with(value: str) -> Context:
    return Context(steps={"s": StepView(value, True)})


def run(shell: str, script: str, cwd: Path) -> bytes:
    proc = subprocess.run([shell, "-c", script], cwd=cwd, capture_output=True, timeout=20)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout


def check_every_place(shell: str, value: str, jinja: bool, cwd: Path) -> None:
    """One shell process runs every place, NUL-separated; each must print the value."""
    names = list(PLACES)
    commands = [
        PLACES[name].replace(VALUE, VALUE_JINJA) if jinja else PLACES[name] for name in names
    ]
    script = "\nprintf '\\0'\n".join(commands) + "\n"
    rendered = render_shell(script, ctx_with(value))
    outputs = run(shell, rendered, cwd).split(b"\0")
    assert len(outputs) == len(names)
    for name, out in zip(names, outputs, strict=True):
        delimiter = HEREDOC_DELIMITERS.get(name)
        if shell == "sh" and SH_IS_DASH and delimiter and dash_mangles(value, delimiter):
            continue
        if shell == "bash" and name == "the original's heredoc in $()" and "\x01\x01" in value:
            continue  # bash_mangles: see below
        assert out.decode() == expected(name, value), f"place: {name}"
    assert list(cwd.iterdir()) == [], "something ran"


def test_bash_mangles_a_literal_ctlesc_pair_in_a_heredoc_inside_quoted_command_substitution(
    tmp_path: Path,
) -> None:
    """bash 5.2 reads two literal \\x01 bytes in a quoted here-document inside "$(…)" back as
    one (its internal CTLESC escape leaks). The text is literal in the script, so no quoting
    can avoid it; the property tests skip exact comparison there (nothing runs either way)."""
    if shutil.which("bash") is None:
        pytest.skip("bash not installed")
    script = "printf '%s' \"$(cat <<'E'\n\x01\x01\nE\n)\""
    assert run("bash", script, tmp_path) == b"\x01"  # if bash is fixed, drop the skip above


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shell")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=VALUES, jinja=st.booleans())
def test_any_output_reads_back_exactly_in_every_place_under_sh(
    workdir: Path, value: str, jinja: bool
) -> None:
    check_every_place("sh", value, jinja, workdir)


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=VALUES)
def test_any_output_reads_back_exactly_in_every_place_under_bash(workdir: Path, value: str) -> None:
    check_every_place("bash", value, False, workdir)


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=VALUES)
def test_any_output_reads_back_exactly_inside_ansi_c_quotes_under_bash(
    workdir: Path, value: str
) -> None:
    rendered = render_shell("printf '%s' $'" + VALUE + "'", ctx_with(value))
    assert run("bash", rendered, workdir).decode() == value
    assert list(workdir.iterdir()) == []


# ---------------------------------------------------------------------------
# The original's examples, and single cases a reader can check by eye
# ---------------------------------------------------------------------------


def test_single_quoted_interpolation_of_the_original_fixture_is_unchanged() -> None:
    ctx = Context(steps={"step1": StepView("hello from step1", True)})
    rendered = render_shell("echo 'step1 said: {{ steps.step1.output }}'", ctx)
    assert rendered == "echo 'step1 said: hello from step1'"


def test_a_quote_in_a_field_inside_single_quotes_no_longer_breaks_the_command(
    tmp_path: Path,
) -> None:
    ctx = Context(steps={"pick": StepView('{"title": "Don\'t $(touch MARKER) crash"}', True)})
    rendered = render_shell("printf '%s' 'Fix: {{ steps.pick.title }}'", ctx)
    assert run("sh", rendered, tmp_path) == b"Fix: Don't $(touch MARKER) crash"
    assert not (tmp_path / "MARKER").exists()


def test_the_originals_heredoc_wrapper_gives_exactly_the_output(tmp_path: Path) -> None:
    output = "Line 1 with 'quotes' and \"doubles\"\n$(touch MARKER) `touch MARKER`\n\\n stays"
    ctx = Context(steps={"debate": StepView(output, True)})
    template = "printf '%s' \"$(cat <<'LOKEOF'\n{{ steps.debate.output }}\nLOKEOF\n)\""
    rendered = render_shell(template, ctx)
    assert rendered == template.replace("{{ steps.debate.output }}", output)
    assert run("sh", rendered, tmp_path).decode() == output
    assert not (tmp_path / "MARKER").exists()


def test_a_delimiter_line_in_the_output_cannot_end_the_heredoc(tmp_path: Path) -> None:
    ctx = Context(steps={"x": StepView("before\nLOKEOF\ntouch MARKER\nafter", True)})
    rendered = render_shell("cat <<'LOKEOF'\n{{ steps.x.output }}\nLOKEOF\n", ctx)
    assert run("sh", rendered, tmp_path) == b"before\nLOKEOF \ntouch MARKER\nafter\n"
    assert not (tmp_path / "MARKER").exists()


def test_an_empty_value_next_to_literal_text_cannot_complete_the_delimiter(
    tmp_path: Path,
) -> None:
    ctx = Context(steps={"x": StepView("", True), "y": StepView("LOK", True)})
    rendered = render_shell(
        "cat <<'LOKEOF'\nLOKEOF{{ steps.x.output }}\n{{ steps.y.output }}EOF\ntouch MARKER\nLOKEOF\n",
        ctx,
    )
    assert run("sh", rendered, tmp_path) == b"LOKEOF \nLOK EOF\ntouch MARKER\n"
    assert not (tmp_path / "MARKER").exists()


def test_two_values_on_one_heredoc_line_cannot_form_the_delimiter(tmp_path: Path) -> None:
    ctx = Context(steps={"a": StepView("LOK", True), "b": StepView("EOF", True)})
    rendered = render_shell(
        "cat <<'LOKEOF'\n{{ steps.a.output }}{{ steps.b.output }}\ntouch MARKER\nLOKEOF\n", ctx
    )
    assert run("sh", rendered, tmp_path) == b"LOK EOF \ntouch MARKER\n"
    assert not (tmp_path / "MARKER").exists()


def test_bare_values_are_single_quoted_words_and_empty_is_two_quotes() -> None:
    ctx = Context(steps={"a": StepView("it's", True), "e": StepView("", True)})
    assert render_shell("echo {{ steps.a.output }} {{ steps.e.output }}", ctx) == (
        "echo 'it'\\''s' ''"
    )


def test_double_quoted_values_escape_backslash_quote_dollar_and_backtick() -> None:
    ctx = Context(steps={"a": StepView('\\ " $ ` x', True)})
    assert render_shell('echo "{{ steps.a.output }}"', ctx) == 'echo "\\\\ \\" \\$ \\` x"'


def test_a_value_in_a_comment_cannot_end_the_comment(tmp_path: Path) -> None:
    ctx = Context(steps={"a": StepView("note\ntouch MARKER", True)})
    rendered = render_shell("echo ok # {{ steps.a.output }}\n", ctx)
    assert run("sh", rendered, tmp_path) == b"ok\n"
    assert not (tmp_path / "MARKER").exists()


@pytest.mark.parametrize(
    "template", ["{{ steps.cmds.output | raw }}", "{{ steps.cmds.output | trim | raw }}"]
)
def test_raw_filter_inserts_generated_code_verbatim_and_runs_it(
    tmp_path: Path, template: str
) -> None:
    ctx = Context(steps={"cmds": StepView("touch MARKER && echo made", True)})
    rendered = render_shell(template, ctx)
    assert rendered == "touch MARKER && echo made"
    assert run("sh", rendered, tmp_path) == b"made\n"
    assert (tmp_path / "MARKER").exists()


def test_values_inside_a_jinja_loop_are_quoted_too(tmp_path: Path) -> None:
    ctx = Context(steps={"files": StepView("", True, parsed=["a b", "c'd", "$(touch MARKER)"])})
    template = "{% for f in steps.files.parsed %}printf '%s\\n' {{ f }}\n{% endfor %}"
    assert run("sh", render_shell(template, ctx), tmp_path) == b"a b\nc'd\n$(touch MARKER)\n"
    assert not (tmp_path / "MARKER").exists()


def test_dollar_hash_in_a_command_is_shell_text_not_a_jinja_comment(tmp_path: Path) -> None:
    ctx = Context(steps={"a": StepView("v", True)})
    rendered = render_shell('x=abcd; echo "${#x}" {{ steps.a.output }}', ctx)
    assert run("sh", rendered, tmp_path) == b"4 v\n"


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ('echo "${X:-{{ steps.a.output }}}"', "${…}"),
        ("echo $(( {{ steps.a.output }} + 1 ))", "$((…))"),
        ("echo \\{{ steps.a.output }}", "backslash"),
        ('echo "\\{{ steps.a.output }}"', "backslash"),
        ("echo ${{ steps.a.output }}", "'$'"),
        ('echo "${{ steps.a.output }}"', "'$'"),
        ("cat <<{{ steps.a.output }}\nx\n", "delimiter"),
        ("cat <<EOF{{ steps.a.output }}\nx\n", "delimiter"),
        ("echo `echo \\`echo {{ steps.a.output }}\\``", "nested backticks"),
    ],
)
def test_places_lok_cannot_quote_are_refused_with_a_hint(template: str, problem: str) -> None:
    ctx = Context(steps={"a": StepView("x", True)})
    with pytest.raises(TemplateError) as err:
        render_shell(template, ctx)
    assert problem in err.value.message
    assert err.value.hint


@pytest.mark.parametrize(
    ("pieces", "kinds"),
    [
        (["echo ", ""], [BARE]),
        (["echo '", "'"], [SQ]),
        (['echo "', '"'], [DQ]),
        (['echo "$(echo ', ')"'], [BARE]),
        (["echo 'a'\"", '"'], [DQ]),
        (["echo '\"'", ""], [BARE]),
        (['echo "\\"', '"'], [DQ]),
        (["echo # ", "\n"], [COMMENT]),
        (["echo a#", "\n"], [BARE]),
        (["cat <<'E'\n", "\nE\necho ", ""], [HEREDOC, BARE]),
        (["cat <<E | cat <<'F'\n", "\nE\n", "\nF\n"], [HEREDOC, HEREDOC]),
        (["cat <<<", ""], [BARE]),
        (["x=\"$(cat <<'E'\n", "\nE\n)\" '", "'"], [HEREDOC, SQ]),
    ],
)
def test_the_lexer_finds_the_quoting_context_of_each_marker(
    pieces: list[str], kinds: list[str]
) -> None:
    assert [p.kind for p in places(pieces)] == kinds


def test_here_document_places_carry_delimiter_quoting_and_line_neighbours() -> None:
    first, second = places(["cat <<-EOF\npre ", " mid ", " post\nEOF\n"])
    assert (first.kind, first.delimiter, first.expand, first.strip_tabs) == (
        HEREDOC,
        "EOF",
        True,
        True,
    )
    assert (first.prefix, first.suffix) == ("pre ", None)
    assert (second.prefix, second.suffix) == (None, " post")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="ab '\";|&{}=", max_size=8), min_size=1, max_size=5))
def test_the_quick_scan_for_quote_only_commands_agrees_with_the_full_lexer(
    pieces: list[str],
) -> None:
    assert shellquote._quotes_only(pieces) == shell_lexer.lex(pieces)


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
@pytest.mark.parametrize(
    "line", ["LOKEOF)", "LOKEOF$(touch MARKER)", "LOKEOF$(touch MARKER)'", "LOKEOF`x`"]
)
def test_a_line_starting_with_the_delimiter_cannot_end_the_originals_heredoc_under_bash(
    tmp_path: Path, line: str
) -> None:
    template = "printf '%s' \"$(cat <<'LOKEOF'\n{{ steps.s.output }}\nLOKEOF\n)\""
    rendered = render_shell(template, ctx_with(f"before\n{line}\nafter"))
    assert run("bash", rendered, tmp_path).decode() == f"before\n {line}\nafter"
    assert not (tmp_path / "MARKER").exists()
