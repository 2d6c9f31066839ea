"""Options and output helpers shared by the subcommands."""
from __future__ import annotations

import json
import sys


def add_model_argument(p, optional: bool = False) -> None:
    if optional:
        p.add_argument("model", nargs="?", help="ONNX model file (default: the bundled reference model)")
    else:
        p.add_argument("model", help="ONNX model file")
    p.add_argument("--input-shape", metavar="C,H,W",
                   help="fix a dynamic input shape, e.g. 3,224,224")


def add_executor_argument(p, default: str = "auto") -> None:
    from ..runtime import EXECUTORS

    p.add_argument("--executor", choices=EXECUTORS, default=default,
                   help="float/QDQ model executor: onnxruntime where installed (auto), else numpy "
                        "(default %(default)s)")


def show_progress() -> bool:
    """Progress bars on an interactive terminal only (not in logs, pipes or systemd journals)."""
    return sys.stderr.isatty()


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")


def format_table(headers: list[str], rows: list[list], align: str | None = None) -> str:
    """Plain-text table; ``align`` is one char per column, 'l' or 'r' (default: text left, numbers right)."""
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    if align is None:
        align = "".join("r" if rows and isinstance(rows[0][i], (int, float)) else "l"
                        for i in range(len(headers)))
    lines = []
    for k, r in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if a == "r" else c.ljust(w)
                               for c, w, a in zip(r, widths, align)).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 1000:
        return f"{v:,}"
    return str(v)
