"""Rendering prompts and commands: the original's forms and results
(as its own unit tests pinned them), its bugs fixed, full Jinja, and the fast path that must agree with Jinja."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lokfile.errors import TemplateError
from lokfile.templates import render as templates
from lokfile.templates.render import (
    NO_ITEM,
    Context,
    StepView,
    references,
    render_prompt,
    render_shell,
)
from lokfile.templates.scope import TOP_NAMES

PICK = 'I pick this one:\n```json\n{"title": "Fix the parser", "count": 42, "ok": true, "labels": ["bug"]}\n```'


def ctx(**overrides: Any) -> Context:
    base: dict[str, Any] = {
        "steps": {
            "step1": StepView("hello from step1", True),
            "deep-dive": StepView("deep findings", True),
            "pick": StepView(PICK, True),
            "parsed": StepView('{"n": 1}', True, parsed={"n": 2, "none": None}),
            "review": StepView("LGTM", True, backend="claude"),
            "list": StepView('Two:\n```json\n[{"title": "a"}, {"title": "b"}]\n```', True),
        },
        "args": ("123",),
        "named_args": {"unstaged": "true"},
        "env": {"HOME": "/home/dev"},
        "workflow_name": "fix",
        "workflow_backends": "Claude + Codex",
    }
    base.update(overrides)
    return Context(**base)


@pytest.mark.parametrize(
    ("template", "rendered"),
    [
        ("Investigate: {{ steps.step1.output }}", "Investigate: hello from step1"),
        ("{{steps.step1.output}}", "hello from step1"),
        ("{{ steps.deep-dive.output }}", "deep findings"),
        ("{{ steps.pick.title }}", "Fix the parser"),
        ("{{ steps.pick.count }}", "42"),
        ("{{ steps.pick.ok }}", "true"),
        ("{{ steps.pick.labels }}", '["bug"]'),
        ("{{ steps.pick.output.title }}", "Fix the parser"),
        ("{{ steps.parsed.n }}", "2"),  # the parsed value wins over the text
        ("{{ steps.parsed.none }}", "null"),
        ("{{ steps.review.backend }}", "claude"),
        ("{{ steps.review.success }}", "true"),
        ("{{ steps.review }}", "LGTM"),
        ("gh issue view {{ arg.1 }}", "gh issue view 123"),
        ("{{ arg.unstaged }} {{ args.unstaged }}", "true true"),
        ("{{ env.HOME }}", "/home/dev"),
        ("## Fix proposal ({{ workflow.backends }})", "## Fix proposal (Claude + Codex)"),
        ("{{ workflow.name }}", "fix"),
        ("no markers {# at all #} ${#x}", "no markers {# at all #} ${#x}"),
    ],
)
def test_the_originals_forms_render_like_the_original(template: str, rendered: str) -> None:
    assert render_prompt(template, ctx()) == rendered


def test_the_interpolation_fixture_chains_outputs() -> None:
    views = {"step1": StepView("hello from step1", True)}
    step2 = render_shell("echo 'step1 said: {{ steps.step1.output }}'", Context(steps=views))
    assert step2 == "echo 'step1 said: hello from step1'"
    views["step2"] = StepView("step1 said: hello from step1", True)
    step3 = render_shell("echo 'final: {{ steps.step2.output }}'", Context(steps=views))
    assert step3 == "echo 'final: step1 said: hello from step1'"


@pytest.mark.parametrize(
    ("item", "index", "template", "rendered"),
    [
        ("src/a.py", 0, "Review {{ item }} ({{ index }})", "Review src/a.py (0)"),
        ({"name": "tests", "cmd": "pytest"}, 3, "{{ item.name }}: {{ item.cmd }}", "tests: pytest"),
        ({"name": "tests"}, 0, "{{ item }}", '{"name":"tests"}'),
        ([1, "two"], 0, "{{ item }} {{ item.1 }}", '[1,"two"] two'),
        (7, 1, "{{ item }}/{{ index }}", "7/1"),
    ],
)
def test_loop_variables_render_strings_raw_and_other_values_as_compact_json(
    item: Any, index: int, template: str, rendered: str
) -> None:
    assert render_prompt(template, ctx(item=item, index=index)) == rendered


def test_a_value_is_never_expanded_again() -> None:
    views = {"a": StepView("{{ env.SECRET }} {% if x %}", True, parsed={"f": "{{ env.SECRET }}"})}
    out = render_prompt("{{ steps.a.output }} / {{ steps.a.f }}", Context(steps=views))
    assert out == "{{ env.SECRET }} {% if x %} / {{ env.SECRET }}"


def test_the_readme_jinja_branch_now_branches() -> None:
    template = (
        '{% if "error" in steps.risky.output %}Handle the error: {{ steps.risky.output }}'
        "{% else %}Process result: {{ steps.risky.output }}{% endif %}"
    )
    bad = Context(steps={"risky": StepView("error: boom", False)})
    good = Context(steps={"risky": StepView("42 rows", True)})
    assert render_prompt(template, bad) == "Handle the error: error: boom"
    assert render_prompt(template, good) == "Process result: 42 rows"


def test_full_jinja_loops_filters_and_literal_braces_work() -> None:
    out = render_prompt(
        "{% for l in steps.pick.labels %}[{{ l | upper }}]{% endfor %} "
        "{{ steps.pick.title | lower | replace(' ', '-') }} {% raw %}{{ kept }}{% endraw %} "
        "{{ '{{' }} {{ env.MISSING | default('none') }} {{ steps.pick.output | fromjson | json }}",
        ctx(),
    )
    assert out == (
        '[BUG] fix-the-parser {{ kept }} {{ none {"title":"Fix the parser","count":42,'
        '"ok":true,"labels":["bug"]}'
    )


def test_hyphenated_step_names_work_inside_jinja_blocks_and_filters() -> None:
    template = "{% if steps.deep-dive.success %}{{ steps.deep-dive.output | upper }}{% endif %}"
    assert render_prompt(template, ctx()) == "DEEP FINDINGS"


def test_a_type_error_in_an_expression_is_a_template_error_with_a_hint() -> None:
    with pytest.raises(TemplateError) as err:
        render_prompt("{{ steps.pick.title + 1 }}", ctx())
    assert err.value.message.startswith("template error:")
    assert "| int" in (err.value.hint or "")
    assert render_prompt("{{ steps.pick.count + 1 }} {{ arg.1 | int - 1 }}", ctx()) == "43 122"


def test_whitespace_control_trims_like_jinja() -> None:
    assert render_prompt("a  {{- arg.1 -}}  b\n{%- if true %} c{% endif %}", ctx()) == "a123b c"


def test_template_line_endings_become_newlines_on_every_path() -> None:
    assert render_prompt("a\r\nb", ctx()) == "a\nb"
    assert render_prompt("{{ arg.1 }}\r\n", ctx()) == "123\n"
    assert render_prompt("{% if true %}x{% endif %}\r\n", ctx()) == "x\n"


@pytest.mark.parametrize(
    ("template", "message", "hint"),
    [
        ("{{ stepz.a.output }}", "undefined name 'stepz'", "did you mean 'steps'"),
        ("{{ steps.pik.title }}", "no step 'pik'", "did you mean 'pick'"),
        ("{{ steps.pick.titel }}", "no JSON field 'titel'", "did you mean 'title'"),
        ("{{ steps.review.verdict }}", "no JSON field 'verdict'", "no JSON object"),
        ("{{ steps.list.title }}", "no JSON field 'title'", "a JSON array, not an object"),
        ("{{ arg.2 }}", "positional argument 2 was not given", "lok run"),
        ("{{ arg.0 }}", "arg.0 does not exist", "count from 1"),
        ("{{ arg.unstagd }}", "argument 'unstagd' was not given", "did you mean 'unstaged'"),
        ("{{ env.NOPE }}", "environment variable 'NOPE' is not set", "default('')"),
        ("{{ item }}", "'item' is only defined in a for_each step", "for_each"),
        ("{{ steps.pick.titel | upper }}", "no JSON field 'titel'", "did you mean 'title'"),
        ("{% if steps.pik.success %}x{% endif %}", "no step 'pik'", "did you mean 'pick'"),
        ("{{ steps }}", "'steps' is a namespace", "steps.NAME.output"),
    ],
)
def test_undefined_names_are_errors_naming_the_thing_and_the_fix(
    template: str, message: str, hint: str
) -> None:
    for render in (render_prompt, render_shell):
        with pytest.raises(TemplateError) as err:
            render(template, ctx())
        assert message in err.value.message
        assert hint in (err.value.hint or "")
        assert "\n" not in err.value.message


def test_a_missing_item_field_is_an_error_listing_the_fields() -> None:
    with pytest.raises(TemplateError) as err:
        render_prompt("{{ item.missing }}", ctx(item={"name": "tests"}, index=0))
    assert "no field 'missing'" in err.value.message
    assert "name" in (err.value.hint or "")


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("Hello {{ steps.a.output", "unclosed '{{' on line 1"),
        ("a\n{% if x %}", "does not compile"),
        ("{{ steps.a.output | }}", "does not compile"),
        ("{{ }}", "empty"),
        ("{% raw %} never closed", "endraw"),
    ],
)
def test_templates_that_do_not_compile_are_reported_by_references(
    template: str, message: str
) -> None:
    with pytest.raises(TemplateError) as err:
        references(template, "prompt")
    assert message in err.value.message


@pytest.mark.parametrize(
    ("template", "kind", "names"),
    [
        ("no markers", "prompt", set()),
        (
            "{{ steps.a.output }} {{ steps.deep-dive.title }} {{ arg.1 }}",
            "prompt",
            {"a", "deep-dive"},
        ),
        ("echo {{ steps.a.output | raw }} '{{ steps.b.x }}'", "shell", {"a", "b"}),
        (
            "{% for x in steps.a.parsed %}{{ steps['b-c'].output }}{% endfor %}",
            "prompt",
            {"a", "b-c"},
        ),
        ("{{ 'steps.fake.output' }}", "prompt", set()),
    ],
)
def test_references_lists_the_steps_a_template_reads(
    template: str, kind: str, names: set[str]
) -> None:
    assert references(template, kind) == names


def run_python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_plain_templates_conditions_and_loops_render_without_importing_jinja2() -> None:
    code = """
