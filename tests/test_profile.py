"""profile.json: validation, round trip, and the placeholder cost estimate."""
from __future__ import annotations

import json
import math

import pytest

from ohq_pynq.errors import ConfigError
from ohq_pynq.graph import Layer
from ohq_pynq.profile import (SCHEMA, load_profile, parse_profile, placeholder_cost, placeholder_profile,
                              profile_from_mapping, save_profile)


def conv(name, cin, cout, k, hw, groups=1, index=0):
    macs = hw * hw * cout * (cin // groups) * k * k
    return Layer(name=name, op="Conv", index=index, input=f"{name}_in", output=f"{name}_out", weight=f"{name}_w",
                 bias=None, cin=cin, cout=cout, kernel=(k, k), stride=(1, 1), pads=(k // 2,) * 4,
                 dilation=(1, 1), groups=groups, in_hw=(hw, hw), out_hw=(hw, hw), macs=macs,
                 params=cout * (cin // groups) * k * k)


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


def test_placeholder_cost_follows_the_documented_formula():
    layer = conv("c", cin=32, cout=64, k=3, hw=8)
    c8 = placeholder_cost(layer, 8, pe=16, simd=16, bus_bytes_per_cycle=8, fclk_hz=100e6)
    c4 = placeholder_cost(layer, 4, pe=16, simd=16, bus_bytes_per_cycle=8, fclk_hz=100e6)
    # compute-bound: 64 pixels · ⌈9·32/16⌉ · ⌈64/16⌉ = 64·18·4 at 8 bits; int4 packs two MACs per lane
    assert c8.cycles == 64 * 18 * 4
    assert c4.cycles == 64 * 9 * 4
    assert c8.seconds == pytest.approx(c8.cycles / 100e6)
    assert c8.weight_bytes == layer.weight_bytes(8) and c4.weight_bytes == layer.weight_bytes(4)
    assert c8.bytes == layer.weight_bytes(8) + 64 * 32 + 64 * 64
    assert c4.bytes == layer.weight_bytes(4) + (64 * 32 + 64 * 64) // 2
    assert c4.joules < c8.joules
    # memory-bound layer: a 1x1 conv on a large map moves more bytes than it computes cycles
    fat = conv("f", cin=8, cout=8, k=1, hw=64)
    cf = placeholder_cost(fat, 8, pe=16, simd=16, bus_bytes_per_cycle=8)
    assert cf.cycles == math.ceil(cf.bytes / 8) > 64 * 64


def test_placeholder_profile_is_labelled_and_round_trips(tmp_path):
    layers = [conv("c1", 3, 16, 3, 32, index=0), conv("dw", 16, 16, 3, 32, groups=16, index=1),
              conv("c2", 16, 32, 1, 16, index=2)]
    prof = placeholder_profile(layers)
    assert prof.placeholder and prof.bits == (4, 8) and prof.has_energy and prof.has_weight_bytes
    for name in ("c1", "dw", "c2"):
        assert prof.layers[name][4].cycles <= prof.layers[name][8].cycles
        assert prof.layers[name][4].bytes < prof.layers[name][8].bytes
    path = tmp_path / "p.json"
    save_profile(path, prof)
    obj = json.loads(path.read_text())
    assert obj["placeholder"] is True and obj["schema"] == SCHEMA
    assert load_profile(path).placeholder
    no_rails = placeholder_profile(layers, with_energy=False)
    assert not no_rails.has_energy
    with pytest.raises(ConfigError):
        placeholder_profile([])


def test_profile_from_mapping_validates():
    with pytest.raises(ConfigError, match="'seconds'"):
        profile_from_mapping({"a": {4: {"cycles": 1, "seconds": -1, "bytes": 1}}})
