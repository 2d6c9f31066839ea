"""The bundled reference models and their data (task "digits-2x", made by tools/train_reference.py).

Each model takes ``input`` float32 [N, 1, 32, 32] (normalised as ``models.json`` says) and returns
``logits`` [N, 100]: the two-digit number shown on the canvas. ``digits_test.npz`` is the held-out
test split (digit images never seen in training), ``digits_calib.npz`` a few hundred
training-distribution images for calibration; both hold ``x`` (float32 NCHW) and ``y`` (int64).
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError

MODELS_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL = "digits_resnet_bn"
SPLITS = ("test", "calib")


@lru_cache(maxsize=1)
def _catalogue() -> dict:
    path = MODELS_DIR / "models.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"the reference-model catalogue {path} cannot be read ({err}).") from None


def list_models() -> list[str]:
    """Names of the bundled models (file name without ``.onnx``), sorted."""
    return sorted(_catalogue().get("models", {}))


def _name(name: str) -> str:
    stem = name[:-5] if name.endswith(".onnx") else name
    if stem not in _catalogue().get("models", {}):
        raise ConfigError(f"unknown reference model {name!r}; bundled models: "
                          f"{', '.join(list_models())}.")
    return stem


def model_info(name: str) -> dict:
    """Catalogue entry of a model: accuracies, input shape, classes, params, MACs, how it was made."""
    return dict(_catalogue()["models"][_name(name)])


def model_path(name: str = DEFAULT_MODEL) -> Path:
    """Path of the bundled ONNX file ``name`` (with or without ``.onnx``)."""
    path = MODELS_DIR / _catalogue()["models"][_name(name)]["file"]
    if not path.is_file():
        raise DataError(f"the bundled model file {path} is missing; reinstall ohq-pynq.")
    return path


def dataset_info() -> dict:
    """Description of the digits-2x task: classes, normalisation, split sizes, seed."""
    return dict(_catalogue()["dataset"])


def split_path(split: str = "test") -> Path:
    """Path of the ``.npz`` file of ``split`` ("test" or "calib")."""
    if split not in SPLITS:
        raise ConfigError(f"unknown data split {split!r}; choose one of {', '.join(SPLITS)}.")
    return MODELS_DIR / f"digits_{split}.npz"


def load_split(split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of a bundled split: x float32 [n, 1, 32, 32], y int64 [n] (class 0..99)."""
    path = split_path(split)
    try:
        with np.load(path) as data:
            return data["x"].astype(np.float32, copy=False), data["y"].astype(np.int64, copy=False)
    except (OSError, KeyError, ValueError) as err:
        raise DataError(f"the bundled data file {path} cannot be read ({err}).") from None
