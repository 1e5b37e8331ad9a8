from __future__ import annotations

import pytest

from webhook.resources import QuantityError, merged_resources, parse_count


@pytest.mark.parametrize(
    ("value", "count"),
    [("2", 2), (2, 2), ("+3", 3), ("1k", 1000), ("1Ki", 1024), (2.0, 2), ("1.5", None),
     ("-1", None), (-1, None), (True, None), ("abc", None), (None, None), ("500m", None)],
)  # fmt: skip
def test_parse_count(value: object, count: int | None) -> None:
    assert parse_count(value) == count


def test_merge_keeps_larger_values_and_sets_requests_equal_to_limits() -> None:
    before = {"requests": {"p": "3", "cpu": "1"}, "limits": {"p": "1"}, "claims": [{"name": "x"}]}
    after = merged_resources(before, {"p": 2, "q": 1})
    assert after == {
        "requests": {"p": "3", "cpu": "1", "q": "1"},
        "limits": {"p": "3", "q": "1"},
        "claims": [{"name": "x"}],
    }
    assert before["limits"] == {"p": "1"}, "input untouched"


def test_equal_values_in_another_spelling_are_left_alone() -> None:
    before = {"requests": {"p": "1k"}, "limits": {"p": "1000"}}
    assert merged_resources(before, {"p": 2}) == before


def test_bad_value_names_the_field() -> None:
    with pytest.raises(QuantityError) as err:
        merged_resources({"requests": {"p": "x"}}, {"p": 1})
    assert err.value.field == "resources.requests[p]"
