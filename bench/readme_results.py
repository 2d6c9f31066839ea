"""Render bench/results/*.json as the README's results section.

    python bench/readme_results.py            # print the Markdown
    python bench/readme_results.py --write    # replace the block between the README markers

Each table comes from one benchmark's JSON; a missing file is reported as "not run".
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
START, END = "<!-- results:start -->", "<!-- results:end -->"


def _load(name: str):
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _table(headers, rows) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def pct(v) -> str:
    return "–" if v is None else f"{100 * v:.2f}"


def _section(name: str, heading: str, render) -> list[str]:
    """A heading and ``render(json)`` of ``bench/results/<name>.json``, or "not run"."""
    data = _load(name)
    return ["", heading, ""] + (render(data) if data else ["not run"])


def section() -> str:
    lines: list[str] = []
    q = _load("quant")
    lines += ["### Uniform quantization of the reference models (`bench/quant.py`)", ""]
    if q:
        lines += [f"Test accuracy (%) on {q['test_images']} held-out images; calibration on "
                  f"{q['calibration_images']} images. onnxruntime `quantize_static` (QDQ, per-channel "
                  "int8 weights, uint8 activations, MinMax) is the int8 yardstick.", ""]
        lines += _table(["model", "fp32", "W8A8", "W4A8", "W4A4", "onnxruntime int8"],
                        [[r["model"], pct(r["fp32"]), pct(r["W8A8"]), pct(r["W4A8"]), pct(r["W4A4"]),
                          pct(r["ort_int8"])] for r in q["rows"]])
    else:
        lines.append("not run")
    p = _load("pipeline")
    lines += ["", "### The whole job (`bench/pipeline.py`, simulator)", ""]
    if p:
        rows = []
        for r in p["rows"]:
            st = r["stages"]
            cut = r.get("search", {}).get("cut")
            f = r["fidelity"]
            case = r["case"] + (" (bare cores)" if r.get("overheads") is False else "")
            rows.append([case, r["board"], f"{r['wall_seconds']:.0f}", f"{r['peak_rss_mb']:.0f}",
                         " / ".join(f"{st.get(k, 0):.1f}" for k in ("distill", "profile", "sensitivity", "solve", "deploy")),
                         f"{r['latency_vs_int8']:.3f}",
                         pct(f.get("accuracy")) + (f" ({pct(f.get('accuracy_fp32'))})" if f.get("accuracy_fp32") else ""),
                         "–" if cut is None else f"{100 * cut:.1f} %"])
        lines += _table(["case", "board", "wall s", "peak RSS MB", "distill / profile / MQE / ILP / deploy s",
                         "latency vs int8", "accuracy % (fp32)", "latency cut at ≤0.5 pt loss"], rows)
        lines += ["", "*bare cores*: `--no-overheads`, the search on the cores alone (with the board overheads the "
                  "driver's per-run ARM work is ~91-94 % of a 32×32 net's latency, `bench/overheads.py`). The "
                  "224×224 rows are `run` with its defaults: board overheads included, the default budget "
                  "0.75 or, where infeasible, the smallest feasible (the latency column), executor `auto` (onnxruntime here; the numpy engine's "
                  "memory is in its own table below)."]
        m = p.get("machine")
        if m and m["load_average_max"] > m["cores"]:
            lines += ["", f"Seconds taken on a shared machine (load average up to {m['load_average_max']:.0f} "
                          f"on {m['cores']} cores): several times what an idle machine takes."]
    else:
        lines.append("not run")
    lines += _section("board_time", "### Expected wall time on the boards' ARM cores (`bench/board_time.py`, estimated)", _board_time)
    pn = _load("pipeline_numpy")
    lines += ["", "### Memory of the whole job on the numpy engine (`bench/pipeline.py --numpy-only`)", ""]
    if pn:
        stages = ("distill", "profile", "sensitivity", "solve", "deploy")
        rows = []
        for r in pn["rows"]:
            sp = r["stage_peak_rss_mb"]
            rows.append([r["case"], f"{r['peak_rss_mb']:.0f}", f"≤ {r['target_mb']}",
                         "met" if r["met"] else f"**missed** by {r['peak_rss_mb'] - r['target_mb']:.0f} MB",
                         f"{r['imports_mb']:.0f}", " / ".join(f"{sp.get(k, 0):.0f}" for k in stages),
                         f"{sp.get('after_stages', 0):.0f}"])
        lines += _table(["case", "peak RSS MB", "target (512 MB board)", "", "after imports MB",
                         "peak per stage MB: distill / profile / MQE / ILP / deploy", "report MB"], rows)
        iters = {r.get("distill_iters") for r in pn["rows"]}
        settings = ("default settings" if iters == {None} else
                    f"default settings but {'/'.join(str(i) for i in sorted(iters, key=str))} low-resolution "
                    "distillation iterations (the full-resolution refine steps, which set distillation's "
                    "peak, run as by default)")
        lines += ["", "As on 32-bit PYNQ-Z2: onnxruntime and scipy hidden, every stage on the numpy engine "
                      f"({settings}, 4 deployed images); a stage's peak is the process's VmHWM, reset "
                      "when the stage starts."]
    else:
        lines.append("not run")
    d = _load("distill")
    lines += ["", "### Distilled data (`bench/distill.py`, 32 images, defaults)", ""]
    if d:
        lines += _table(["model", "seconds", "peak RSS MB", "BN loss before → after"],
                        [[r["model"], f"{r['seconds']:.0f}", f"{r['peak_rss_mb']:.0f}",
                          f"{r['bn_loss_initial']:.3g} → {r['bn_loss_final']:.3g}"] for r in d["cost"]])
        c = d.get("quality", {}).get("comparisons", {})
        if c:
            lines += ["", "Cheap (default) vs expensive (500 iterations) distilled data on the digits ResNet: "
                      f"activation ranges differ by {100 * c['cheap_vs_expensive']['range_median_rel_diff']:.0f} % "
                      f"(median), sensitivity ranking Spearman ρ = {c['cheap_vs_expensive']['sensitivity_spearman']:.2f}; "
                      f"cheap vs real images ρ = {c['cheap_vs_real']['sensitivity_spearman']:.2f}."]
    else:
        lines.append("not run")
    lines += _section("mqe", "### Sensitivity: MQE vs the exact estimator (`bench/mqe.py`)", _mqe)
    lines += _section("allocation", "### Allocation quality (`bench/allocation.py`)", _allocation)
    lines += _section("models", "### The corpus of real CNNs (`bench/models.py`)", _models)
    lines += _section("engine", "### numpy engine vs onnxruntime (`bench/engine.py`)", _engine)
    o = _load("oqa")
    lines += ["", "### On-chip profile, simulated cores (`bench/oqa.py`)", ""]
    if o:
        lines += _table(["model", "board", "all-int8 ms", "all-int4 ms", "int4 speed-up", "OQA wall s"],
                        [[r["model"], r["board"], f"{1e3 * r['int8']['seconds']:.2f}", f"{1e3 * r['int4']['seconds']:.2f}",
                          f"{r['speedup_int4']:.2f}×", f"{r['oqa_wall_seconds']:.1f}"] for r in o])
    else:
        lines.append("not run")
    cm = _load("cycle_model")
    lines += ["", "### Cycle model vs RTL counters (`bench/cycle_model.py`)", ""]
    if cm:
        s = cm["summary"]
        lines.append(f"{s['rows']} rows (layer x core) of `vivado/cycles_reference.json`: "
                     f"{s.get('exact', '?')}/{s['rows']} exact to the cycle, max error "
                     f"{100 * s['max_abs_error']:.2f} %, mean {100 * s['mean_abs_error']:.2f} %.")
        lines += _cycle_table(cm["rows"])
    else:
        lines.append("not run")
    lines += _section("synth", "### Resources, yosys `synth_xilinx` (`make -C vivado synth-estimate boards`)", _synth)
    lines += _section("overheads", "### Closed loop with the board's overheads (`bench/overheads.py`)", _overheads)
    i = _load("ilp")
    lines += ["", "### ILP (`bench/ilp.py`)", ""]
    if i:
        lines.append(f"ResNet-50-sized problem ({i['problem']['layers']} layers × {{4, 8}}, latency + size + "
                     f"energy budgets): solve {1e3 * i['solve_seconds']['median']:.1f} ms (median); "
                     f"{i['pareto_seconds']['points']}-point Pareto sweep {1e3 * i['pareto_seconds']['median']:.0f} ms.")
    else:
        lines.append("not run")
    return "\n".join(lines)


def _cycle_table(rows) -> list[str]:
    """Per shape: MAC-roof utilisation at int8 and int4, int4/int8 cycles, and the int4 run's
    distance to its bound (max of the MAC roof and the input stream)."""
    by = {}
    for r in rows:
        if "utilisation" in r:
            by.setdefault(r["name"], {})[r["bits"]] = r
    pairs = [(n, d[8], d[4]) for n, d in by.items() if 8 in d and 4 in d]
    if not pairs:
        return []
    out = ["", "Per shape (cores at PE 8 x SIMD 8, as the driver plans each layer; utilisation = "
           "MAC-roof cycles / RTL cycles; bound = the larger of the MAC roof and the input stream's "
           "beats, e.g. an FC layer's weight bytes / bus bytes):", ""]
    out += _table(["shape", "int8 util", "int4 util", "int4 / int8 cycles", "int4 cycles over bound"],
                  [[n, f"{100 * a['utilisation']:.1f} %", f"{100 * b['utilisation']:.1f} %",
                    f"{b['rtl_cycles'] / a['rtl_cycles']:.2f}", f"{100 * b['over_bound']:+.1f} %"]
                   for n, a, b in pairs])
    return out


def _synth(sy) -> list[str]:
    out = []
    muls = [c for c in sy["configs"] if c["name"].startswith("mul_")]
    if muls:
        out += ["MAC array of one lane word (`rtl/ohq_mul_word.v`: int8 8 products, int4 16 products, "
                "combinational), per multiplier style (`LUT_MULS` 0 = one product per DSP48, 1 = LUT "
                "shift-add, 2 = two int4 products per DSP48); logic depth = yosys `ltp -noff` cells:", ""]
        out += _table(["family", "bits", "products", "multipliers", "LUT", "CARRY", "DSP48",
                       "products / DSP", "logic depth"],
                      [[c["family"], c["BITS"], c["CH"], {0: "DSP", 1: "LUT", 2: "2 per DSP"}[c["LUT_MULS"]],
                        c["lut"], c["carry"], c["dsp"], f"{c['CH'] / c['dsp']:.0f}" if c["dsp"] else "–",
                        c.get("logic_depth_cells", "–")] for c in muls])
    cores = [c for c in sy["configs"] if not c["name"].startswith("mul_")]
    if cores:
        out += ["", "Whole cores:", ""]
        out += _table(["config", "LUT", "FF", "DSP48", "BRAM36", "logic depth"],
                      [[c["name"], c["lut"], c["ff"], c["dsp"], c["bram36"], c.get("logic_depth_cells", "–")]
                       for c in cores])
    rows = []
    for b, r in sy.get("boards", {}).items():
        if r.get("chosen"):
            rows.append([b, r["chosen"]["8"], r["chosen"]["4"],
                         " / ".join(f"{100 * r['use'][k]:.0f} %" for k in ("lut", "ff", "dsp", "bram36"))])
        else:
            kc, ku = r.get("kept_cores", {}), r.get("kept_use") or {}
            rows.append([b, kc.get("8", "–"), kc.get("4", "–"),
                         " / ".join(f"{100 * ku[k]:.0f} %" for k in ("lut", "ff", "dsp", "bram36") if k in ku)
                         + " (RTL 1.0 estimates; not re-synthesised)"])
    if rows:
        out += ["", f"Per board (cores + DMA allowance within {100 * sy['limit']:.0f} % of each resource):", ""]
        out += _table(["board", "int8 core", "int4 core", "LUT / FF / DSP / BRAM use"], rows)
    return out


MODEL_STAGES = ("export", "inspect", "quantize8", "quantize4", "ort8", "ref8", "ort4", "run", "deploy")


def _models(m) -> list[str]:
    """Model x export x stage, pass counts per stage, and the failures' reasons in one line each."""
    c = m["criteria"]
    rows_in = m["rows"]
    out = [f"{len(rows_in)} files: torchvision/timm nets with random weights and BatchNorm statistics from "
           f"noise at {m['resolution']}×{m['resolution']} (torch {m['torch']}; `default` = "
           f"`torch.onnx.export` defaults, here the {m['default_exporter']} exporter, fixed batch 1; "
           "`torchscript` = opset 17, dynamic batch; `bn` = BatchNorm kept) and the onnx wheel's light "
           "model-zoo files (224×224, constant weights). Stages: `inspect`; `quantize` 8 / 4 bits on "
           f"{c['calib_images']} noise images; `ort8` / `ort4`: the QDQ file in a default onnxruntime session, "
           f"int8 max |Δ| ≤ {100 * c['int8_max_rel']:.0f} % of the fp32 output range ({c['compare_images']} "
           f"images; int4 only has to run); `ref8`: int8 no further from fp32 than onnxruntime's own "
           "`quantize_static` (per-channel, MinMax) + 1 point, or within the 5 %; "
           f"`run --calib` on the simulator ({c['run_images']} images); "
           f"`deploy`: KL(QDQ ‖ integer deployment) ≤ {100 * c['deploy_kl_ratio']:.0f} % of KL(fp32 ‖ "
           "deployment), or ≤ the KL between onnxruntime's two executions of the same file (default "
           "session vs QDQ fusion off). ✓ pass, ✗ fail, – not reached; `docs/corpus_failures.md` gives "
           "each cause.", ""]
    mark = {True: "✓", False: "✗", None: "–"}

    def ok(r, s):
        return r["stages"].get(s, {}).get("ok")

    rows = [[r["model"], r["export"]] + [mark[ok(r, s)] for s in MODEL_STAGES] for r in rows_in]
    counts = [f"{sum(ok(r, s) is True for r in rows_in)}/{len(rows_in)}" for s in MODEL_STAGES]
    rows.append(["**passed**", ""] + counts)
    out += _table(["model", "export"] + list(MODEL_STAGES), rows)
    strict = [r for r in rows_in if "deploy_ratio_ok" in r.get("figures", {})]
    ref = [r["figures"] for r in rows_in if "int8_ortq_max_rel" in r.get("figures", {})]
    if strict and ref:
        ours = statistics.median(f["int8_max_rel"] for f in ref)
        theirs = statistics.median(f["int8_ortq_max_rel"] for f in ref)
        out += ["", f"`deploy` by the 1 % ratio alone: {sum(r['figures']['deploy_ratio_ok'] for r in strict)}"
                f"/{len(strict)}. int8 max |Δ| (median over {len(ref)} files): ours {100 * ours:.1f} %, "
                f"onnxruntime's quantizer {100 * theirs:.1f} % of the fp32 range."]
    return out


