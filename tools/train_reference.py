#!/usr/bin/env python3
"""Train and export the bundled reference models (dev-only; needs PyTorch CPU, never the product).

Set-up (a separate venv so the product's stays torch-free)::

    python3 -m venv /work/venv-torch
    /work/venv-torch/bin/pip install torch==2.13.0 numpy scikit-learn onnx onnxscript onnxruntime
    /work/venv-torch/bin/python tools/train_reference.py            # writes ohq_pynq/models/

The task ("digits-2x", 100 classes): a 1x32x32 grey canvas holds two of scikit-learn's 8x8 digits,
the tens digit in the left half and the units digit in the right half, each randomly scaled
(1.2-1.7 canvas pixels per source pixel), rotated (+-12 deg), sheared, shifted and dimmed, on a
random background level with Gaussian noise, 0-3 random line strokes and (half of the time) a small
faint distractor digit. Label = 10 * tens + units. Pixels are quantised to 8 bits like a camera
image, then normalised ``x = (u8 / 255 - MEAN) / STD``. The 1797 source digit images are split
(stratified by digit) into 65 % training sources and 35 % test sources, so every test image is made
of digit images the nets never saw. Training images are generated on the fly from the training
sources; ``digits_calib.npz`` holds fresh training-distribution images; ``digits_test.npz`` holds
images built from the test sources only.

Two nets, trained with one CPU thread, are each exported with the TorchScript exporter (opset 17)
twice: BatchNorm kept (``training=PRESERVE, do_constant_folding=False``) and BN folded (default
export). The MobileNetV3 one is also exported with the dynamo exporter (opset 20; it folds BN and
writes GlobalAveragePool as ReduceMean). Every export is checked with onnxruntime on the test
split; its accuracy (and number correct) is recorded in ``models.json``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

CANVAS = 32          # canvas height = width (pixels)
NUM_CLASSES = 100    # two-digit number 00..99
MEAN, STD = 0.157, 0.189   # normalisation of u8/255 pixels; checked against the data in main()
TEST_SOURCE_FRACTION = 0.35
DYNAMO_NETS = ("mbv3",)   # also exported with the dynamo exporter (kept to one to keep the package small)
OUT_DIR = Path(__file__).resolve().parent.parent / "ohq_pynq" / "models"


# ----------------------------------------------------------------------------- data

def split_sources(seed: int = 0):
    """Split the 1797 digit images (values 0..1, shape (n, 8, 8)) into train and test sources."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images / 16.0).astype(np.float32)
    labels = d.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(len(idx) * TEST_SOURCE_FRACTION))
        test_idx.extend(idx[:n_test])
        train_idx.extend(idx[n_test:])
    tr, te = np.sort(train_idx), np.sort(test_idx)
    return (images[tr], labels[tr]), (images[te], labels[te])


