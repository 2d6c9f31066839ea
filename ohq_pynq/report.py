"""``report.html``: one self-contained page (images embedded) describing a pipeline run.

Input is the run summary the pipeline writes as ``summary.json`` (see
:func:`ohq_pynq.pipeline.run`): settings, hardware, per-layer rows, totals, fidelity and the
Pareto frontier. Plots are drawn with matplotlib's Agg canvas (no display needed) and also saved
as PNG files beside the report.
"""
from __future__ import annotations

import base64
import html
import os
from pathlib import Path

from .fileio import atomic_write

PLOTS = ("pareto.png", "layers.png", "latency.png", "random.png")


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def plot_layers(summary: dict, path: str | os.PathLike) -> str:
    """Per-layer bars: chosen bits, sensitivity, and profiled latency (and energy) at 4 and 8 bits."""
    rows = summary["layers"]
    names = [r["name"] for r in rows]
    idx = list(range(len(rows)))
    has_energy = any(r.get("joules", {}).get("8") is not None for r in rows)
    panels = 4 if has_energy else 3
    fig = _figure(max(7.0, 0.28 * len(rows) + 3), 2.2 * panels)
    axes = fig.subplots(panels, 1, sharex=True)
    colors = ["tab:orange" if r["bits"] == 4 else "tab:blue" for r in rows]
    axes[0].bar(idx, [r["bits"] for r in rows], color=colors)
    axes[0].set_ylabel("bits")
    axes[0].set_yticks([4, 8])
    axes[1].bar(idx, [r.get("sensitivity", 0.0) for r in rows], color=colors)
    axes[1].set_ylabel("sensitivity (KL)")
    w = 0.4
    for k, (bits, color) in enumerate((("8", "tab:blue"), ("4", "tab:orange"))):
        axes[2].bar([i + (k - 0.5) * w for i in idx], [1e3 * r["seconds"][bits] for r in rows], w,
                    color=color, label=f"int{bits}")
    axes[2].set_ylabel("latency (ms)")
    axes[2].legend(fontsize=7)
    if has_energy:
        for k, (bits, color) in enumerate((("8", "tab:blue"), ("4", "tab:orange"))):
            axes[3].bar([i + (k - 0.5) * w for i in idx], [1e3 * (r["joules"][bits] or 0) for r in rows],
                        w, color=color, label=f"int{bits}")
        axes[3].set_ylabel("energy (mJ)")
    axes[-1].set_xticks(idx)
    axes[-1].set_xticklabels(names, rotation=75, ha="right", fontsize=6)
    for ax in axes:
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle("per layer: chosen bits (orange = int4), sensitivity and measured cost", fontsize=9)
    fig.tight_layout()
    fig.savefig(os.fspath(path), format="png")
    return os.fspath(path)


def plot_latency(summary: dict, path: str | os.PathLike) -> str:
    """Predicted (profile) vs measured (deployment) latency per layer, and the identity line."""
    rows = [r for r in summary["layers"] if r.get("measured_seconds") is not None]
    fig = _figure(5.2, 4.4)
    ax = fig.add_subplot(1, 1, 1)
    if rows:
        p = [1e3 * r["predicted_seconds"] for r in rows]
        m = [1e3 * r["measured_seconds"] for r in rows]
        ax.plot(p, m, "o", ms=4, color="tab:green")
        hi = max(p + m) * 1.05
        ax.plot([0, hi], [0, hi], ":", color="grey")
        ax.set_xlim(0, hi)
        ax.set_ylim(0, hi)
    ax.set_xlabel("predicted by the profile (ms)")
    ax.set_ylabel("measured in deployment (ms)")
    ax.set_title("closed loop: per-layer latency", fontsize=9)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.fspath(path), format="png")
    return os.fspath(path)


def plot_random(search: dict, path: str | os.PathLike) -> str:
    """Fidelity (KL vs fp32 on the data, log scale) vs latency / all-int8 of the random
    configurations at the budget, the ILP candidates and the chosen one."""
    rnd = search["random"]
    fig = _figure(6.4, 4.4)
    ax = fig.add_subplot(1, 1, 1)
    floor = 1e-6            # KL can be 0 (identical outputs); keep it on a log axis

    def kl(v):
        return max(float(v), floor)

    pts = rnd.get("points", [])
    if pts:
        ax.plot([p["latency_ratio"] for p in pts], [kl(p["kl"]) for p in pts], "o", ms=4,
                color="grey", alpha=0.6, label=f"random at the same budget ({len(pts)})")
    cands = [c for c in search.get("candidates", []) if c.get("kl") is not None and c.get("latency_ratio") is not None]
    if cands:
        ax.plot([c["latency_ratio"] for c in cands], [kl(c["kl"]) for c in cands], "s", ms=5,
                color="tab:blue", alpha=0.8, label=f"ILP candidates ({len(cands)})")
    ch = rnd["chosen"]
    ax.plot([ch["latency_ratio"]], [kl(ch["kl"])], "*", ms=16, color="tab:red", zorder=5,
            label="chosen")
    budget = search.get("latency_budget_ratio")
    if budget is not None:
        ax.axvline(budget, color="tab:red", ls=":", lw=1, label=f"latency budget {budget:.3g}")
    ax.set_yscale("log")
    ax.set_xlabel("latency / all-int8 (profile)")
    ax.set_ylabel(f"KL(fp32 ‖ quantized) on {search.get('images', '?')} images (nats)")
    ax.set_title("search vs chance: lower is closer to the float model", fontsize=9)
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(os.fspath(path), format="png")
    return os.fspath(path)


