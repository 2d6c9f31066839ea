"""Image data for calibration and evaluation: ``.npz`` files or folders of images.

``DATA`` anywhere on the command line is either an ``.npz`` with ``x`` (float32, N×C×H×W, already
preprocessed the way the model expects) and optionally ``y`` (integer labels), or a folder of
PNG/JPEG/BMP images (sub-folders = classes, sorted by name, give labels), which is resized to the
model input and normalised with ``mean``/``std`` (ImageNet's for 3 channels by default).
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_ABS_VALUE = 1e4     # |x| above this is not a preprocessed image (raw 16-bit data, garbage)


def load_data(path, input_shape: tuple[int, ...] | None = None, mean=None, std=None,
              limit: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Return ``(x, y)``: float32 images N×C×H×W and int64 labels (or None).

    ``input_shape`` (C, H, W) checks ``.npz`` data and sets the size folder images are resized
    to. ``limit`` keeps the first ``limit`` images.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"data not found: {path}")
    if path.is_dir():
        x, y = _load_folder(path, input_shape, mean, std, limit)
    elif path.suffix == ".npz":
        x, y = _load_npz(path, limit)
    else:
        raise DataError(f"data {path} must be an .npz file (with x and optional y) or a folder of images")
    if input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape):
        raise DataError(f"data {path} has images of shape {tuple(x.shape[1:])}; the model expects "
                        f"{tuple(input_shape)}")
    return x, y


def _load_npz(path: Path, limit):
    try:
        with np.load(path, allow_pickle=False) as f:
            if "x" not in f.files:
                raise DataError(f"{path} has no array 'x' (found: {', '.join(f.files) or 'nothing'})")
            x = f["x"][:limit] if limit else f["x"]
            y = (f["y"][:limit] if limit else f["y"]) if "y" in f.files else None
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"cannot read {path} as .npz: {err}") from None
    if x.dtype.kind not in "fiu":
        raise DataError(f"{path}: x has dtype {x.dtype}; expected float32 images")
    if x.ndim != 4:
        raise DataError(f"{path}: x has shape {x.shape}; expected N×C×H×W")
    if len(x) == 0:
        raise DataError(f"{path} holds no images")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise DataError(f"{path}: x contains NaN or infinite values")
    peak = float(np.abs(x).max())
    if peak > MAX_ABS_VALUE:
        raise DataError(f"{path}: x has values up to {peak:.4g}; images must be preprocessed "
                        f"(normalised) the way the model expects, e.g. (pixel/255 - mean) / std")
    if y is not None:
        if y.shape[:1] != x.shape[:1] or y.dtype.kind not in "iu":
            raise DataError(f"{path}: y must be {len(x)} integer labels, got {y.dtype} {y.shape}")
        y = y.astype(np.int64).reshape(-1)
    return x, y


def _load_folder(path: Path, input_shape, mean, std, limit):
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"folder {path} contains no images ({', '.join(IMAGE_SUFFIXES)})")
    if input_shape is None or len(input_shape) != 3:
        raise DataError("reading a folder of images needs the model's input shape C,H,W")
    if limit:
        files = files[:limit]
    try:
        from PIL import Image
    except ImportError:
        raise DataError("reading image folders needs Pillow (pip install pillow)") from None
    c, h, w = input_shape
    mean = np.asarray(mean if mean is not None else (IMAGENET_MEAN if c == 3 else (0.0,) * c), np.float32)
    std = np.asarray(std if std is not None else (IMAGENET_STD if c == 3 else (1.0,) * c), np.float32)
    classes = sorted({f.parent for f in files})
    labelled = len(classes) > 1 or classes[0] != path
    x = np.empty((len(files), c, h, w), dtype=np.float32)
    for i, f in enumerate(files):
        try:
            img = Image.open(f).convert("RGB" if c == 3 else "L").resize((w, h), Image.BILINEAR)
        except OSError as err:
            raise DataError(f"cannot read image {f}: {err}") from None
        a = np.asarray(img, dtype=np.float32) / 255.0
        a = a.reshape(h, w, -1).transpose(2, 0, 1)
        x[i] = (a - mean.reshape(-1, 1, 1)) / std.reshape(-1, 1, 1)
    y = np.array([classes.index(f.parent) for f in files], dtype=np.int64) if labelled else None
    return x, y


def save_data(path, x: np.ndarray, y: np.ndarray | None = None, **extra) -> None:
    """Atomically write an ``.npz`` with ``x`` (float32) and optional ``y`` and extra arrays."""
    from .fileio import atomic_write

    arrays = {"x": np.asarray(x, dtype=np.float32), **extra}
    if y is not None:
        arrays["y"] = np.asarray(y, dtype=np.int64)
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))
