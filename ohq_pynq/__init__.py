"""ohq-pynq: on-chip hardware-aware mixed-precision quantization (OHQ) for PYNQ boards.

Stages: ``distill`` (synthetic calibration data), ``oqa`` (per-layer cost measured on the
int4/int8 conv cores), ``mqe`` (per-layer sensitivity), ``ilp`` (bit allocation), ``deploy``.
Everything runs on the board's ARM core with numpy; onnxruntime is an optional faster path.
"""
from .errors import (ConfigError, DataError, HardwareError, InfeasibleError, ModelError,
                     OhqError, UnsupportedOpError)

__version__ = "0.1.0"

__all__ = [
    "OhqError", "ModelError", "UnsupportedOpError", "DataError", "ConfigError",
    "InfeasibleError", "HardwareError", "__version__",
]
