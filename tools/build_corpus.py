"""Build the corpus of real CNNs as ONNX files (dev script: needs torch, torchvision, timm).

    python tools/build_corpus.py [--cache DIR] [--resolution 96] [--models resnet18,...]
                                 [--exports default,torchscript,bn]

Every model gets random weights (seeded) and BatchNorm running statistics calibrated on noise
(a few forward passes in train mode with ``momentum=None``, i.e. a cumulative average, then
``eval()``), and is exported three ways:

* ``default``: exactly ``torch.onnx.export(model, torch.randn(1, 3, R, R), path)`` -- whatever
  that call does in the installed torch (torch 2.9+: the dynamo exporter); the exporter used is
  recorded in the cache's ``manifest.json``;
* ``torchscript``: the TorchScript exporter (``dynamo=False``), opset 17, dynamic batch;
* ``bn``: TorchScript exporter, opset 17, BatchNorm kept (``TrainingMode.PRESERVE``,
  ``do_constant_folding=False``), so distillation has statistics to match.

Files go to ``DIR/torch-<version>/r<R>/<model>.<export>.onnx`` (default DIR
``~/.cache/ohq-pynq/corpus``); a file already there is reused. :func:`corpus_files` also lists
the onnx wheel's light model-zoo files. The product never imports this module.
"""
from __future__ import annotations

import argparse
import contextlib
import glob
import io
import json
import os
import sys
import time
import warnings
from pathlib import Path

DEFAULT_CACHE = Path(os.path.expanduser("~/.cache/ohq-pynq/corpus"))
DEFAULT_RESOLUTION = 96
SEED = 0
CALIB_BATCHES = 4          # forward passes in train mode to set the BN running statistics
CALIB_BATCH_SIZE = 8

# name -> (library, constructor name); family groups the models for the CI slice
MODELS = {
    "resnet18": ("torchvision", "resnet18", "resnet"),
    "resnet50": ("torchvision", "resnet50", "resnet"),
    "mobilenet_v2": ("torchvision", "mobilenet_v2", "mobilenet"),
    "mobilenet_v3_small": ("torchvision", "mobilenet_v3_small", "mobilenet"),
    "mobilenet_v3_large": ("torchvision", "mobilenet_v3_large", "mobilenet"),
    "efficientnet_b0": ("torchvision", "efficientnet_b0", "efficientnet"),
    "shufflenet_v2_x1_0": ("torchvision", "shufflenet_v2_x1_0", "shufflenet"),
    "squeezenet1_1": ("torchvision", "squeezenet1_1", "squeezenet"),
    "regnet_x_400mf": ("torchvision", "regnet_x_400mf", "regnet"),
    "mnasnet1_0": ("torchvision", "mnasnet1_0", "mnasnet"),
    "googlenet": ("torchvision", "googlenet", "inception"),
    "timm_mobilenetv3_small_100": ("timm", "mobilenetv3_small_100", "mobilenet"),
    "timm_efficientnet_lite0": ("timm", "efficientnet_lite0", "efficientnet"),
    "timm_resnet18d": ("timm", "resnet18d", "resnet"),
    "timm_ghostnet_100": ("timm", "ghostnet_100", "ghostnet"),
}
EXPORTS = ("default", "torchscript", "bn")
LIGHT_DIR = "backend/test/data/light"


def family(name: str) -> str:
    """Architecture family of a corpus model (light models: ``zoo``)."""
    return MODELS[name][2] if name in MODELS else "zoo"


def light_models() -> list[Path]:
    """The onnx wheel's light model-zoo files (constant weights, opset 7-9)."""
    import onnx

    return sorted(Path(p) for p in glob.glob(os.path.join(os.path.dirname(onnx.__file__), LIGHT_DIR,
                                                          "light_*.onnx")))


def cache_dir(cache: Path, resolution: int) -> Path:
    """Folder of one torch version x resolution."""
    import torch

    return Path(cache) / f"torch-{torch.__version__}" / f"r{resolution}"


def build_model(name: str, resolution: int = DEFAULT_RESOLUTION):
    """The model with seeded random weights and BN statistics calibrated on noise at the export
    resolution, in eval mode."""
    import torch

    lib, ctor, _ = MODELS[name]
    torch.manual_seed(SEED)
    if lib == "torchvision":
        import torchvision

        kwargs = {"aux_logits": False, "init_weights": True} if ctor == "googlenet" else {}
        model = getattr(torchvision.models, ctor)(weights=None, **kwargs)
    else:
        import timm

        model = timm.create_model(ctor, pretrained=False)
    return calibrate_bn(model, resolution)


