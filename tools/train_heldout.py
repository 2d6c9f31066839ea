#!/usr/bin/env python3
"""Train the held-out models that the sensitivity benchmark reports on (dev-only, needs PyTorch).

``bench/mqe.py`` tunes nothing on these: they exist to check, on nets and tasks the estimator was
not developed on, that MQE still ranks layers like the exact estimator. Each is a small CNN with
BatchNorm kept (so the pipeline distils data from it), trained with a seed and on a task that no
bundled reference model uses:

==========  ==============  ==========  ====  ==============================================
name        arch            task        seed  what differs from the references
==========  ==============  ==========  ====  ==============================================
h_resnet    resnet          digits-2x   1     the reference ResNet, another seed and split
h_resnet10  resnet10        digits-sum  2     2 blocks per stage (20 layers), 19-class sum task
h_mbv2      mbv2            digits-2x   3     MobileNetV2 blocks (ReLU6 = Clip, no SE)
h_mbv3rgb   mbv3            digits-rgb  4     3-channel input, 30 classes (digit x colour)
==========  ==============  ==========  ====  ==============================================

Tasks (all from scikit-learn's 8x8 digits, rendered as in ``train_reference.py``):
``digits-2x`` two digits, label 10*tens+units (100 classes); ``digits-sum`` the same canvases,
label tens+units (19 classes); ``digits-rgb`` one digit on a 3x32x32 colour canvas with faint
distractors, label 3*digit + the dominant channel of its colour (30 classes).

Writes ``OUT/<name>.onnx``, ``OUT/<name>_test.npz`` (3000 labelled test images from digit
sources the net never saw), ``OUT/<name>_calib.npz`` (500 training-distribution images) and
``OUT/heldout.json`` (task, seed, accuracies). OUT defaults to ``bench/heldout/`` (git-ignored;
the files are ~10 MB). About 6 minutes per net on one core::

    .venv/bin/python tools/train_heldout.py [--names h_mbv2 ...] [--out bench/heldout]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_reference as ref  # noqa: E402

OUT_DIR = Path(__file__).resolve().parent.parent / "bench" / "heldout"
HELDOUT = {   # name -> (arch, task, seed)
    "h_resnet": ("resnet", "digits-2x", 1),
    "h_resnet10": ("resnet10", "digits-sum", 2),
    "h_mbv2": ("mbv2", "digits-2x", 3),
    "h_mbv3rgb": ("mbv3", "digits-rgb", 4),
}
RGB_MEAN, RGB_STD = 0.22, 0.16    # normalisation of digits-rgb pixels (all channels)


# ----------------------------------------------------------------------------- tasks

def render_rgb(rng: np.random.Generator, images: np.ndarray, labels: np.ndarray, n: int):
    """One digit on a 3x32x32 colour canvas: (float32 images (n, 3, 32, 32), labels 3*digit+colour)."""
    idx = rng.integers(0, len(images), n)
    digit = ref._place(rng, images, idx, (12.0, 20.0), (12.0, 20.0), (2.0, 2.8), n)
    colour = rng.uniform(0.15, 0.6, (n, 3))
    dominant = rng.integers(0, 3, n)
    colour[np.arange(n), dominant] = rng.uniform(0.8, 1.0, n)
    background = rng.uniform(0.0, 0.35, (n, 3))
    canvas = background[:, :, None, None] * (1 - digit[:, None]) + colour[:, :, None, None] * digit[:, None]
    for _ in range(2):                                   # faint grey distractor digits
        dis = ref._place(rng, images, rng.integers(0, len(images), n), (4.0, 28.0), (4.0, 28.0), (0.6, 1.0), n)
        canvas = np.maximum(canvas, dis[:, None] * rng.uniform(0.1, 0.35, (n, 1, 1, 1)))
    canvas = canvas + rng.normal(0, 1, canvas.shape) * rng.uniform(0.02, 0.1, (n, 1, 1, 1))
    u8 = np.clip(np.rint(canvas * 255.0), 0, 255).astype(np.uint8)
    x = ((u8.astype(np.float32) / 255.0 - RGB_MEAN) / RGB_STD).astype(np.float32)
    return x, (labels[idx] * 3 + dominant).astype(np.int64)


def render_task(task: str, rng, images, labels, n):
    """(float32 NCHW images, int64 labels) of ``n`` examples of ``task``."""
    if task == "digits-rgb":
        return render_rgb(rng, images, labels, n)
    u8, y = ref.render(rng, images, labels, n)
    if task == "digits-sum":
        y = y // 10 + y % 10
    return ref.normalise(u8), y.astype(np.int64)


TASKS = {"digits-2x": (1, 100), "digits-sum": (1, 19), "digits-rgb": (3, 30)}   # (channels, classes)


# ----------------------------------------------------------------------------- nets

class ResNet10(nn.Module):
    """ResNet with two basic blocks per stage (stem + 8 blocks + fc: 20 quantizable layers)."""

    def __init__(self, in_ch=1, num_classes=100, widths=(16, 32, 64, 128)):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        blocks, cin = [], widths[0]
        for i, w in enumerate(widths):
            blocks += [ref.BasicBlock(cin, w, 1 if i == 0 else 2), ref.BasicBlock(w, w, 1)]
            cin = w
        self.layers = nn.Sequential(*blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward(self, x):
        x = self.layers(self.maxpool(self.relu(self.bn1(self.conv1(x)))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class InvertedResidualV2(nn.Module):
    """MobileNetV2 block: 1x1 expand-BN-ReLU6, depthwise 3x3-BN-ReLU6, 1x1 project-BN, residual."""

    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hid = cin * expand
        layers = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hid, 1, bias=False), nn.BatchNorm2d(hid), nn.ReLU6(inplace=True)]
        layers += [nn.Conv2d(hid, hid, 3, stride, 1, groups=hid, bias=False), nn.BatchNorm2d(hid),
                   nn.ReLU6(inplace=True), nn.Conv2d(hid, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.block(x)
        return x + y if self.residual else y


# (expand, cout, repeats, stride) -- MobileNetV2 scaled to 32x32 inputs
MBV2_CFG = [(1, 16, 1, 1), (4, 24, 2, 2), (4, 32, 2, 1), (4, 64, 2, 2), (4, 96, 1, 1)]


class MobileNetV2(nn.Module):
    def __init__(self, in_ch=1, num_classes=100, last=256):
        super().__init__()
        layers = [nn.Conv2d(in_ch, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(inplace=True)]
        cin = 16
        for t, c, n, s in MBV2_CFG:
            for i in range(n):
                layers.append(InvertedResidualV2(cin, c, s if i == 0 else 1, t))
                cin = c
        layers += [nn.Conv2d(cin, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def build(arch: str, in_ch: int, classes: int) -> nn.Module:
    """The untrained net ``arch`` for ``in_ch`` input channels and ``classes`` outputs."""
    if arch == "resnet":
        m = ref.DigitsResNet(num_classes=classes)
        m.conv1 = nn.Conv2d(in_ch, 16, 3, 1, 1, bias=False)
    elif arch == "mbv3":
        m = ref.DigitsMobileNetV3(num_classes=classes)
        m.features[0][0] = nn.Conv2d(in_ch, 16, 3, 2, 1, bias=False)
    elif arch == "resnet10":
        m = ResNet10(in_ch, classes)
    elif arch == "mbv2":
        m = MobileNetV2(in_ch, classes)
    else:
        raise ValueError(arch)
    ref.init_weights(m)
    return m


# ----------------------------------------------------------------------------- train / export

def train(model, task, sources, seed, epochs, steps, batch, log, tag):
    """Same recipe as the references (AdamW 3e-3, one-cycle, label smoothing 0.05)."""
    import torch.nn.functional as F

    rng = np.random.default_rng(seed + 1000)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=epochs * steps, pct_start=0.15)
    for ep in range(epochs):
        model.train()
        t0, loss_sum, correct = time.time(), 0.0, 0
        for _ in range(steps):
            x, y = render_task(task, rng, *sources, batch)
            x, y = torch.from_numpy(x), torch.from_numpy(y)
            out = model(x)
            loss = F.cross_entropy(out, y, label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item()
            correct += (out.argmax(1) == y).sum().item()
        log(f"{tag} epoch {ep + 1}/{epochs} loss {loss_sum / steps:.3f} "
            f"train-acc {correct / (steps * batch):.3f} ({time.time() - t0:.0f}s)")
    return model.eval()


def export_bn(model, path: Path, in_ch: int) -> None:
    """TorchScript export with BatchNorm kept (as the BN-kept references)."""
    torch.onnx.export(model, (torch.zeros(2, in_ch, ref.CANVAS, ref.CANVAS),), str(path), dynamo=False,
                      opset_version=17, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                      training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    ap.add_argument("--names", nargs="+", default=list(HELDOUT), choices=list(HELDOUT))
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--steps", type=int, default=200, help="steps per epoch")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--n-test", type=int, default=3000)
    ap.add_argument("--n-calib", type=int, default=500)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    log = lambda s: print(s, flush=True)  # noqa: E731
    meta_path = args.out / "heldout.json"
    for name in args.names:
        arch, task, seed = HELDOUT[name]
        in_ch, classes = TASKS[task]
        torch.manual_seed(seed)
        train_src, test_src = ref.split_sources(seed)
        rng = np.random.default_rng(seed + 1)
        x_test, y_test = render_task(task, rng, *test_src, args.n_test)
        x_calib, y_calib = render_task(task, rng, *train_src, args.n_calib)
        np.savez_compressed(args.out / f"{name}_test.npz", x=x_test, y=y_test)
        np.savez_compressed(args.out / f"{name}_calib.npz", x=x_calib, y=y_calib)
        t0 = time.time()
        model = train(build(arch, in_ch, classes), task, train_src, seed, args.epochs, args.steps,
                      args.batch, log, name)
        acc = ref.torch_accuracy(model, x_test, y_test)
        path = args.out / f"{name}.onnx"
        export_bn(model, path, in_ch)
        correct = ref.ort_correct(path, x_test, y_test)
        log(f"{name}: torch {acc:.4f}, onnxruntime {correct / len(y_test):.4f} ({time.time() - t0:.0f}s)")
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        meta[name] = {"file": path.name, "arch": arch, "task": task, "classes": classes,
                      "input_shape": ["N", in_ch, ref.CANVAS, ref.CANVAS], "batchnorm": "kept",
                      "seed": seed, "test": f"{name}_test.npz", "calib": f"{name}_calib.npz",
                      "test_n": int(len(y_test)), "torch_accuracy": round(acc, 6),
                      "ort_accuracy": round(correct / len(y_test), 6),
                      "params": sum(p.numel() for p in model.parameters()),
                      "training": {"epochs": args.epochs, "steps_per_epoch": args.steps, "batch": args.batch,
                                   "torch": torch.__version__}}
        meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
