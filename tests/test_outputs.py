"""Reading JSON and lines out of step outputs, as the original lok's helpers did."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lokfile.outputs import (
    extract_json_array,
    extract_json_field,
    extract_json_object,
    find_closing_fence,
    parse_output,
    sanitize_json_strings,
)


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ('Here you go:\n```json\n{"a": 1}\n```\nDone.', '{"a": 1}'),
        ('Sure.\n```\n{"a": 2}\n```', '{"a": 2}'),
        ('```python\n{"a": 3}\n```', '{"a": 3}'),
        ('{"a": 4}', '{"a": 4}'),
        ('The answer is {"a": 5} as requested', '{"a": 5}'),
        ('Use {braces} like this: {"a": 6}', '{"a": 6}'),
        (
            '{"a": "a } inside a string", "b": {"c": 7}}',
            '{"a": "a } inside a string", "b": {"c": 7}}',
        ),
        ("no json here", None),
    ],
)
def test_the_first_json_object_is_found_in_fences_prose_and_raw_text(
    text: str, found: str | None
) -> None:
    assert extract_json_object(text) == found


def test_backticks_inside_fenced_content_do_not_close_the_fence() -> None:
    text = '```json\n{"code": "run ```make``` first", "n": 1}\n```'
    assert extract_json_object(text) == '{"code": "run ```make``` first", "n": 1}'
    assert extract_json_field(text, "code") == "run ```make``` first"


@pytest.mark.parametrize(
    ("text", "index"),
    [('\n{"a": 1}\n```', 9), ("```\nrest", 0), ('{"a": 1}', None), ("x ``` inline", None)],
)
def test_a_closing_fence_must_start_a_line(text: str, index: int | None) -> None:
    assert find_closing_fence(text) == index


def test_literal_newlines_inside_json_strings_are_sanitised() -> None:
    text = '```json\n{"summary": "line one\nline two\ttabbed"}\n```'
    assert extract_json_field(text, "summary") == "line one\nline two\ttabbed"
    assert sanitize_json_strings('{"a": "x\ny\rz\u0001"}') == '{"a": "x\\ny\\rz\\u0001"}'


def test_sanitising_tracks_escaped_quotes_and_backslashes() -> None:
    assert sanitize_json_strings('{"a": "q\\"\n", "b": "\\\\", "c": "\n"}') == (
        '{"a": "q\\"\\n", "b": "\\\\", "c": "\\n"}'
    )


@settings(max_examples=150, deadline=None)
@given(st.text(st.characters(exclude_categories=["Cs"]), max_size=30))
def test_sanitising_then_parsing_recovers_any_string_written_with_raw_control_characters(
    value: str,
) -> None:
    # what an LLM does: raw newlines, CRs and tabs inside the string
    body = "".join(c if c in "\n\r\t" else json.dumps(c, ensure_ascii=False)[1:-1] for c in value)
    written = '{"v": "' + body + '"}'
    assert json.loads(sanitize_json_strings(written)) == {"v": value}


@pytest.mark.parametrize(
    ("field", "value"),
    [("title", "Fix it"), ("count", 42), ("ok", True), ("missing", None), ("nested", {"a": [1]})],
)
def test_field_extraction_reads_top_level_fields(field: str, value: Any) -> None:
    text = (
        'Result:\n```json\n{"title": "Fix it", "count": 42, "ok": true, "nested": {"a": [1]}}\n```'
    )
    assert extract_json_field(text, field) == value


def test_a_json_fence_holding_an_array_has_no_object_fields() -> None:
    text = 'Options:\n```json\n[{"title": "first"}, {"title": "second"}]\n```'
    assert extract_json_field(text, "title") is None
    assert parse_output(text, "json") == [{"title": "first"}, {"title": "second"}]


def test_arrays_are_found_raw_and_in_fences() -> None:
    assert extract_json_array('Files: ["a.py", "b.py"] done') == '["a.py", "b.py"]'
    assert extract_json_array('```json\n["x", "y"]\n```') == '["x", "y"]'
    assert extract_json_array('[not json] then ["ok"]') == '["ok"]'
    assert extract_json_array("nothing") is None


def test_output_format_json_parses_an_array_output_into_a_list() -> None:
    assert parse_output('Here:\n```json\n["a", "b"]\n```', "json") == ["a", "b"]


def test_output_format_json_tries_the_bracket_that_comes_first() -> None:
    assert parse_output('[{"a": 1}, {"a": 2}]', "json") == [{"a": 1}, {"a": 2}]
    assert parse_output('{"list": [1, 2]}', "json") == {"list": [1, 2]}
    assert parse_output("42", "json") == 42
    assert parse_output("not json at all", "json") is None


def test_output_format_json_tolerates_raw_newlines_in_strings() -> None:
    assert parse_output('{"a": "one\ntwo"}', "json") == {"a": "one\ntwo"}


def test_output_format_lines_splits_lines_like_the_original() -> None:
    assert parse_output("a\nb\r\n\nc\n", "lines") == ["a", "b", "", "c"]
    assert parse_output("", "lines") == []


def test_output_format_text_and_unknown_give_nothing() -> None:
    assert parse_output('{"a": 1}', "text") is None
    assert parse_output('{"a": 1}', "") is None


def test_output_format_json_array_accepts_only_arrays() -> None:
    assert parse_output('Sure: ["x"]', "json_array") == ["x"]
    assert parse_output('{"a": 1}', "json_array") is None


def test_output_format_jsonl_reads_one_value_per_line_even_in_a_fence() -> None:
    assert parse_output('{"a": 1}\n\n{"a": 2}\n', "jsonl") == [{"a": 1}, {"a": 2}]
    assert parse_output('```jsonl\n{"a": 1}\n[2]\n```', "jsonl") == [{"a": 1}, [2]]
    assert parse_output('{"a": 1}\nnot json\n', "jsonl") is None