def _engine(e) -> list[str]:
    def ratio(r, k):
        return "–" if k not in r else f"{r[k]:.1f}×"

    rows = [[r["model"], "×".join(str(v) for v in (r["input"][0], r["input"][2])),
             f"{r['max_rel_err']:.1e}", ratio(r, "ratio_forward"), ratio(r, "ratio_backward"),
             ratio(r, "ratio_step"),
             "–" if r.get("grad_rel_l2_err_vs_float64") is None else f"{r['grad_rel_l2_err_vs_float64']:.0e}",
             f"{r['peak_working_set_mb']:.0f}" + (f" / {r['peak_working_set_record_mb']:.0f}"
                                                  if "peak_working_set_record_mb" in r else "")]
            for r in e["rows"]]
    blas = e.get("blas", {})
    out = [f"Both single-threaded (OMP/OPENBLAS/MKL_NUM_THREADS=1, onnxruntime intra = inter = 1); "
           f"CPU time, {e.get('timing', 'best of interleaved rounds')}, on a shared {e.get('cpu_count')}-core "
           f"machine (load average {e['load_average_start'][0]:.0f} → {e['load_average_end'][0]:.0f}); numpy "
           f"{blas.get('numpy')}, OpenBLAS kernels {blas.get('openblas_core', '?')}. Forward = numpy / onnxruntime; "
           "backward (input gradient, same multiply-adds as the forward) = numpy backward / onnxruntime "
           "forward; step = numpy (recording forward + backward) / (2 × onnxruntime forward). Target "
           f"≤ {e.get('target_ratio', 2):g}×. BN-kept rows differentiate the distillation loss, folded rows "
           "the logits; the gradient error is relative L2 against the float64 engine.", ""]
    out = out + _table(["model", "batch × px", "max rel. error", "forward", "backward", "step",
                        "gradient error", "working set MB (run / record)"], rows)
    out += ["", "Gradient errors of 1e-4–1e-3 are ReLU / max-pool kinks, not round-off: rounding the input "
            "to float32 moves the float64 engine's own ResNet-18 gradient by as much."]
    skx = _load("engine_skylakex")
    if skx:
        picks = [r for r in skx["rows"] if r["input"][0] == 8 and "ratio_step" in r]
        out += ["", f"numpy's OpenBLAS runs its {blas.get('openblas_core', '?')} kernels on this CPU, onnxruntime's "
                "MLAS its AVX-512 ones. With `--blas-core SkylakeX` (OPENBLAS_CORETYPE, same-ISA GEMM; "
                "`bench/results/engine_skylakex.json`): " + "; ".join(
                    f"{r['model']} forward {r['ratio_forward']:.1f}×, backward {r['ratio_backward']:.1f}×, "
                    f"step {r['ratio_step']:.1f}×" for r in picks) + "."]
    return out


