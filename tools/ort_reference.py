"""onnxruntime's own static int8 quantizer as a yardstick (dev code: benchmarks and the corpus
check compare the product's int8 QDQ model against it; the product never imports this).

``quantize_static`` in QDQ format, per-channel int8 weights, uint8 activations, MinMax
calibration: the configuration onnxruntime's documentation recommends for CNNs on CPU.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def ort_quantize_static(model_path, x_calib: np.ndarray, out_dir) -> Path:
    """Quantize ``model_path`` with onnxruntime on images ``x_calib`` (fed one at a time, so a
    batch fixed to 1 works); returns the path of the QDQ file written into ``out_dir``."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    name = onnx.load(str(model_path), load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(x_calib[i:i + 1] for i in range(len(x_calib)))

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {name: x}

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pre, out = out_dir / "ort_pre.onnx", out_dir / "ort_int8.onnx"
    quant_pre_process(str(model_path), str(pre), skip_symbolic_shape=True)
    quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    os.remove(pre)
    return out
