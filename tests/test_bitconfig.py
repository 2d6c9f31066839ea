"""ohq_pynq.bitconfig: config.json round trip and validation."""
import pytest

from ohq_pynq.bitconfig import load_config, resolve_bits, save_config
from ohq_pynq.errors import ConfigError

NAMES = ["a", "b", "c"]


def test_roundtrip_and_bare_mapping(tmp_path):
    save_config(tmp_path / "c.json", {"a": 4, "b": 8}, objective=1.5)
    assert load_config(tmp_path / "c.json") == {"a": 4, "b": 8}
    (tmp_path / "bare.json").write_text('{"a": 8, "b": 4, "c": 4}')
    assert resolve_bits(str(tmp_path / "bare.json"), NAMES) == {"a": 8, "b": 4, "c": 4}


def test_uniform_and_defaults():
    assert resolve_bits(8, NAMES) == {"a": 8, "b": 8, "c": 8}
    assert resolve_bits("4", NAMES) == {"a": 4, "b": 4, "c": 4}
    assert resolve_bits({"a": 4}, NAMES, default=8) == {"a": 4, "b": 8, "c": 8}


@pytest.mark.parametrize("spec,match", [
    ({"a": 4, "zz": 8}, "not in the model"),
    ({"a": 5, "b": 8, "c": 8}, "not supported"),
    ({"a": 4}, "missing"),
    (2, "not supported"),
])
def test_errors(spec, match):
    with pytest.raises(ConfigError, match=match):
        resolve_bits(spec, NAMES)


def test_bad_files(tmp_path):
    (tmp_path / "l.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="map layer names"):
        load_config(tmp_path / "l.json")
    (tmp_path / "s.json").write_text('{"layers": {"a": "eight"}}')
    with pytest.raises(ConfigError, match="eight"):
        load_config(tmp_path / "s.json")