def _allocation_section(summary: dict, out: Path) -> str:
    """Candidates of the ILP with their measured KL, and the random comparison when it ran."""
    search = summary.get("search")
    if not search:
        return ""
    rows = [[str(c.get("rank")), _fmt(c.get("sensitivity")), _fmt(c.get("latency_ratio")),
             _fmt(c.get("kl")), _fmt(c.get("top1_agreement"), "%"), "chosen" if c.get("chosen") else ""]
            for c in search.get("candidates", [])]
    parts = [f"<p>Objective: {html.escape(str(search.get('objective_form', '')))}; the "
             f"{len(rows)} best ILP solutions"
             + (f" were run as quantized networks on {search.get('images')} images and the one closest "
                f"to the float model (least KL) was kept." if len(rows) > 1 else ".") + "</p>",
             _table(["ILP rank", "Σ sensitivity", "latency / int8", "KL vs fp32", "top-1 agreement", ""], rows)]
    rnd = search.get("random")
    if rnd:
        plot_random(search, out / "random.png")
        beats = rnd.get("beats_kl")
        agree = rnd.get("beats_top1_agreement")
        parts.append(f"<p>{rnd['n']} random configurations at the same budget"
                     + (f": the chosen one has a lower KL than {100 * beats:.1f} % of them"
                        if beats is not None else "")
                     + (f" and a higher top-1 agreement with fp32 than {100 * agree:.1f} %" if agree is not None else "")
                     + ".</p>")
        parts.append(_img(out / "random.png", "random configurations vs the chosen one"))
    else:
        parts.append("<p class='note'>No random comparison (run with <code>--compare-random N</code>).</p>")
    return "<h2>Bit allocation</h2>\n" + "\n".join(parts)


def _img(path: Path, alt: str) -> str:
    if not path.is_file():
        return f"<p class='note'>({html.escape(alt)}: not available)</p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'>"


def _fmt(v, unit: str = "") -> str:
    if v is None:
        return "–"
    if unit == "B" and isinstance(v, (int, float)):
        return f"{int(round(v)):,} B"
    if isinstance(v, float):
        if unit == "ms":
            return f"{1e3 * v:.3f} ms"
        if unit == "mJ":
            return f"{1e3 * v:.3f} mJ"
        if unit == "%":
            return f"{100 * v:.2f} %"
        return f"{v:.4g}"
    return html.escape(str(v))


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def closed_loop_section(summary: dict) -> str:
    """Per layer and in total: predicted (profile) vs measured (deployment) latency, the ARM
    work, and what the end-to-end gap is made of (``summary["closed_loop"]``)."""
    loop = summary.get("closed_loop")
    if not loop:
        return "<p class='note'>(no closed-loop timing in this summary)</p>"
    rows = []
    for r in summary["layers"]:
        pred, meas = r.get("predicted_seconds"), r.get("measured_seconds")
        diff = None if pred is None or meas is None else meas - pred
        over = r.get("predicted_overheads") or {}
        rows.append([html.escape(r["name"]), str(r["bits"]), _fmt(r.get("predicted_core_seconds"), "ms"),
                     _fmt(float(sum(over.values())) if over else None, "ms"), _fmt(pred, "ms"),
                     _fmt(meas, "ms"), _fmt(diff, "ms"), _fmt(r.get("arm_seconds"), "ms")])
    g = loop["gap"]
    for op, v in loop.get("arm_ops", {}).items():
        rows.append([f"ARM: {html.escape(op)} (between cores)", "", "", "", "–", _fmt(v, "ms"),
                     _fmt(v, "ms"), ""])
    rows.append(["<b>total per image</b>", "", "", "", f"<b>{_fmt(loop['predicted_seconds'], 'ms')}</b>",
                 f"<b>{_fmt(loop['measured_seconds'], 'ms')}</b>", f"<b>{_fmt(loop['gap_seconds'], 'ms')}</b>",
                 _fmt(g["arm_quantize_dequantize"], "ms")])
    table = _table(["layer", "bits", "core (profile)", "overheads (profile)", "predicted", "measured",
                    "measured − predicted", "ARM quantize/dequantize"], rows)
    labels = {"arm_ops_between_cores": "ARM ops between the cores (float ops in numpy: Add, "
                                       "pooling, Flatten, ...), not in the per-layer profile",
              "arm_quantize_dequantize": "ARM quantize of each layer's input / dequantize of its "
                                         "output where the edge is not direct, not in the profile",
              "per_layer_difference": "the layers' own calls: deployed output formats differ from "
                                      "the profiled ones; timing noise of the driver's packing",
              "unattributed": "the rest: the deployment's own Python (graph walk, bookkeeping)"}
    gap_rows = [[html.escape(labels[k]), _fmt(v, "ms"),
                 _fmt(v / loop["gap_seconds"], "%") if loop["gap_seconds"] else "–"]
                for k, v in g.items()]
    split = loop.get("predicted_split") or {}
    share = ""
    if split.get("overhead_fraction") is not None:
        cats = ", ".join(f"{html.escape(k)} {_fmt(v, 'ms')}" for k, v in
                         sorted(split["overheads"].items(), key=lambda kv: -kv[1]))
        share = (f"<p>What the board adds around the cores is {100 * split['overhead_fraction']:.1f} % "
                 f"of the predicted latency: cores {_fmt(split['core_seconds'], 'ms')}, overheads "
                 f"{_fmt(split['overhead_seconds'], 'ms')} ({cats}). The core's counter itself holds "
                 f"the input DMA's start (the driver arms it after ap_start).</p>")
    rel = loop.get("gap_relative")
    head = (f"<p>Measured end to end {_fmt(loop['measured_seconds'], 'ms')} per image against "
            f"{_fmt(loop['predicted_seconds'], 'ms')} predicted by the profile"
            + (f" ({100 * rel:+.1f} %)" if rel is not None else "") + ". The measured figure is "
            "the deployment's own clock per image, not a sum of the per-layer table.</p>")
    return head + share + table + "<h3>Where the gap comes from</h3>" + _table(
        ["part", "per image", "share of the gap"], gap_rows)