def _mqe(m) -> list[str]:
    rows = []
    for r in m["rows"]:
        rows.append([r["model"], r["group"], r["about"], r["layers"]]
                    + [f"{r['rho'][v]:.3f}" for v in ("mqe", "mqe_old", "paper", "matched")]
                    + [f"{r['rho_acc_drop'][e]:.3f}" for e in ("exact", "mqe", "mqe_old", "paper")]
                    + [f"{r['seconds']['exact']:.1f} / {r['seconds']['mqe']:.1f}"])
    out = [f"Spearman ρ over layers, on {m['images']} distilled (BN kept) or calibration (folded) images. "
           "*vs exact*: against the exact estimator (layer alone at int4); target ≥ "
           f"{m['target_rho']} for MQE. *vs accuracy drop*: against the test-accuracy drop of the layer "
           "alone at int4 (labelled test images, the users' quantity). MQE = the layer's int4 weight "
           "rounding + its input at the int4 step (default); old = 50 % random weight mask + input at "
           "the int4 step (previous default); paper = 50 % mask only; matched = mask fraction matched "
           "to int4 rounding noise per channel. Held-out models were never tuned on "
           "(`tools/train_heldout.py`).", ""]
    out += _table(["model", "set", "arch, task, seed", "layers", "vs exact: MQE", "old", "paper", "matched",
                   "vs acc. drop: exact", "MQE", "old", "paper", "exact / MQE s"], rows)
    for group, summ in m.get("summary", {}).items():
        if summ:
            met = "met" if summ["all_meet_target"] else "missed"
            out += ["", f"{group}: minimum ρ vs exact — MQE {summ['min_rho']['mqe']:.3f} (target {met}), "
                        f"old {summ['min_rho']['mqe_old']:.3f}, paper {summ['min_rho']['paper']:.3f}; mean ρ vs "
                        f"accuracy drop — exact {summ['mean_rho_acc_drop']['exact']:.3f}, MQE "
                        f"{summ['mean_rho_acc_drop']['mqe']:.3f}, old {summ['mean_rho_acc_drop']['mqe_old']:.3f}, "
                        f"paper {summ['mean_rho_acc_drop']['paper']:.3f}."]
    return out


