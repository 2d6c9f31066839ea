"""ohq_pynq.sensitivity: sensitivity.json as MQE writes it and the ILP reads it."""
from __future__ import annotations

import json

import pytest

from ohq_pynq.errors import ConfigError
from ohq_pynq.sensitivity import SCHEMA, load_sensitivity, save_sensitivity


def test_sensitivity_formats(tmp_path):
    flat, _ = load_sensitivity({"schema": 1, "estimator": "mqe", "layers": {"a": 0.5, "b": 0}})
    assert flat == {"a": {4: 0.5, 8: 0.0}, "b": {4: 0.0, 8: 0.0}}
    nested, meta = load_sensitivity({"estimator": "exact", "layers": {"a": {"2": 3.0, "4": 1.0}}}, (2, 4, 8))
    assert nested == {"a": {2: 3.0, 4: 1.0, 8: 0.0}} and meta == {"estimator": "exact"}
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"layers": {"a": -1e-12}}))
    assert load_sensitivity(path)[0] == {"a": {4: 0.0, 8: 0.0}}
    for bad, bits, fragment in [({"layers": {"a": 0.5}}, (2, 4, 8), "only defines"),
                                ({"layers": {"a": float("nan")}}, (4, 8), "finite"),
                                ({"layers": {"a": -0.2}}, (4, 8), "finite"),
                                ({"layers": {"a": "x"}}, (4, 8), "finite"),
                                ({"layers": {"a": {"4": 1.0}}}, (2, 4, 8), "no sensitivity at 2"),
                                ({"layers": {}}, (4, 8), "non-empty"),
                                ({"schema": 7, "layers": {"a": 1.0}}, (4, 8), "schema")]:
        with pytest.raises(ConfigError, match=fragment):
            load_sensitivity(bad, bits)


def test_save_then_load_round_trips(tmp_path):
    result = {"schema": SCHEMA, "estimator": "mqe", "alpha": 0.5, "layers": {"a": 0.25, "b": 0.0}}
    path = tmp_path / "sensitivity.json"
    save_sensitivity(path, result)
    assert json.loads(path.read_text()) == result
    layers, meta = load_sensitivity(path)
    assert layers == {"a": {4: 0.25, 8: 0.0}, "b": {4: 0.0, 8: 0.0}}
    assert meta == {"schema": SCHEMA, "estimator": "mqe", "alpha": 0.5}
