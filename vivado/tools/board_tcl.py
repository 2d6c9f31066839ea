"""Print one board of ohq_pynq/hw/boards.json as Tcl variables for tcl/build_overlay.tcl.
Usage: board_tcl.py <boards.json> <board>  (standard library only: runs wherever Vivado does)."""
import json
import sys


def main(argv):
    path, board = argv[1], argv[2]
    boards = json.load(open(path, encoding="utf-8"))["boards"]
    if board not in boards:
        sys.exit(f"unknown board {board!r}; known: {', '.join(sorted(boards))}")
    b = boards[board]
    print(f"set part {b['part']}")
    print(f"set board_part {{{b.get('board_part', '')}}}")
    print(f"set ps {b['ps']}")
    print(f"set fclk_mhz {b['fclk_hz'] // 1_000_000}")
    print(f"set bus_bytes {b['bus_bytes']}")
    for bits in ("4", "8"):
        c = b["cores"][bits]
        keys = ("pe", "simd", "max_row_words", "max_wdepth", "max_tiles", "lut_muls")
        kv = " ".join(f"{k.upper()} {c[k]}" for k in keys if k in c)
        print(f"set core_params({bits}) {{{kv}}}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
