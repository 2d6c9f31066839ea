"""``autotune --config FILE``: re-tune at boot only when the model, bitstream or settings changed."""
from __future__ import annotations

HELP = "boot-time autotune from a TOML config: re-profile/re-solve only what changed, install config"


def add_arguments(p) -> None:
    p.add_argument("--config", required=True, metavar="FILE",
                   help="TOML settings (see ohq_pynq/service/autotune.example.toml)")
    p.add_argument("--force", action="store_true", help="re-run every stage even if nothing changed")


def run(args) -> int:
    from ..autotune import autotune

    autotune(args.config, force=args.force)
    return 0
