"""The shell-quoting attack matrix: places a workflow author may put a value, payloads
built to break each, and a runner that executes them under real `dash` and `bash`.

A context is a command template holding the marker `V` (a step output) and the text it
must print. Each shell runs every context it understands in one process, the outputs
separated by NUL bytes; a payload that manages to run anything creates MARKER (or any
other file) in the empty working folder, which the runner checks after each process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from lokfile.process.launch import launch
from lokfile.templates.render import Context, StepView, render_shell

V = "{{ steps.s.output }}"
V_JINJA = '{{ steps["s"].output }}'  # the same value, through the Jinja renderer
BOTH, BASH = ("dash", "bash"), ("bash",)

# What an LLM (or a hostile page it read) might answer, to break each context.
FRAGMENTS = [
    "x'; touch MARKER\n#",  # the $'…' break-out that worked under dash
    "$(touch MARKER)",
    "`touch MARKER`",
    "'; touch MARKER; '",
    '"; touch MARKER; "',
    "; touch MARKER",
    "&& touch MARKER",
    "| touch MARKER",
    "a[$(touch MARKER)]",  # bash arithmetic evaluates subscripts
    "${x:-$(touch MARKER)}",
    "\\'",
    "'\\''",
    "$'",
    "\\",
    "\\\\",
    "\\\n",
    "'",
    '"',
    "$",
    "`",
    "\n",
    "\n#",
    "EOF",
    "LOKEOF",
    "E",
    "\nEOF\n",
    "\nLOKEOF\n",
    "\nE\n",
    "\tEOF",
    "EOF)",
    "LOKEOF)",
    "EOF$(touch MARKER)",
    "${HOME}",
    "$((1+1))",
    "{{ steps.s.output }}",
    ";;",
    "esac",
    " in ",
    ")",
    "(",
    "}",
    "{",
    "]]",
    "]",
    "[",
    "-eq",
    "-v",
    "!",
    "#",
    ";",
    "&",
    "|",
    "<<",
    "<",
    ">",
    "2>&1",
    "*",
    "?",
    "[a-z]*",
    "{a,b}",
    "~",
    " ",
    "\t",
    "\r",
    "\x01",
    "\x7f",
    "\x1b[31m",
    "\u00a0",
    "\u202e",
    "é",
    "💥",
    "x" * 3000,
]


def _out(value: str) -> str:
    return value


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


@dataclass(frozen=True)
class Shape:
    """One context: a template and what it prints for a value."""

    template: str
    expect: Callable[[str], str]
    shells: tuple[str, ...] = BOTH
    delimiters: tuple[str, ...] = ()  # its here-documents': shells mangle some lines there
    in_substitution: bool = False  # the here-document sits inside "$(…)"


def _heredoc(delimiter: str, strip_tabs: bool = False) -> Callable[[str], str]:
    return lambda v: neutralized(v, delimiter, strip_tabs) + "\n"


def _heredoc_in_substitution(delimiter: str) -> Callable[[str], str]:
    return lambda v: neutralized(v, delimiter).rstrip("\n")


def _nonempty(v: str) -> str:
    return v if v else ""


def _ok(_: str) -> str:
    return "ok"


# $(…) strips trailing newlines: a `.` printed after the value keeps them, and is removed.
KEEP = "printf .)"
CONTEXTS: dict[str, Shape] = {
    "bare word": Shape("printf '%s' " + V, _out),
    "single quotes": Shape("printf '%s' '" + V + "'", _out),
    "double quotes": Shape("printf '%s' \"" + V + '"', _out),
    "one word of many quotes": Shape(
        "printf '%s' a\"" + V + "\"b'" + V + "'c" + V, lambda v: f"a{v}b{v}c{v}"
    ),
    "assignment": Shape("A=" + V + "; printf '%s' \"$A\"", _out),
    "double-quoted assignment": Shape('A="' + V + '"; printf \'%s\' "$A"', _out),
    "prefix assignment": Shape("A=" + V + " printenv A", lambda v: v + "\n"),
    "export": Shape("export A=" + V + "; printf '%s' \"$A\"", _out),
    "for word": Shape("for x in " + V + "; do printf '%s' \"$x\"; done", _out),
    "function argument": Shape("f() { printf '%s' \"$1\"; }; f " + V, _out),
    "brace group": Shape("{ printf '%s' " + V + "; }", _out),
    "subshell": Shape("( printf '%s' " + V + " )", _out),
    "pipeline": Shape("printf '%s' " + V + " | cat", _out),
    "if branch": Shape("if true; then printf '%s' " + V + "; fi", _out),
    "$() in double quotes": Shape(
        "v=\"$(printf '%s' " + V + "; " + KEEP + '"; printf \'%s\' "${v%.}"', _out
    ),
    "$() in an assignment": Shape(
        "v=$(printf '%s' " + V + "; " + KEEP + "; printf '%s' \"${v%.}\"", _out
    ),
    "nested $()": Shape(
        "v=\"$(printf '%s' \"$(printf '%s' "
        + V
        + "; "
        + KEEP
        + '"; '
        + KEEP
        + '"; v="${v%.}"; printf \'%s\' "${v%.}"',
        _out,
    ),
    "$() inside a double-quoted $()": Shape(
        "v=\"$(printf '%s' \"x$(printf '%s' \"" + V + '"; printf .)y"; ' + KEEP + '"; '
        "printf '%s' \"${v%.}\"",
        lambda v: f"x{v}.y",
    ),
    "backticks in double quotes": Shape(
        "v=\"`printf '%s' " + V + '; printf .`"; printf \'%s\' "${v%.}"', _out
    ),
    "backticks in an assignment": Shape(
        "v=`printf '%s' " + V + "; printf .`; printf '%s' \"${v%.}\"", _out
    ),
    "$() inside backticks": Shape(
        "v=`printf '%s' \"$(printf '%s' " + V + '; printf .)"; printf .`; '
        'v="${v%.}"; printf \'%s\' "${v%.}"',
        _out,
    ),
    "test brackets": Shape("[ " + V + " = " + V + " ] && printf ok", _ok),
    "test -n": Shape("[ -n " + V + " ] && printf '%s' " + V + "; :", _nonempty),
    "test command": Shape("test " + V + ' = "' + V + '" && printf ok', _ok),
    "negated test": Shape("! [ " + V + " != " + V + " ] && printf ok", _ok),
    "[[ == ]]": Shape("[[ " + V + " == " + V + " ]] && printf ok", _ok, BASH),
    "[[ =~ ]]": Shape("[[ " + V + " =~ " + V + " ]] && printf ok", _ok, BASH),
    "[[ -n ]] with ( )": Shape("[[ ( -n " + V + " || -z " + V + " ) ]] && printf ok", _ok, BASH),
    "here-string": Shape("cat <<< " + V, lambda v: v + "\n", BASH),
    "case word and pattern": Shape(
        "case " + V + " in " + V + ") printf '%s' " + V + ";; *) printf no;; esac", _out
    ),
    "case in $()": Shape(
        'v="$(case '
        + V
        + " in "
        + V
        + ") printf '%s' "
        + V
        + ";; *) printf no;; esac; "
        + KEEP
        + '"; printf \'%s\' "${v%.}"',
        _out,
    ),
    "case with (pattern) in $()": Shape(
        "v=$(case x in (y|z) printf no;; (x) printf '%s' "
        + V
        + ";; esac; "
        + KEEP
        + "; printf '%s' \"${v%.}\"",
        _out,
    ),
    "nested case in $()": Shape(
        "v=\"$(case a in a) case b in b) printf '%s' "
        + V
        + ";; esac;; esac; "
        + KEEP
        + '"; printf \'%s\' "${v%.}"',
        _out,
    ),
    "case in backticks": Shape(
        "v=`case " + V + " in *) printf '%s' " + V + ";; esac; printf .`; printf '%s' \"${v%.}\"",
        _out,
    ),
    "comment": Shape("printf ok # " + V, _ok),
    "comment in $()": Shape('v="$(printf ok # ' + V + '\n)"; printf \'%s\' "$v"', _ok),
    "quoted heredoc": Shape(
        "cat <<'LOKEOF'\n" + V + "\nLOKEOF", _heredoc("LOKEOF"), BOTH, ("LOKEOF",)
    ),
    "double-quoted heredoc": Shape('cat <<"EOF"\n' + V + "\nEOF", _heredoc("EOF"), BOTH, ("EOF",)),
    "unquoted heredoc": Shape("cat <<EOF\n" + V + "\nEOF", _heredoc("EOF"), BOTH, ("EOF",)),
    "one-letter heredoc": Shape("cat <<E\n" + V + "\nE", _heredoc("E"), BOTH, ("E",)),
    "tab-stripping heredoc": Shape(
        "cat <<-EOF\n\t" + V + "\nEOF", _heredoc("EOF", strip_tabs=True), BOTH, ("EOF",)
    ),
    "the original's heredoc in $()": Shape(
        "printf '%s' \"$(cat <<'LOKEOF'\n" + V + '\nLOKEOF\n)"',
        _heredoc_in_substitution("LOKEOF"),
        BOTH,
        ("LOKEOF",),
        True,
    ),
    "unquoted heredoc in $()": Shape(
        "printf '%s' \"$(cat <<EOF\n" + V + '\nEOF\n)"',
        _heredoc_in_substitution("EOF"),
        BOTH,
        ("EOF",),
        True,
    ),
    "heredoc in a case in $()": Shape(
        "printf '%s' \"$(case a in a) cat <<'E'\n" + V + '\nE\n;; esac)"',
        _heredoc_in_substitution("E"),
        BOTH,
        ("E",),
        True,
    ),
    "two heredocs on one line": Shape(
        "cat <<'A'; cat <<B\n" + V + "\nA\n" + V + "\nB",
        lambda v: neutralized(v, "A") + "\n" + neutralized(v, "B") + "\n",
        BOTH,
        ("A", "B"),
    ),
}

# Places lok refuses when it compiles the template: nothing renders, nothing runs.
REFUSED = {
    "ANSI-C quotes": "printf '%s' $'" + V + "'",
    "after $'…' holding \\'": "printf '%s' $'it\\'s' " + V,
    "parameter default": "printf '%s' ${x:-" + V + "}",
    "quoted parameter default": "printf '%s' \"${x:-" + V + '}"',
    "arithmetic expansion": "echo $(( " + V + " + 1 ))",
    "arithmetic command": "(( " + V + " > 1 )) && echo big",
    "arithmetic command in $()": 'echo "$( (( ' + V + ' )) && echo big)"',
    "after a backslash": "echo \\" + V,
    "after a dollar": "echo $" + V,
    "heredoc delimiter": "cat <<" + V + "\nx\n",
    "nested backticks": "echo `echo \\`echo " + V + "\\``",
}

# Places where bash evaluates the word as arithmetic (or a name): a value must be a plain
# number (name) or the step fails when the template renders.
NUMERIC = {
    "[ -eq ]": ("[ " + V + " -eq " + V + " ] && printf ok", BOTH),
    "test -gt": ("test 9 -gt " + V + " && printf ok; :", BOTH),
    "[[ -lt ]]": ("[[ " + V + " -lt 10 ]] && printf ok; :", BASH),
    "let": ("let 'n = 1 + '" + V + "; printf ok", BASH),
    "declare -i": ("declare -i n=" + V + "; printf ok", BASH),
    "[ -v ]": ("[ -v " + V + " ] || printf ok", BASH),
    "if [ -ge ] in $()": (
        'v="$(if [ ' + V + ' -ge 0 ]; then printf ok; fi)"; printf \'%s\' "$v"',
        BOTH,
    ),
}

SH_IS_DASH = os.path.realpath(shutil.which("sh") or "sh").endswith("dash")


def shells() -> list[str]:
    """The shells to attack: dash and bash. Missing dash skips (fails under
    LOK_REQUIRE_DASH=1, which CI sets)."""
    if shutil.which("dash") is None:
        if os.environ.get("LOK_REQUIRE_DASH") == "1":
            pytest.fail("dash is not installed and LOK_REQUIRE_DASH=1")
        pytest.skip("dash is not installed (apt-get install dash): it is Debian's /bin/sh")
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    return ["dash", "bash"]


def ctx_with(value: str) -> Context:
    return Context(steps={"s": StepView(value, True)})


def render(template: str, value: str, jinja: bool = False) -> str:
    return render_shell(template.replace(V, V_JINJA) if jinja else template, ctx_with(value))


def run(argv: list[str], cwd: Path, script: str, scratch: Path) -> bytes:
    """Run `script` with `argv` (+ `-c script`, or a script file when it is large)."""
    if len(script.encode()) < 100_000:
        full = [*argv, "-c", script]
    else:
        path = scratch / "script.sh"
        path.write_text(script)
        full = [*argv, str(path)]
    return run_argv(full, cwd)


def run_argv(argv: list[str], cwd: Path) -> bytes:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    return proc.stdout


def assert_nothing_ran(cwd: Path) -> None:
    assert sorted(p.name for p in cwd.iterdir()) == [], "a payload ran a command"


def mangled(shell: str, shape: Shape, value: str) -> bool:
    """Shell bugs on bytes a script holds literally (lok cannot quote around them; nothing
    runs either way): dash 0.5.12 drops a byte from a here-document line that starts like
    the delimiter and goes on with a non-ASCII character; bash 5.2 reads \\x01 followed by
    \\x01 or \\x7f in a here-document inside "$(…)" as the second byte alone."""
    if not shape.delimiters:
        return False
    if shell == "dash":
        return any(_dash_mangles(value, d) for d in shape.delimiters)
    return shape.in_substitution and ("\x01\x01" in value or "\x01\x7f" in value)


def _dash_mangles(value: str, delimiter: str) -> bool:
    for line in value.split("\n"):
        line = line.lstrip("\t")
        k = 0
        while k < len(line) and k < len(delimiter) and line[k] == delimiter[k]:
            k += 1
        if 0 < k < len(line) and ord(line[k]) >= 0x80:
            return True
    return False


def check_contexts(
    shell: str,
    value: str,
    cwd: Path,
    scratch: Path,
    jinja: bool = False,
    wrapper: str | None = None,
    outer: str = "",
) -> int:
    """Run every context `shell` understands with `value`, in one process; each prints
    exactly what it promises and nothing runs. With a `wrapper`, the `outer` shell runs
    the wrapper, which starts `shell`. Returns how many contexts ran."""
    names = [n for n, shape in CONTEXTS.items() if shell in shape.shells]
    commands = [render(CONTEXTS[n].template, value, jinja) for n in names]
    script = "\nprintf '\\0'\n".join(commands) + "\n"
    if wrapper is None:
        out = run([shell], cwd, script, scratch)
    else:  # the way lok starts a wrapped step (a large one through a script file)
        started = launch(script, wrapper, scratch)
        try:
            out = run_argv([outer or shell, *started.argv[1:]], cwd)
        finally:
            started.done()
    outputs = out.split(b"\0")
    assert_nothing_ran(cwd)
    assert len(outputs) == len(names)
    heredoc_wrapper = wrapper is not None and "<<'LOKCMD'" in wrapper
    if heredoc_wrapper and (outer or shell) == "dash" and _dash_mangles(value, "LOKCMD"):
        return len(names)  # dash's bug, in the wrapper's own here-document
    for name, out in zip(names, outputs, strict=True):
        shape = CONTEXTS[name]
        if mangled(shell, shape, value):
            continue
        assert out.decode(errors="surrogateescape") == shape.expect(value), (
            f"{shell}, context: {name}"
        )
    return len(names)
