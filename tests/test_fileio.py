"""ohq_pynq.fileio: atomic writes leave the old file when writing fails."""
import json

import pytest

from ohq_pynq.errors import ConfigError
from ohq_pynq.fileio import atomic_write, file_sha256, read_json, write_json


def test_write_read_json(tmp_path):
    p = write_json(tmp_path / "sub" / "a.json", {"b": 1, "a": [1, 2]})
    assert read_json(p) == {"b": 1, "a": [1, 2]}
    assert list(json.loads(p.read_text())) == ["b", "a"]


def test_failed_write_keeps_old_file(tmp_path):
    p = write_json(tmp_path / "a.json", {"v": 1})

    def boom(f):
        f.write("{half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(p, boom, mode="w")
    assert read_json(p) == {"v": 1}
    assert [q.name for q in tmp_path.iterdir()] == ["a.json"]  # no temp file left behind
    with pytest.raises(ValueError):
        write_json(p, {"v": float("nan")})
    assert read_json(p) == {"v": 1}


def test_read_json_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        read_json(tmp_path / "x.json")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        read_json(tmp_path / "bad.json", "profile")


def test_sha256(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    assert file_sha256(tmp_path / "f") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
