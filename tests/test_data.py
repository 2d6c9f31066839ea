"""ohq_pynq.data: .npz and image-folder loading, with one clear DataError per problem."""
import numpy as np
import pytest

from ohq_pynq.data import load_data, save_data
from ohq_pynq.errors import DataError


def test_npz_roundtrip(tmp_path):
    x = np.random.default_rng(0).normal(size=(5, 1, 8, 8)).astype(np.float32)
    save_data(tmp_path / "d.npz", x, np.arange(5))
    x2, y2 = load_data(tmp_path / "d.npz", (1, 8, 8))
    np.testing.assert_array_equal(x2, x)
    assert y2.tolist() == [0, 1, 2, 3, 4]
    x3, y3 = load_data(tmp_path / "d.npz", limit=2)
    assert x3.shape[0] == 2 and len(y3) == 2


@pytest.mark.parametrize("arrays,match", [
    ({"images": np.zeros((2, 1, 4, 4))}, "no array 'x'"),
    ({"x": np.zeros((2, 4, 4))}, "N×C×H×W"),
    ({"x": np.zeros((0, 1, 4, 4))}, "no images"),
    ({"x": np.array([["a"]])}, "dtype"),
    ({"x": np.full((1, 1, 4, 4), np.inf)}, "NaN or infinite"),
    ({"x": np.zeros((2, 1, 4, 4)), "y": np.zeros(3)}, "labels"),
])
def test_npz_errors(tmp_path, arrays, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=match):
        load_data(tmp_path / "bad.npz")


def test_wrong_shape_missing_and_not_npz(tmp_path):
    save_data(tmp_path / "d.npz", np.zeros((2, 3, 8, 8)))
    with pytest.raises(DataError, match="expects"):
        load_data(tmp_path / "d.npz", (1, 8, 8))
    with pytest.raises(DataError, match="not found"):
        load_data(tmp_path / "none.npz")
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(DataError, match="npz"):
        load_data(tmp_path / "d.txt")
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(DataError, match="cannot read"):
        load_data(tmp_path / "broken.npz")


def test_image_folder(tmp_path):
    from PIL import Image
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no images"):
        load_data(empty, (1, 8, 8))
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((10, 12), 255 * (cls == "b"), np.uint8)).save(tmp_path / "imgs" / cls / f"{i}.png")
    x, y = load_data(tmp_path / "imgs", (1, 8, 8))
    assert x.shape == (4, 1, 8, 8) and y.tolist() == [0, 0, 1, 1]
    assert x[0].max() == 0 and x[-1].min() == pytest.approx(1.0)
    x3, _ = load_data(tmp_path / "imgs", (3, 8, 8))  # ImageNet normalisation for 3 channels
    assert x3[-1, 0].mean() == pytest.approx((1 - 0.485) / 0.229, rel=1e-5)