def _board_time(b) -> list[str]:
    h = b["host"]
    boards = b["boards"]
    out = ["No board was at hand: the CPU seconds of each stage measured here (the rows of "
           "`bench/pipeline.py`) scaled by how much slower one board core is — the low end by the "
           "single-thread SGEMM ratio, the high end by the streaming-bandwidth ratio. This machine, one "
           f"thread: SGEMM {h['gemm_gflops']:.0f} GFLOP/s, copy {h['stream_gbytes']:.0f} GB/s; assumed per board "
           "(sources in the script): " + "; ".join(
               f"{n} {v['cpu']} {v['gemm_gflops']:.1f} GFLOP/s, {v['stream_gbytes']:.1f} GB/s"
               for n, v in boards.items()) + ".", "",
           "Rows marked `auto` ran distillation and MQE on onnxruntime, which the aarch64 boards have; "
           "PYNQ-Z2 (armv7) has only the numpy engine, 2.4–7× slower on those stages (`bench/engine.py`), "
           "so its distill and MQE figures are lower bounds by that factor. A PYNQ-Z2 user should "
           "expect hours for a 224×224 network (distillation dominates: `--calib` with real images "
           "skips it) and minutes for the bundled 32×32 ones.", ""]
    rows = []
    def mins(lo, hi):
        return f"{lo / 60:.1f}–{hi / 60:.1f}" if hi < 600 else f"{lo / 60:.0f}–{hi / 60:.0f}"
    for r in b["rows"]:
        st = r["stages"]
        rows.append([r["case"], r["executor"], r["board"], f"{r['host_seconds']:.0f}",
                     " / ".join(mins(*st[k]) for k in
                                ("distill", "profile", "sensitivity", "solve", "deploy") if k in st),
                     mins(*r["total"])])
    return out + _table(["case", "executor", "board", "CPU s here", "distill / profile / MQE / ILP / deploy min",
                         "whole job min"], rows)


