"""``inspect MODEL``: the quantizable layers of a model."""
from __future__ import annotations

from .common import add_model_argument, format_table, print_json

HELP = "list the quantizable layers of an ONNX model (shapes, MACs, parameters)"


def add_arguments(p) -> None:
    add_model_argument(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args) -> int:
    from ..graph import load_network

    net = load_network(args.model, args.input_shape)
    info = net.describe()
    if args.json:
        print_json(info)
        return 0
    rows = [[l["name"], l["op"], f'{l["cin"]}x{l["in_hw"][0]}x{l["in_hw"][1]}',
             f'{l["cout"]}x{l["out_hw"][0]}x{l["out_hw"][1]}',
             f'{l["kernel"][0]}x{l["kernel"][1]}/{l["stride"][0]}', l["groups"], l["macs"], l["params"]]
            for l in info["layers"]]
    print(f"{info['source']}: input {info['input']['name']} {tuple(info['input']['shape'])}, "
          f"{len(rows)} quantizable layers, {info['batchnorm']} BatchNormalization")
    print(format_table(["layer", "op", "in CxHxW", "out CxHxW", "k/s", "groups", "MACs", "params"],
                       rows, align="llrrrrrr"))
    print(f"total: {info['macs']:,} MACs per image, {info['params']:,} parameters")
    return 0
