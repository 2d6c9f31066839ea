"""The exceptions ohq-pynq raises for problems a user can act on.

Every error the library raises on purpose is an :class:`OhqError`; the CLI prints its message as
one line (``error: ...``) and exits with the class's ``exit_code`` instead of a traceback:
2 for user errors (bad model, data or settings), 3 for hardware errors.
"""
from __future__ import annotations


class OhqError(Exception):
    """Base class: a problem the user can fix; ``str(err)`` is one complete sentence."""

    exit_code = 2


class ModelError(OhqError):
    """The ONNX model cannot be used: not a file, not ONNX, truncated, fails the checker,
    has a dynamic input shape, or a weight that is not constant."""


class UnsupportedOpError(ModelError):
    """The model uses operators ohq-pynq does not execute; ``nodes`` lists (node name, op type).

    The message is one line, grouped by op type in order of first appearance, with a count and
    at most three node names each: ``unsupported operators: LRN ×2 (n2, n6), Einsum ×1 (n9)``."""

    def __init__(self, nodes: list[tuple[str, str]]):
        self.nodes = list(nodes)
        by_op: dict[str, list[str]] = {}
        for name, op in self.nodes:
            by_op.setdefault(op, []).append(name)
        groups = []
        for op, names in by_op.items():
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            groups.append(f"{op} ×{len(names)} ({shown})")
        super().__init__("unsupported operators: " + ", ".join(groups))


class DataError(OhqError):
    """Input images / calibration data are missing, empty, or of the wrong shape, dtype or range."""


class ConfigError(OhqError):
    """Settings are invalid: budgets, bit-width configs, option combinations."""


class InfeasibleError(ConfigError):
    """No bit-width assignment meets the budgets; the message states the smallest feasible value."""


class HardwareError(OhqError):
    """The accelerator failed: missing overlay, timeout, DMA error, register mismatch."""

    exit_code = 3
