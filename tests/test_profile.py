"""profile.json: validation and round trip (the simulator's estimate: test_oqa.py)."""
from __future__ import annotations

import json

import pytest

from ohq_pynq.errors import ConfigError
from ohq_pynq.profile import load_profile, parse_profile, profile_from_mapping, save_profile


def good_obj():
    return {"schema": 1, "hardware": {"board": "Pynq-Z2", "fclk_hz": 100e6},
            "layers": {"a": {"4": {"cycles": 100, "cycles_spread": 2, "seconds": 1e-6, "joules": None,
                                   "bytes": 64, "weight_bytes": 40, "repeats": 5},
                             "8": {"cycles": 180, "cycles_spread": 3, "seconds": 1.8e-6, "joules": None,
                                   "bytes": 120, "weight_bytes": 72}},
                       "b": {"4": {"cycles": 50, "seconds": 5e-7, "joules": None, "bytes": 8},
                             "8": {"cycles": 90, "seconds": 9e-7, "joules": None, "bytes": 16}}}}


def test_parse_reads_fields_and_keeps_extras(tmp_path):
    prof = parse_profile(good_obj())
    assert list(prof.layers) == ["a", "b"]
    a4 = prof.layers["a"][4]
    assert (a4.cycles, a4.seconds, a4.joules, a4.bytes, a4.weight_bytes, a4.cycles_spread) == (100, 1e-6, None, 64, 40, 2)
    assert a4.extra == {"repeats": 5}
    assert prof.bits == (4, 8)
    assert not prof.has_energy and not prof.has_weight_bytes and not prof.placeholder
    path = tmp_path / "profile.json"
    save_profile(path, prof)
    again = load_profile(path)
    assert again.layers == prof.layers and again.hardware == prof.hardware
    assert json.loads(path.read_text())["layers"]["a"]["4"]["repeats"] == 5


@pytest.mark.parametrize("mutate, fragment", [
    (lambda o: o.update(schema=2), "schema"),
    (lambda o: o.pop("layers"), "layers"),
    (lambda o: o.update(layers={}), "layers"),
    (lambda o: o["layers"]["a"].update({"four": o["layers"]["a"]["4"]}), "bit-width key"),
    (lambda o: o["layers"]["a"]["4"].pop("seconds"), "missing 'seconds'"),
    (lambda o: o["layers"]["a"]["4"].update(cycles=-1), "'cycles'"),
    (lambda o: o["layers"]["a"]["4"].update(cycles=float("nan")), "'cycles'"),
    (lambda o: o["layers"]["a"]["4"].update(seconds="fast"), "'seconds'"),
    (lambda o: o["layers"]["a"]["4"].update(bytes=1.5), "'bytes'"),
    (lambda o: o["layers"]["a"]["4"].update(joules=True), "'joules'"),
    (lambda o: o["layers"]["b"].update({"8": [1, 2]}), "must be an object"),
    (lambda o: o.update(hardware=[]), "hardware"),
    (lambda o: o.update(placeholder="yes"), "placeholder"),
])
def test_malformed_profiles_are_config_errors(mutate, fragment):
    obj = good_obj()
    mutate(obj)
    with pytest.raises(ConfigError) as err:
        parse_profile(obj, "profile p.json")
    assert fragment in str(err.value)


def test_load_profile_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_profile(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_profile(bad)
    nan = tmp_path / "nan.json"
    obj = good_obj()
    obj["layers"]["b"]["8"]["seconds"] = float("nan")
    nan.write_text(json.dumps(obj))           # Python writes NaN; the loader must refuse it
    with pytest.raises(ConfigError, match="'seconds'"):
        load_profile(nan)


def test_has_energy_requires_every_entry():
    obj = good_obj()
    for per in obj["layers"].values():
        for entry in per.values():
            entry["joules"] = 1e-6
    assert parse_profile(obj).has_energy
    obj["layers"]["b"]["4"]["joules"] = None
    assert not parse_profile(obj).has_energy


def test_profile_from_mapping_validates():
    with pytest.raises(ConfigError, match="'seconds'"):
        profile_from_mapping({"a": {4: {"cycles": 1, "seconds": -1, "bytes": 1}}})
