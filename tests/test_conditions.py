"""`when` / `if` conditions and `for_each` loop sources: the original's forms and
results (as its own unit tests pinned them), its bugs fixed, and Jinja expressions."""

from __future__ import annotations

from typing import Any

import pytest

from lokfile.errors import TemplateError
from lokfile.templates.render import Context, StepView, eval_condition, eval_for_each, references

REVIEW = 'Verdict below.\n```json\n{"verdict": "approve", "approved": true, "padded": " x "}\n```'

CTX = Context(
    steps={
        "check": StepView("STATUS: ISSUES_FOUND\n", True),
        "equals_test": StepView("PASS\n", True),
        "review": StepView(REVIEW, True),
        "deep-dive": StepView("found a not(ok) case", True),
        "broken": StepView("Error: exit 1", False, error="exit 1"),
        "skipped": StepView("", False, skipped=True),
    }
)


@pytest.mark.parametrize(
    ("condition", "result"),
    [
        ("contains(check.output, 'ISSUES_FOUND')", True),
        ("contains(check.output, 'NO_ISSUES')", False),
        ('contains(check.output, "ISSUES_FOUND")', True),
        ("not(contains(check.output, 'NO_ISSUES'))", True),
        ("not(not(contains(check.output, 'ISSUES')))", True),
        ("equals(equals_test.output, 'PASS')", True),  # output trimmed
        ("equals(equals_test.output, 'PASS\\n')", False),
        ("steps.check.output contains 'ISSUES'", True),
        ('steps.check.output contains "NOPE"', False),
        ("steps.check.success", True),
        ("steps.broken.success", False),
        ("not(steps.broken.success)", True),
        ("steps.skipped.success", False),
        ("contains(review.verdict, 'appro')", True),
        ("equals(review.verdict, 'approve')", True),
        ("equals(review.padded, 'x')", False),  # a field is compared exactly
        ("equals(review.padded, ' x ')", True),
        ("equals(review.approved, 'true')", True),
        ("contains(review.missing, 'x')", False),  # a missing field is false
        ("contains(steps.check.output, 'ISSUES')", True),
        ("contains(deep-dive.output, 'found')", True),
        ("steps.deep-dive.success", True),
        ("equals(skipped.output, '')", True),  # a skipped step reads as empty
        ("", True),  # no condition
    ],
)
def test_the_originals_condition_forms_give_its_results(condition: str, result: bool) -> None:
    assert eval_condition(condition, CTX) is result


def test_not_inside_a_quoted_string_is_just_text() -> None:
    assert eval_condition("contains(deep-dive.output, 'not(ok)')", CTX) is True
    assert eval_condition("contains(check.output, 'not(ok)')", CTX) is False


def test_escaped_quotes_in_the_search_text_match_real_json() -> None:
    # full-heal.toml's condition, which never matched in the original
    output = '{"approved": true}'
    ctx = Context(steps={"review": StepView(output, True)})
    assert eval_condition('contains(review.output, "\\"approved\\": true")', ctx) is True


@pytest.mark.parametrize(
    ("condition", "result"),
    [
        ("steps.check.success and not steps.broken.success", True),
        ("steps.check.success and steps.broken.success", False),
        ("'ISSUES' in steps.check.output", True),
        ("steps.review.verdict == 'approve'", True),
        ("contains(check.output, 'ISSUES') and steps.review.approved", True),
        ("contains(deep-dive.output, 'found') or steps.broken.success", True),
        ("{{ steps.check.success }}", True),
        ("steps.skipped.output == ''", True),
        ("steps.broken.error == 'exit 1'", True),
    ],
)
def test_jinja_expressions_work_as_conditions(condition: str, result: bool) -> None:
    assert eval_condition(condition, CTX) is result


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("contains(check.output 'x')", "invalid format"),
        ("steps.check.output contans 'x'", "invalid format"),
        ("contains(chekc.output, 'x')", "no step 'chekc'"),
        ("steps.nope.success", "no step 'nope'"),
        ("typo_name == 'x'", "undefined name 'typo_name'"),
        ("steps.review.nofield == 'x'", "no JSON field 'nofield'"),
        ("steps.check.success and\n(", "invalid format 'steps.check.success and⏎('"),
    ],
)
def test_a_condition_that_does_not_parse_or_names_nothing_is_an_error_not_true(
    condition: str, message: str
) -> None:
    with pytest.raises(TemplateError) as err:
        eval_condition(condition, CTX)
    assert message in err.value.message
    assert "\n" not in err.value.message


def test_a_misspelt_step_in_a_condition_suggests_the_close_name() -> None:
    with pytest.raises(TemplateError) as err:
        eval_condition("contains(chekc.output, 'x')", CTX)
    assert "did you mean 'check'" in (err.value.hint or "")