def render(summary: dict, out_dir: str | os.PathLike) -> Path:
    """Draw the plots into ``out_dir`` and write ``out_dir/report.html``; returns its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_layers(summary, out / "layers.png")
    plot_latency(summary, out / "latency.png")
    t = summary["totals"]
    fid = summary.get("fidelity", {})
    totals_rows = []
    for key, label in (("chosen", "chosen (mixed)"), ("int8", "all int8"), ("int4", "all int4")):
        row = t.get(key) or {}
        totals_rows.append([label, _fmt(row.get("seconds"), "ms"), _fmt(row.get("joules"), "mJ"),
                            _fmt(row.get("bytes"), "B"), _fmt(row.get("sensitivity"))])
    layer_rows = [[html.escape(r["name"]), html.escape(r.get("op", "")), str(r["bits"]),
                   _fmt(r.get("sensitivity")), _fmt(r["seconds"]["8"], "ms"), _fmt(r["seconds"]["4"], "ms"),
                   _fmt(r.get("predicted_seconds"), "ms"), _fmt(r.get("measured_seconds"), "ms")]
                  for r in summary["layers"]]
    settings = _table(["setting", "value"], [[html.escape(k), html.escape(str(v))]
                                             for k, v in summary.get("settings", {}).items()])
    hardware = _table(["hardware", "value"], [[html.escape(k), html.escape(str(v))]
                                              for k, v in summary.get("hardware", {}).items()])
    fidelity = _table(["fidelity", "value"], [[html.escape(k), _fmt(v, "%") if k != "kl" else _fmt(v)]
                                              for k, v in fid.items()])
    measured = t.get("measured_seconds")
    headline = (f"latency {_fmt(t['chosen'].get('seconds'), 'ms')} predicted"
                + (f", {_fmt(measured, 'ms')} measured" if measured is not None else "")
                + f" vs {_fmt(t['int8'].get('seconds'), 'ms')} all-int8"
                + (f" ({100 * (1 - t['chosen']['seconds'] / t['int8']['seconds']):.1f} % less)"
                   if t["int8"].get("seconds") else ""))
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ohq-pynq report: {html.escape(summary.get('model', ''))}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1100px; color: #222; }}
h1 {{ font-size: 1.4em; }} h2 {{ font-size: 1.1em; border-bottom: 1px solid #ccc; margin-top: 1.6em; }}
table {{ border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }}
td, th {{ border: 1px solid #ddd; padding: 3px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
img {{ max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }}
.note {{ color: #777; }} .grid {{ display: flex; gap: 2em; flex-wrap: wrap; }}
</style></head><body>
<h1>ohq-pynq: {html.escape(summary.get('model', ''))}</h1>
<p>{headline}. Backend: {html.escape(str(summary.get('hardware', {}).get('backend', '')))},
board {html.escape(str(summary.get('hardware', {}).get('board', '')))}.</p>
<h2>Totals</h2>
{_table(["configuration", "latency", "energy", "weights", "total sensitivity"], totals_rows)}
{fidelity}
<h2>Pareto frontier</h2>
{_img(out / "pareto.png", "Pareto frontier")}
{_allocation_section(summary, out)}
<h2>Per layer</h2>
{_img(out / "layers.png", "per-layer bars")}
{_table(["layer", "op", "bits", "sensitivity", "int8 latency", "int4 latency", "predicted", "measured"], layer_rows)}
<h2>Predicted vs measured</h2>
{_img(out / "latency.png", "predicted vs measured latency")}
{closed_loop_section(summary)}
<h2>Run</h2>
<div class="grid">{settings}{hardware}</div>
</body></html>
"""
    path = out / "report.html"
    atomic_write(path, lambda f: f.write(page), mode="w")
    return path