def _overheads(ov) -> list[str]:
    rows = []
    for r in ov["runs"]:
        sp, g = r["predicted_split"], r["gap"]
        rows.append([r["model"], r["board"], f"{1e3 * sp['core_seconds']:.3f}",
                     f"{1e3 * r['predicted_seconds']:.2f}", f"{1e3 * r['measured_seconds']:.2f}",
                     f"{100 * r['gap_relative']:+.0f} %", f"{100 * sp['overhead_fraction']:.1f} %",
                     f"{1e3 * sp['overheads'].get('pack', 0):.1f}",
                     f"{1e3 * g['arm_ops_between_cores']:.1f}", f"{1e3 * g['arm_quantize_dequantize']:.1f}",
                     f"{1e3 * r['all_int8_seconds']:.1f} / {1e3 * r['all_int4_seconds']:.1f}"])
    out = [f"Default `run` per model and simulated board, ms per image: the cores' counters, the "
           f"profile's prediction (cores + modelled overheads + the driver's numpy packing timed "
           f"here x the board's ARM factor), the deployment's measured end-to-end time, the share "
           f"of the prediction that is overheads, and the ARM work the profile does not hold "
           f"(host load average {ov['load_average']:.1f} on {ov['cpu_count']} cores when it ran: "
           f"the ARM figures are inflated by it).", ""]
    return out + _table(["model", "board", "cores", "predicted", "measured", "gap", "overheads",
                         "driver packing", "ARM ops between cores", "ARM quantize/dequantize",
                         "all-int8 / all-int4 predicted"], rows)


