"""A loop's output is the JSON json.dumps(indent=2, sort_keys=True) would write, byte for byte."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from lokfile.engine.units import loop_json

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
rows = st.lists(
    st.fixed_dictionaries(
        {"index": st.integers(0, 10**6), "output": st.text(), "success": st.booleans()},
        optional={"item": values},
    ),
    max_size=6,
)


@given(rows)
@settings(max_examples=300, deadline=None)
def test_a_loops_json_is_what_json_dumps_writes(doc: list[dict[str, Any]]) -> None:
    assert loop_json(doc) == json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False)


def test_strings_with_newlines_and_nested_items_keep_their_indentation() -> None:
    doc = [
        {"index": 0, "item": {"b": [1, {"c": "x\ny"}], "a": {}}, "output": "é\n", "success": True}
    ]
    text = loop_json(doc)
    assert text == json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False)
    assert '          "c": "x\\ny"' in text.splitlines()  # at its depth, the newline escaped
