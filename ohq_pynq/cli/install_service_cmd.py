"""``install-service --config FILE``: install the systemd unit that runs autotune at boot."""
from __future__ import annotations

HELP = "install (and enable) the systemd unit that runs `autotune --config FILE` at boot"


def add_arguments(p) -> None:
    p.add_argument("--config", required=True, metavar="FILE", help="the autotune TOML file")
    p.add_argument("--unit-dir", default="/etc/systemd/system", metavar="DIR",
                   help="where to write the unit (default /etc/systemd/system)")
    p.add_argument("--no-enable", action="store_true", help="write the unit but do not enable it")
    p.add_argument("--print", action="store_true", help="only print the unit file")


def run(args) -> int:
    from ..autotune import install_service, service_unit

    if args.print:
        print(service_unit(args.config), end="")
        return 0
    install_service(args.config, args.unit_dir, enable=not args.no_enable)
    return 0