def _sample(src: np.ndarray, idx: np.ndarray, sy: np.ndarray, sx: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``src[idx]`` (8x8, zero outside) at source coords (sy, sx): (B, H, W)."""
    pad = np.pad(src, ((0, 0), (1, 1), (1, 1)))               # (n, 10, 10), zero border
    y = np.clip(sy + 1.0, 0.0, 9.0)
    x = np.clip(sx + 1.0, 0.0, 9.0)
    y0 = np.minimum(np.floor(y).astype(np.int64), 8)
    x0 = np.minimum(np.floor(x).astype(np.int64), 8)
    fy, fx = (y - y0).astype(np.float32), (x - x0).astype(np.float32)
    b = idx[:, None, None]
    v00, v01 = pad[b, y0, x0], pad[b, y0, x0 + 1]
    v10, v11 = pad[b, y0 + 1, x0], pad[b, y0 + 1, x0 + 1]
    return (v00 * (1 - fy) * (1 - fx) + v01 * (1 - fy) * fx + v10 * fy * (1 - fx) + v11 * fy * fx)


def _place(rng, src, idx, cx_range, cy_range, scale_range, n):
    """Render digits ``src[idx]`` with a random affine map onto (n, CANVAS, CANVAS)."""
    g = np.arange(CANVAS, dtype=np.float32) + 0.5
    py, px = np.meshgrid(g, g, indexing="ij")
    s = rng.uniform(*scale_range, n)
    th = np.deg2rad(rng.uniform(-12, 12, n))
    sh = rng.uniform(-0.2, 0.2, n)
    cx, cy = rng.uniform(*cx_range, n), rng.uniform(*cy_range, n)
    # canvas = c + s * R(th) * Shear(sh) * (source - 3.5 - 0.5); invert per image
    cos, sin = np.cos(th), np.sin(th)
    a = np.stack([np.stack([cos, cos * sh - sin], -1), np.stack([sin, sin * sh + cos], -1)], -2)
    a = a * s[:, None, None]                                   # (n, 2, 2) maps (x, y) source->canvas
    inv = np.linalg.inv(a)
    dx = px[None] - cx[:, None, None]
    dy = py[None] - cy[:, None, None]
    sx = inv[:, 0, 0, None, None] * dx + inv[:, 0, 1, None, None] * dy + 4.0 - 0.5
    sy = inv[:, 1, 0, None, None] * dx + inv[:, 1, 1, None, None] * dy + 4.0 - 0.5
    return _sample(src, idx, sy, sx)


def render(rng: np.random.Generator, images: np.ndarray, labels: np.ndarray, n: int):
    """Make ``n`` two-digit images from source digits: (u8 images (n, 32, 32), labels (n,))."""
    ia = rng.integers(0, len(images), n)
    ib = rng.integers(0, len(images), n)
    tens = _place(rng, images, ia, (8.0, 13.0), (11.0, 21.0), (1.2, 1.7), n)
    units = _place(rng, images, ib, (19.0, 24.0), (11.0, 21.0), (1.2, 1.7), n)
    canvas = np.maximum(tens * rng.uniform(0.6, 1.0, (n, 1, 1)),
                        units * rng.uniform(0.6, 1.0, (n, 1, 1)))
    # small faint distractor digit anywhere, half of the time
    idis = rng.integers(0, len(images), n)
    dis = _place(rng, images, idis, (4.0, 28.0), (4.0, 28.0), (0.6, 0.9), n)
    dis *= (rng.uniform(0.2, 0.45, (n, 1, 1)) * (rng.random((n, 1, 1)) < 0.5))
    canvas = np.maximum(canvas, dis)
    # 0-3 line strokes
    g = np.arange(CANVAS, dtype=np.float32) + 0.5
    py, px = np.meshgrid(g, g, indexing="ij")
    n_lines = rng.integers(0, 4, n)
    for k in range(3):
        p0 = rng.uniform(0, CANVAS, (n, 2))
        ang = rng.uniform(0, np.pi, n)
        length = rng.uniform(4, 16, n)
        d = np.stack([np.cos(ang), np.sin(ang)], -1)
        rx, ry = px[None] - p0[:, 0, None, None], py[None] - p0[:, 1, None, None]
        t = np.clip(rx * d[:, 0, None, None] + ry * d[:, 1, None, None], 0, length[:, None, None])
        dist = np.hypot(rx - t * d[:, 0, None, None], ry - t * d[:, 1, None, None])
        width = rng.uniform(0.7, 1.5, (n, 1, 1))
        inten = rng.uniform(0.2, 0.6, (n, 1, 1)) * (n_lines > k)[:, None, None]
        canvas = np.maximum(canvas, inten * np.clip(1 - dist / width, 0, 1))
    canvas = canvas + rng.uniform(0.0, 0.15, (n, 1, 1))
    canvas = canvas + rng.normal(0, 1, canvas.shape) * rng.uniform(0.03, 0.15, (n, 1, 1))
    u8 = np.clip(np.rint(canvas * 255.0), 0, 255).astype(np.uint8)
    return u8, labels[ia] * 10 + labels[ib]


def normalise(u8: np.ndarray) -> np.ndarray:
    """u8 images (n, 32, 32) -> float32 NCHW (n, 1, 32, 32) as the nets expect."""
    return ((u8.astype(np.float32) / 255.0 - MEAN) / STD)[:, None].astype(np.float32)


# ----------------------------------------------------------------------------- nets

class BasicBlock(nn.Module):
    """torchvision ResNet basic block: two 3x3 conv-BN, identity or 1x1-strided shortcut."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class DigitsResNet(nn.Module):
    """ResNet-18-shaped net for 1x32x32: stem conv-BN-ReLU-MaxPool, 4 stages of 1 basic block."""

    def __init__(self, widths=(16, 32, 64, 128), num_classes=NUM_CLASSES):
        super().__init__()
        self.conv1 = nn.Conv2d(1, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = BasicBlock(widths[0], widths[0], 1)
        self.layer2 = BasicBlock(widths[0], widths[1], 2)
        self.layer3 = BasicBlock(widths[1], widths[2], 2)
        self.layer4 = BasicBlock(widths[2], widths[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[3], num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _div8(v: float) -> int:
    return max(8, int(v + 4) // 8 * 8)


class SqueezeExcite(nn.Module):
    """torchvision SE: mean over H,W (ReduceMean), 1x1 conv, ReLU, 1x1 conv, HardSigmoid, Mul."""

    def __init__(self, c: int):
        super().__init__()
        sq = _div8(c / 4)
        self.fc1 = nn.Conv2d(c, sq, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(sq, c, 1)
        self.hsig = nn.Hardsigmoid()

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        return x * self.hsig(self.fc2(self.relu(self.fc1(s))))


def _cba(cin, cout, k, stride, groups, act):
    layers = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
              nn.BatchNorm2d(cout, eps=1e-3)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV3 block: [1x1 expand] - depthwise kxk - [SE] - 1x1 project, residual if shapes match."""

    def __init__(self, cin, k, exp, cout, se, act, stride):
        super().__init__()
        a = nn.Hardswish if act == "HS" else nn.ReLU
        layers = []
        if exp != cin:
            layers.append(_cba(cin, exp, 1, 1, 1, a))
        layers.append(_cba(exp, exp, k, stride, exp, a))
        if se:
            layers.append(SqueezeExcite(exp))
        layers.append(_cba(exp, cout, 1, 1, 1, None))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.block(x)
        return x + y if self.residual else y


# (cin, kernel, expanded, cout, SE, activation, stride) -- MobileNetV3-Small scaled to 32x32
MBV3_CFG = [
    (16, 3, 16, 16, True, "RE", 2),
    (16, 3, 64, 24, False, "RE", 1),
    (24, 3, 72, 24, False, "RE", 1),
    (24, 5, 96, 40, True, "HS", 2),
    (40, 5, 160, 40, True, "HS", 1),
    (40, 5, 120, 48, True, "HS", 1),
    (48, 5, 144, 48, True, "HS", 1),
]


class DigitsMobileNetV3(nn.Module):
    """MobileNetV3-Small-shaped net for 1x32x32 (stem stride 2, then 7 inverted residuals)."""

    def __init__(self, num_classes=NUM_CLASSES, last=288, hidden=256):
        super().__init__()
        layers = [_cba(1, 16, 3, 2, 1, nn.Hardswish)]
        layers += [InvertedResidual(*c) for c in MBV3_CFG]
        layers.append(_cba(MBV3_CFG[-1][3], last, 1, 1, 1, nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(last, hidden), nn.Hardswish(), nn.Dropout(0.2),
                                        nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


NETS = {"resnet": DigitsResNet, "mbv3": DigitsMobileNetV3}


def init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def count_macs(model: nn.Module) -> int:
    """Multiply-accumulates of the Conv2d / Linear layers for one 1x32x32 image."""
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            total += out.numel() * (mod.in_channels // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1]
        else:
            total += mod.in_features * mod.out_features

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 1, CANVAS, CANVAS))
    for h in hs:
        h.remove()
    return total


# ----------------------------------------------------------------------------- train / export

def train(name: str, sources, seed: int, epochs: int, steps: int, batch: int, log) -> nn.Module:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed + 1000)
    model = NETS[name]()
    init_weights(model)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=epochs * steps,
                                                pct_start=0.15)
    images, labels = sources
    for ep in range(epochs):
        model.train()
        t0, loss_sum, correct = time.time(), 0.0, 0
        for _ in range(steps):
            u8, y = render(rng, images, labels, batch)
            x, y = torch.from_numpy(normalise(u8)), torch.from_numpy(y)
            out = model(x)
            loss = F.cross_entropy(out, y, label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item()
            correct += (out.argmax(1) == y).sum().item()
        log(f"{name} epoch {ep + 1}/{epochs} loss {loss_sum / steps:.3f} "
            f"train-acc {correct / (steps * batch):.3f} ({time.time() - t0:.0f}s)")
    return model.eval()


def torch_accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        pred = torch.cat([model(torch.from_numpy(x[i:i + 500])).argmax(1)
                          for i in range(0, len(x), 500)]).numpy()
    return float((pred == y).mean())


def export(model: nn.Module, path: Path, mode: str) -> None:
    """mode: "bn" (TorchScript, BN kept), "folded" (TorchScript default), "dynamo"."""
    dummy = torch.zeros(2, 1, CANVAS, CANVAS)
    if mode == "dynamo":
        torch.onnx.export(model, (dummy,), str(path), dynamo=True, opset_version=20,
                          input_names=["input"], output_names=["logits"],
                          dynamic_shapes=({0: torch.export.Dim("N")},), external_data=False)
        return
    kwargs = dict(dynamo=False, opset_version=17, input_names=["input"], output_names=["logits"],
                  dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    if mode == "bn":
        kwargs.update(training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    torch.onnx.export(model, (dummy,), str(path), **kwargs)


def ort_correct(path: Path, x: np.ndarray, y: np.ndarray) -> int:
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    pred = np.concatenate([sess.run(["logits"], {"input": x[i:i + 500]})[0].argmax(1)
                           for i in range(0, len(x), 500)])
    return int((pred == y).sum())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    ap.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--steps", type=int, default=200, help="steps per epoch")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("--n-calib", type=int, default=500)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    log = lambda s: print(s, flush=True)  # noqa: E731

    train_src, test_src = split_sources(args.seed)
    rng = np.random.default_rng(args.seed + 1)
    u8_test, y_test = render(rng, *test_src, args.n_test)
    u8_calib, y_calib = render(rng, *train_src, args.n_calib)
    big, _ = render(np.random.default_rng(args.seed + 2), *train_src, 4000)
    m, s = float((big / 255.0).mean()), float((big / 255.0).std())
    assert abs(m - MEAN) < 0.02 and abs(s - STD) < 0.02, f"update MEAN/STD to {m:.4f}/{s:.4f}"
    x_test, x_calib = normalise(u8_test), normalise(u8_calib)
    np.savez_compressed(args.out / "digits_test.npz", x=x_test, y=y_test.astype(np.int64))
    np.savez_compressed(args.out / "digits_calib.npz", x=x_calib, y=y_calib.astype(np.int64))
    log(f"data: test {x_test.shape} from {len(test_src[0])} unseen sources, calib {x_calib.shape}")

    meta_path = args.out / "models.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    meta["dataset"] = {
        "name": "digits-2x",
        "description": "1x32x32 canvas, two sklearn 8x8 digits (tens left, units right) with random "
                       "scale/rotation/shear/shift/contrast, noise, line strokes and a faint distractor "
                       "digit; label = 10*tens + units",
        "classes": NUM_CLASSES,
        "normalisation": f"x = (u8/255 - {MEAN}) / {STD}",
        "test": {"file": "digits_test.npz", "n": int(len(y_test)),
                 "sources": "35% of sklearn digits, disjoint from training sources"},
        "calib": {"file": "digits_calib.npz", "n": int(len(y_calib)),
                  "sources": "training sources (training distribution)"},
        "seed": args.seed,
    }
    models = meta.setdefault("models", {})
    for name in args.nets:
        t0 = time.time()
        model = train(name, train_src, args.seed, args.epochs, args.steps, args.batch, log)
        acc = torch_accuracy(model, x_test, y_test)
        params = sum(p.numel() for p in model.parameters())
        log(f"{name}: torch fp32 test accuracy {acc:.4f}, {params} params, "
            f"{count_macs(model)} MACs, {time.time() - t0:.0f}s")
        for mode in ("bn", "folded") + (("dynamo",) if name in DYNAMO_NETS else ()):
            fname = f"digits_{name}_{mode}.onnx"
            export(model, args.out / fname, mode)
            correct = ort_correct(args.out / fname, x_test, y_test)
            log(f"  {fname}: onnxruntime accuracy {correct / len(y_test):.4f}")
            models[fname[:-5]] = {
                "file": fname,
                "arch": name,
                "exporter": "dynamo" if mode == "dynamo" else "torchscript",
                "batchnorm": "kept" if mode == "bn" else "folded",
                "input_shape": ["N", 1, CANVAS, CANVAS],
                "classes": NUM_CLASSES,
                "params": params,
                "macs": count_macs(model),
                "torch_accuracy": round(acc, 6),
                "ort_accuracy": round(correct / len(y_test), 6),
                "ort_correct": correct,
                "test_n": int(len(y_test)),
                "training": {"seed": args.seed, "epochs": args.epochs, "steps_per_epoch": args.steps,
                             "batch": args.batch, "optimizer": "AdamW lr 3e-3 wd 0.05 one-cycle",
                             "label_smoothing": 0.05, "torch": torch.__version__},
            }
        meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
