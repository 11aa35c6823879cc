"""CPU and memory quantities: one parser for validation and the runtime providers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plexica_gitops.quantities import QuantityError, parse_cpu, parse_memory
from plexica_gitops_docker import units


@pytest.mark.parametrize(
    "text",
    ["500m\n", "500m ", " 500m", "1\u0660\u0660m", "\uff11", "2048", "1025", "0500m", "9" * 40],
)
def test_cpu_is_whole_ascii_text_within_1024_cores(text: str) -> None:
    with pytest.raises(QuantityError):
        parse_cpu(text)
    with pytest.raises(ValueError):  # what the Docker provider calls is the same function
        units.parse_cpu(text)


@pytest.mark.parametrize(
    "text", ["512Mi\n", "512Mi ", "\u0665\u0661\u0662Mi", "2Ti", "1Pi", "0.0", "0", "9" * 40]
)
def test_memory_is_whole_ascii_text_up_to_1Ti(text: str) -> None:
    with pytest.raises(QuantityError):
        parse_memory(text)


def test_the_bounds_themselves_are_accepted() -> None:
    assert parse_cpu("1024") == 1024 * 10**9
    assert parse_memory("1Ti") == 2**40


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_text_is_a_quantity_or_a_quantity_error(text: str) -> None:
    for parse in (parse_cpu, parse_memory):
        try:
            value = parse(text)
        except QuantityError:
            continue
        assert value > 0
        assert text.isascii() and text == text.strip()