import sys
from lokfile.templates.render import *
assert "jinja2" not in sys.modules, "imported by import"
c = Context(steps={"a": StepView('["x"]', True)}, args=("1",))
assert render_shell("cksum src/a.txt", c) == "cksum src/a.txt"
assert render_shell("echo {{ steps.a.output }} '{{ arg.1 }}'", c) == "echo '[\\"x\\"]' '1'"
assert render_prompt("{{ steps.a.output }}", c) == '["x"]'
assert references("{{ steps.a.output }}", "prompt") == {"a"}
assert eval_condition("not(contains(a.output, 'y'))", c)
assert eval_for_each("steps.a.output", c) == ["x"]
print("jinja2" in sys.modules)
"""
    assert run_python(code) == "False"


def test_a_jinja_template_does_import_jinja2() -> None:
    code = """
import sys
from lokfile.templates.render import Context, render_prompt
render_prompt("{% if true %}x{% endif %}", Context(steps={}))
print("jinja2" in sys.modules)
"""
    assert run_python(code) == "True"


# ---------------------------------------------------------------------------
# The fast path and the Jinja path agree
# ---------------------------------------------------------------------------

STEP_NAMES = ["a", "b-c", "x1", "1st"]
KEYS = ["output", "success", "error", "backend", "parsed", "skipped", "title", "n", "0", "1",
        "name", "strip", "keys", "missing"]  # fmt: skip
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(allow_nan=False)
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)
    ),
    max_leaves=6,
)
TEXT = st.text(st.characters(exclude_characters="{}\x00", exclude_categories=["Cs"]), max_size=8)


@st.composite
def outputs(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["text", "object", "fenced"]))
    if kind == "text":
        return draw(TEXT)
    import json

    value = json.dumps(draw(st.dictionaries(st.sampled_from(KEYS), JSON, max_size=3)))
    return f"Here:\n```json\n{value}\n```\n" if kind == "fenced" else value


VIEWS = st.builds(
    StepView,
    output=outputs(),
    success=st.booleans(),
    error=st.none() | TEXT,
    backend=st.none() | st.just("claude"),
    parsed=st.none() | JSON,
    skipped=st.booleans(),
)
CONTEXTS = st.builds(
    Context,
    steps=st.dictionaries(st.sampled_from(STEP_NAMES), VIEWS, max_size=3),
    args=st.lists(TEXT, max_size=2).map(tuple),
    named_args=st.dictionaries(st.sampled_from(["name", "mode"]), TEXT, max_size=2),
    env=st.dictionaries(st.sampled_from(["HOME", "CI"]), TEXT, max_size=2),
    item=st.just(NO_ITEM) | JSON,
    index=st.none() | st.integers(0, 3),
)


@st.composite
def markers(draw: st.DrawFn) -> str:
    head = draw(st.sampled_from(TOP_NAMES))
    path = [head]
    if head == "steps" and draw(st.booleans()):
        path.append(draw(st.sampled_from([*STEP_NAMES, "nope"])))
    path += draw(st.lists(st.sampled_from(KEYS), max_size=2))
    raw = draw(st.sampled_from(["", " | raw", "|raw"]))
    space = draw(st.sampled_from(["", " ", "  "]))
    return "{{" + space + ".".join(path) + raw + space + "}}"


TEMPLATES = st.lists(st.one_of(TEXT, markers()), min_size=1, max_size=5).map("".join)


def outcome(render: Any) -> tuple[str, str | None, str | None]:
    try:
        return ("ok", render(), None)
    except TemplateError as err:
        return ("error", err.message, err.hint)


@settings(max_examples=120, deadline=None)
@given(template=TEMPLATES, context=CONTEXTS, kind=st.sampled_from(["prompt", "shell"]))
def test_the_fast_path_renders_exactly_what_jinja_renders(
    template: str, context: Context, kind: str
) -> None:
    try:
        fast = templates._compile(template, kind)
    except TemplateError:  # e.g. a value right after '$': refused the same way on both paths
        with pytest.raises(TemplateError):
            templates._build(template, kind, fast=False)
        return
    if "{{" in template:
        assert fast.parts is not None, "a plain template must take the fast path"
    slow = templates._build(template, kind, fast=False)
    assert slow.parts is None
    assert outcome(lambda: fast.render(context)) == outcome(lambda: slow.render(context))
