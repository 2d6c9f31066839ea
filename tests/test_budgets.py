"""ohq_pynq.budgets: the command-line budget forms and readable quantities."""
from __future__ import annotations

import pytest

from ohq_pynq.budgets import Budget, format_quantity
from ohq_pynq.errors import ConfigError


@pytest.mark.parametrize("text, metric, value, relative", [
    ("0.75", "latency", 0.75, True), ("0.75x", "latency", 0.75, True), ("1.5x", "size", 1.5, True),
    ("75%", "energy", 0.75, True), ("2.5ms", "latency", 2.5e-3, False), ("300 us", "latency", 3e-4, False),
    ("1.2MB", "size", 1.2e6, False), ("2KiB", "size", 2048.0, False), ("30mJ", "energy", 0.03, False),
    ("1e-3s", "latency", 1e-3, False),
])
def test_budget_parse(text, metric, value, relative):
    b = Budget.parse(text, metric)
    assert b.relative is relative and b.value == pytest.approx(value)


@pytest.mark.parametrize("text, metric, fragment", [
    ("2", "latency", "ambiguous"), ("2ms", "size", "unit"), ("abc", "energy", "not a number"),
    ("-0.5", "latency", "not a number"), ("", "size", "not a number"),
])
def test_budget_parse_errors(text, metric, fragment):
    with pytest.raises(ConfigError, match=fragment):
        Budget.parse(text, metric)


@pytest.mark.parametrize("value, metric, text", [
    (1.2e6, "size", "1.2 MB"), (512, "size", "512 B"), (2.5e-3, "latency", "2.5 ms"),
    (3e-7, "latency", "300 ns"), (0.03, "energy", "30 mJ"), (2.0, "energy", "2 J"),
])
def test_format_quantity(value, metric, text):
    assert format_quantity(value, metric) == text
    assert Budget.parse(text.replace(" ", ""), metric).value == pytest.approx(value)