def _allocation(a) -> list[str]:
    if "latency_cut" not in a:                 # the previous JSON layout
        return ["not run (old format: rerun `python bench/allocation.py`)"]
    rows = []
    for r in a["rows"]:
        if not r["feasible"]:
            rows.append([r["model"], r["board"], f"{r['budget']:.2f}", r.get("images", a["images"]),
                         pct(r["fp32_accuracy"]), pct(r["int8_accuracy"]), pct(r["int4_accuracy"]), r["note"],
                         "", "", "", "", ""])
            continue
        c, rnd = r["configs"], r["random"]
        rows.append([r["model"], r["board"], f"{r['budget']:.2f}", r.get("images", a["images"]),
                     pct(r["fp32_accuracy"]), pct(r["int8_accuracy"]), pct(r["int4_accuracy"]),
                     f"{pct(c['search']['accuracy'])} ({c['search']['latency_ratio']:.3f}, #{r['chosen_rank']})",
                     f"**{100 * c['search']['beats_random']:.1f} %**" if r["meets_target"]
                     else f"{100 * c['search']['beats_random']:.1f} % (missed)",
                     f"{pct(c['ilp']['accuracy'])} ({100 * c['ilp']['beats_random']:.0f} %)",
                     f"{pct(c['ilp_paper']['accuracy'])} ({c['ilp_paper']['latency_ratio']:.3f})",
                     pct(c["greedy"]["accuracy"]),
                     f"{pct(rnd['accuracy']['median'])} / {pct(rnd['accuracy']['max'])}"])
    out = [f"Test accuracy (%) on labelled test images (*images*) at a latency budget (fraction of "
           f"all-int8) vs {a['random']} random configurations meeting the same budget (uniform over the "
           f"feasible set). *search* is what `run` deploys: the {a['candidates']} best ILP solutions (min Σ "
           "sensitivity, then latency) re-ranked by the quantized network's KL on 32 distilled images "
           f"(latency ratio, ILP rank kept); target: beats ≥ {100 * a['target_beats_random']:.0f} % of the "
           "random configurations. *ILP alone*: the ILP optimum without re-ranking (share of random it "
           "beats); *paper*: β = γ = 0.5.", ""]
    out += _table(["model", "board", "budget", "images", "fp32", "int8", "int4", "search (latency, rank)",
                   "beats random", "ILP alone", "paper β=γ=0.5 (latency)", "greedy", "random median / max"], rows)
    feasible = [r for r in a["rows"] if r["feasible"]]
    if feasible:
        met = sum(r["meets_target"] for r in feasible)
        worst = min(feasible, key=lambda r: r["configs"]["search"]["beats_random"])
        out += ["", f"Beats ≥ {100 * a['target_beats_random']:.0f} % of random at {met} of {len(feasible)} "
                    f"feasible model × board × budget cases (lowest {100 * worst['configs']['search']['beats_random']:.1f} %: "
                    f"{worst['model']} on {worst['board']} at {worst['budget']})."]
    if a["latency_cut"]:
        cut_rows = []
        for c in a["latency_cut"]:
            b = c["best"]
            b8 = c.get("best_vs_int8")
            cut_rows.append([c["model"], c["board"], c.get("images", a["images"]), pct(c["fp32_accuracy"]),
                             pct(c["int8_accuracy"]),
                             "–" if b is None else f"{100 * c['cut']:.1f} % ({pct(b['accuracy'])}, budget {b['budget']:.2f})",
                             "–" if b8 is None else f"{100 * c['cut_vs_int8']:.1f} % ({pct(b8['accuracy'])})",
                             "–" if c["target"] is None else f"≥ {100 * c['target']:.0f} %",
                             "–" if c["meets_target"] is None else ("met" if c["meets_target"] else "missed")])
        out += ["", f"Latency cut vs all-int8 at ≤ {100 * a['max_loss']:.1f} point test-accuracy loss vs fp32 "
                    "(the target's reading, as in `bench/pipeline.py`) and vs all-int8: the search's config at "
                    "budgets swept from 1.0 down to all-int4 (steps of 0.05, then 0.01).", ""]
        out += _table(["model", "board", "images", "fp32", "int8", "cut vs fp32 (accuracy, budget)",
                       "cut vs int8 (accuracy)", "target", ""], cut_rows)
    d = a.get("default_run")
    if d:
        below = sum(x["below_0_75"] for x in d)
        worst = max(d, key=lambda x: x["latency_ratio"])
        out += ["", f"Default `run` (budget 0.75 of all-int8, or the smallest feasible): at or below 0.75 on {below} of "
                    f"{len(d)} bundled model × board pairs (highest {worst['latency_ratio']:.3f}: {worst['model']} "
                    f"on {worst['board']})" + ("." if below == len(d) else
                    "; " + ", ".join(f"{x['model']} on {x['board']} {x['latency_ratio']:.3f}"
                                     for x in d if not x["below_0_75"]) + ".")]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="rewrite the README block")
    args = ap.parse_args(argv)
    text = section()
    if not args.write:
        print(text)
        return 0
    readme = ROOT / "README.md"
    src = readme.read_text()
    if START not in src or END not in src:
        print(f"README.md has no {START} ... {END} block", file=sys.stderr)
        return 1
    head, rest = src.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{text}\n{END}{tail}")
    print("README.md results updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