@pytest.mark.parametrize(
    ("condition", "names"),
    [
        ("contains(check.output, 'x')", {"check"}),
        ("not(equals(deep-dive.output, 'x'))", {"deep-dive"}),
        ("steps.a.output contains 'x'", {"a"}),
        ("steps.a.success and 'x' in steps['b-c'].output", {"a", "b-c"}),
        ("contains(a.output, 'x') or steps.b-c.success", {"a", "b-c"}),
        ("", set()),
    ],
)
def test_references_names_the_steps_a_condition_reads(condition: str, names: set[str]) -> None:
    assert references(condition, "condition") == names


def test_references_rejects_a_condition_that_does_not_compile() -> None:
    with pytest.raises(TemplateError, match="invalid format"):
        references("contains(a.output, 'x'", "condition")


# ---------------------------------------------------------------------------
# for_each
# ---------------------------------------------------------------------------


def steps_ctx(**views: StepView) -> Context:
    return Context(steps=views)


@pytest.mark.parametrize(
    ("source", "items"),
    [
        ('["a", "b"]', ["a", "b"]),
        ('[{"name": "tests"}, {"name": "lint"}]', [{"name": "tests"}, {"name": "lint"}]),
        ("[]", []),
    ],
)
def test_inline_json_arrays_are_loop_sources(source: str, items: list[Any]) -> None:
    assert eval_for_each(source, steps_ctx()) == items


@pytest.mark.parametrize(
    ("view", "items"),
    [
        (StepView('["a.py", "b.py"]', True), ["a.py", "b.py"]),
        (StepView('Files to check:\n```json\n["a.py", "b.py"]\n```', True), ["a.py", "b.py"]),
        (StepView('The list: ["x"] and {"not": "this"}', True), ["x"]),
        (StepView('["from text"]', True, parsed=["from parsed"]), ["from parsed"]),
        (StepView("a.py\nb.py\n", True, parsed=["a.py", "b.py"]), ["a.py", "b.py"]),
        (StepView("", False, skipped=True), []),
    ],
)
def test_a_step_output_is_a_loop_source(view: StepView, items: list[Any]) -> None:
    assert eval_for_each("steps.list.output", steps_ctx(list=view)) == items


def test_a_field_of_a_json_output_is_a_loop_source() -> None:
    parsed = StepView("", True, parsed={"files": ["a", "b"]})
    text = StepView('Decided:\n```json\n{"files": ["c"], "note": "x"}\n```', True)
    assert eval_for_each("steps.debate.files", steps_ctx(debate=parsed)) == ["a", "b"]
    assert eval_for_each("steps.debate.files", steps_ctx(debate=text)) == ["c"]


def test_hyphenated_step_names_work_as_loop_sources() -> None:
    assert eval_for_each(
        "steps.find-files.output", steps_ctx(**{"find-files": StepView("[1]", True)})
    ) == [1]


def test_a_jinja_expression_that_gives_a_list_is_a_loop_source() -> None:
    view = StepView("", True, parsed=[{"name": "a", "ok": True}, {"name": "b", "ok": False}])
    ctx = steps_ctx(checks=view)
    assert eval_for_each(
        "{{ steps.checks.parsed | selectattr('ok') | map(attribute='name') | list }}", ctx
    ) == ["a"]
    assert eval_for_each("steps.checks.parsed | rejectattr('ok')", ctx) == [
        {"name": "b", "ok": False}
    ]
    assert eval_for_each("{{ [steps.checks.parsed | length, 2] }}", ctx) == [2, 2]


@pytest.mark.parametrize(
    ("source", "views", "message"),
    [
        ("steps.x.output |", {}, "invalid format"),
        ('["a", ', {}, "failed to parse"),
        ("steps.nope.output", {"x": StepView("[]", True)}, "step 'nope' not found"),
        ("steps.x.output", {"x": StepView("no json here", True)}, "not a JSON array"),
        ("steps.x.output", {"x": StepView('{"a": 1}', True, parsed={"a": 1})}, "not an array"),
        ("steps.x.name", {"x": StepView("", True, parsed={"name": "s"})}, "is not an array"),
        ("steps.x.files", {"x": StepView("", True, parsed={"name": "s"})}, "has no field 'files'"),
        ("{{ steps.x.parsed }}", {"x": StepView("", True, parsed={"a": 1})}, "not an array"),
    ],
)
def test_bad_loop_sources_fail_with_the_originals_wording(
    source: str, views: dict[str, StepView], message: str
) -> None:
    with pytest.raises(TemplateError) as err:
        eval_for_each(source, steps_ctx(**views))
    assert message in err.value.message
    assert err.value.message.startswith("for_each")


@pytest.mark.parametrize(
    ("source", "names"),
    [
        ('["a"]', set()),
        ("steps.list.output", {"list"}),
        ("steps.find-files.files", {"find-files"}),
        ("{{ steps.a.parsed + steps['b'].parsed }}", {"a", "b"}),
    ],
)
def test_references_names_the_step_a_loop_reads(source: str, names: set[str]) -> None:
    assert references(source, "for_each") == names
