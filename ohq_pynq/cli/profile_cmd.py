"""``profile MODEL --out profile.json``: OQA — measure every layer at 4 and 8 bits on the accelerator."""
from __future__ import annotations

from .common import add_model_argument, format_table, print_json, show_progress

HELP = "measure every quantizable layer at each bit-width on the accelerator (OQA) -> profile.json"


def add_arguments(p) -> None:
    from .. import oqa

    add_model_argument(p)
    p.add_argument("--backend", choices=("sim", "pynq"), default="sim",
                   help="sim: numpy model of the cores (default %(default)s); pynq: the overlay on "
                        "this board")
    p.add_argument("--board", default=None,
                   help="board profile (pynq-z2, ultra96v2, zcu104, kv260); pynq: detected from "
                        "$BOARD / the device tree when omitted; sim: pynq-z2")
    p.add_argument("--overlay", default=None, metavar="BIT",
                   help="pynq: bitstream to load (default overlays/<board>/ohq.bit)")
    p.add_argument("--repeats", type=int, default=oqa.DEFAULT_REPEATS, metavar="N",
                   help="runs per layer and bit-width; median and spread are kept (default "
                        "%(default)s; the deterministic simulator runs once)")
    p.add_argument("--bits", default="4,8", help="candidate bit-widths (default %(default)s)")
    p.add_argument("--estimate-energy", action="store_true",
                   help="sim: report modelled joules even for a board without power rails")
    p.add_argument("--arm-time", choices=("off", "measured"), default="off",
                   help="sim: also time the driver's numpy packing on this CPU, scaled to the "
                        "board's ARM core (default %(default)s: deterministic, modelled overheads only)")
    p.add_argument("--no-overheads", action="store_true",
                   help="sim: the bare cores, without what a board adds around them")
    p.add_argument("--cache", default=None, metavar="PATH",
                   help="measurement cache (default: <out stem>.oqa-cache.json beside --out)")
    p.add_argument("--no-cache", action="store_true", help="measure everything again, keep no cache")
    p.add_argument("--seed", type=int, default=0, help="seed of the random activations")
    p.add_argument("--max-spread", type=float, default=oqa.DEFAULT_MAX_SPREAD, metavar="F",
                   help="unstable when (max - min) cycles exceed F x median (default %(default)s): "
                        "repeat more")
    p.add_argument("--max-repeats", type=int, default=None, metavar="N",
                   help=f"repeats allowed for an unstable layer (default {oqa.MAX_REPEATS_FACTOR} "
                        f"x --repeats)")
    p.add_argument("--out", required=True, help="profile.json to write")
    p.add_argument("--json", action="store_true", help="print the profile as JSON")


def _bits(text: str) -> list[int]:
    from ..errors import ConfigError
    try:
        bits = sorted({int(b) for b in str(text).split(",") if b.strip()})
    except ValueError:
        raise ConfigError(f"--bits must be a comma-separated list such as 4,8, not {text!r}.") from None
    if not bits or any(b not in (4, 8) for b in bits):
        raise ConfigError(f"--bits must list 4 and/or 8 (the cores' widths), not {text!r}.")
    return bits


def run(args) -> int:
    from ..hw.accelerator import make_accelerator
    from ..oqa import default_cache_path, profile_network

    bits = _bits(args.bits)
    options = {}
    if args.backend == "sim":
        options["estimate_energy"] = args.estimate_energy
        options.update({"overheads": False} if args.no_overheads else {"arm_time": args.arm_time})
    elif args.overlay:
        options["bitstream"] = args.overlay
    acc = make_accelerator(args.backend, board=args.board, **options)
    try:
        cache = None if args.no_cache else (args.cache or default_cache_path(args.out))
        prof = profile_network(args.model, acc, bits=bits, repeats=args.repeats, cache=cache,
                               out=args.out, input_shape=args.input_shape, seed=args.seed,
                               progress=show_progress(), max_spread=args.max_spread,
                               max_repeats=args.max_repeats)
    finally:
        acc.close()
    if args.json:
        print_json(prof.to_json())
        return 0
    hw = prof.hardware
    rows = []
    for name, costs in prof.layers.items():
        row = [name]
        for b in bits:
            c = costs[b]
            row += [int(c.cycles), c.seconds * 1e6]
        if len(bits) == 2:
            lo, hi = costs[bits[0]], costs[bits[1]]
            row.append(hi.cycles / lo.cycles if lo.cycles else float("nan"))
        rows.append(row)
    headers = ["layer"]
    for b in bits:
        headers += [f"cycles@{b}", f"us@{b}"]
    if len(bits) == 2:
        headers.append(f"{bits[1]}/{bits[0]}")
    print(format_table(headers, rows))
    totals = []
    for b in bits:
        sec = sum(c[b].seconds for c in prof.layers.values())
        j = [c[b].joules for c in prof.layers.values()]
        energy = "n/a (no power rails)" if any(v is None for v in j) else f"{sum(j) * 1e3:.3f} mJ"
        totals.append(f"int{b}: {sec * 1e3:.3f} ms, {energy}")
    oqa = prof.metadata.get("oqa", {})
    print(f"{hw.get('backend')} on {hw.get('board')} at {hw.get('fclk_hz', 0) / 1e6:.0f} MHz; "
          + "; ".join(totals))
    print(f"wrote {args.out} ({len(rows)} layers x {len(bits)} bit-widths, {oqa.get('measured', 0)} "
          f"measured, {oqa.get('cached', 0)} from cache, {oqa.get('repeats')} repeat(s))")
    return 0