def calibrate_bn(model, resolution: int = DEFAULT_RESOLUTION):
    """Running statistics from noise: momentum=None (cumulative mean) over a few train-mode passes."""
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    g = torch.Generator().manual_seed(SEED + 1)
    model.train()
    with torch.no_grad():
        for _ in range(CALIB_BATCHES):
            model(torch.randn(CALIB_BATCH_SIZE, 3, resolution, resolution, generator=g))
    model.eval()
    return model


def export(model, kind: str, path: Path, resolution: int) -> str:
    """Write one export; returns the exporter used ("dynamo" or "torchscript")."""
    import torch

    x = torch.randn(1, 3, resolution, resolution)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.onnx")
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        if kind == "default":
            torch.onnx.export(model, x, str(tmp))           # exactly the defaults
            used = _exporter_of(tmp)
        elif kind == "torchscript":
            torch.onnx.export(model, x, str(tmp), dynamo=False, opset_version=17,
                              input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
            used = "torchscript"
        elif kind == "bn":
            torch.onnx.export(model, x, str(tmp), dynamo=False, opset_version=17,
                              training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False,
                              input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
            used = "torchscript"
        else:
            raise ValueError(kind)
    data = Path(str(tmp) + ".data")
    if data.exists():   # the dynamo exporter may write external data for large models
        import onnx

        m = onnx.load(str(tmp))
        onnx.save(m, str(tmp))
        data.unlink()
    os.replace(tmp, path)
    return used


def _exporter_of(path: Path) -> str:
    """Which exporter wrote a file: the dynamo exporter names nodes after aten ops (``node_conv2d``),
    the TorchScript one after modules (``/conv1/Conv``)."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    names = [n.name for n in m.graph.node]
    return "dynamo" if sum(n.startswith("node_") for n in names) > len(names) // 2 else "torchscript"


def default_exporter() -> str:
    """The exporter ``torch.onnx.export`` uses without arguments in the installed torch."""
    import inspect

    import torch

    p = inspect.signature(torch.onnx.export).parameters.get("dynamo")
    return "dynamo" if p is not None and p.default is True else "torchscript"


def build(cache: Path = DEFAULT_CACHE, resolution: int = DEFAULT_RESOLUTION, models=None, exports=EXPORTS,
          log=print) -> dict:
    """Build (or reuse) every requested file; returns the manifest ``{file: {...}}``."""
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    folder = cache_dir(cache, resolution)
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    for name in models or MODELS:
        todo = [k for k in exports if not (folder / f"{name}.{k}.onnx").is_file()]
        if not todo:
            continue
        t0 = time.time()
        model = build_model(name, resolution)
        for kind in todo:
            path = folder / f"{name}.{kind}.onnx"
            t1 = time.time()
            try:
                used = export(model, kind, path, resolution)
                manifest[path.name] = {"model": name, "export": kind, "exporter": used,
                                       "resolution": resolution, "torch": torch.__version__,
                                       "seconds": round(time.time() - t1, 1)}
            except Exception as err:  # noqa: BLE001 -- record the exporter's failure as a result
                reason = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
                manifest[path.name] = {"model": name, "export": kind, "error": reason[:300],
                                       "resolution": resolution, "torch": torch.__version__}
            log(f"{path.name}: {manifest[path.name].get('exporter') or manifest[path.name]['error']} "
                f"({time.time() - t1:.1f} s)")
            manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True))
        log(f"{name}: {time.time() - t0:.1f} s")
    return manifest


def corpus_file(cache: Path, resolution: int, name: str, kind: str) -> Path:
    """Path of one built file (built on demand)."""
    path = cache_dir(cache, resolution) / f"{name}.{kind}.onnx"
    if not path.is_file():
        build(cache, resolution, [name], [kind], log=lambda m: None)
    return path


def export_error(cache: Path, resolution: int, name: str, kind: str) -> str | None:
    """The exporter's error for a file that could not be built (None if it was built)."""
    manifest_path = cache_dir(cache, resolution) / "manifest.json"
    if not manifest_path.is_file():
        return None
    return json.loads(manifest_path.read_text()).get(f"{name}.{kind}.onnx", {}).get("error")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="cache folder (default %(default)s)")
    ap.add_argument("--resolution", type=int, default=DEFAULT_RESOLUTION, help="input H = W (default %(default)s)")
    ap.add_argument("--models", help="comma-separated subset of: " + ", ".join(MODELS))
    ap.add_argument("--exports", default=",".join(EXPORTS), help="comma-separated subset of: " + ", ".join(EXPORTS))
    args = ap.parse_args(argv)
    models = args.models.split(",") if args.models else None
    unknown = [m for m in models or [] if m not in MODELS]
    if unknown:
        print(f"error: unknown models {unknown}", file=sys.stderr)
        return 2
    build(args.cache, args.resolution, models, args.exports.split(","))
    print(cache_dir(args.cache, args.resolution))
    return 0


if __name__ == "__main__":
    sys.exit(main())
