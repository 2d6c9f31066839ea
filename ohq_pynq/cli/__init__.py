"""Command-line interface: ``python -m ohq_pynq <command> ...``.

One module per subcommand in this package. Each defines ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``; register it in ``COMMANDS``. This module
turns every :class:`~ohq_pynq.errors.OhqError` into one ``error: ...`` line on stderr and the
error's exit code (2 user error, 3 hardware error), and prints warnings as one ``warning: ...``
line each.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from ..errors import OhqError

# Subcommand name -> module in this package, in the order ``--help`` lists them.
COMMANDS = {
    "run": "run_cmd",
    "distill": "distill_cmd",
    "profile": "profile_cmd",
    "sensitivity": "sensitivity_cmd",
    "solve": "solve_cmd",
    "quantize": "quantize_cmd",
    "evaluate": "evaluate_cmd",
    "inspect": "inspect_cmd",
    "doctor": "doctor_cmd",
    "autotune": "autotune_cmd",
    "install-service": "install_service_cmd",
}


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="python -m ohq_pynq",
        description="On-chip hardware-aware mixed-precision quantization for PYNQ boards.",
    )
    parser.add_argument("--version", action="version", version=f"ohq-pynq {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f".{module_name}", __name__)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    saved, warnings.formatwarning = warnings.formatwarning, _one_line_warning   # one line each
    try:
        return int(args._run(args) or 0)
    except OhqError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = saved
