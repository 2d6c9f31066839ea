"""Robustness: malformed models, fuzzed (hypothesis, derandomized) from the bundled ONNX files.

Mutations (``tests/onnx_mutants.py``): random bytes, truncation, garbage, spliced slices, huge /
zero / extra / missing dims of initializers and of the input, cycles, dropped and mistyped
initializers, truncated weight data, wrong opset / IR version, duplicate node / tensor /
initializer / input names, non-4-D conv inputs and weights, bad attributes, dropped and rewired
nodes, changed op types, missing or extra outputs, huge declared weights — one to three at a time.
Each mutant goes through ``inspect`` and ``quantize`` (a few through ``run``): the only allowed
outcomes are success or exit code 2 with one ``error:`` line — never a traceback, a hang (alarm)
or a memory blow-up (address-space limit while fuzzing). Static-batch mutants (the fixed batch of
``torch.onnx.export``: 1 or 4, optionally baked into a Reshape) go through ``quantize``,
``sensitivity``, ``evaluate`` and ``run`` with the default executor (onnxruntime here), so its
errors are exercised too; unmutated, they must succeed.
"""
from __future__ import annotations

import contextlib
import io
import resource
import signal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onnx_mutants import OPS, mutate, static_batch
from ohq_pynq.cli import main
from ohq_pynq.errors import ModelError
from ohq_pynq.graph import load_network

MODELS_DIR = Path(__file__).resolve().parents[1] / "ohq_pynq" / "models"
MODELS = ["digits_resnet_folded", "digits_mbv3_bn", "digits_mbv3_dynamo"]
CALIB = str(MODELS_DIR / "digits_calib.npz")
SOURCES = {m: (MODELS_DIR / f"{m}.onnx").read_bytes() for m in MODELS}
CPU_SECONDS_PER_CASE = 60        # hang guard in CPU seconds (immune to a loaded machine); a
                                 # mutant takes ~0.05 s, a `run` case a few seconds
WALL_SECONDS_PER_CASE = 600      # and in wall seconds, for a hang that does not spin
EXTRA_MEMORY = 3 << 30           # address space a case may add (a blow-up hits MemoryError)

TRIED: dict[str, int] = {"inspect": 0, "quantize": 0, "sensitivity": 0, "evaluate": 0, "run": 0}


@pytest.fixture(scope="module", autouse=True)
def guarded():
    """SIGALRM per case (hang -> TimeoutError -> failure) and a cap on the address space."""
    def alarm(*_):
        raise TimeoutError("a malformed model made the command hang")
    old_handler = signal.signal(signal.SIGALRM, alarm)
    old_prof = signal.signal(signal.SIGPROF, alarm)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    cap = vm + EXTRA_MEMORY
    if hard == resource.RLIM_INFINITY or cap < hard:
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    yield
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    signal.signal(signal.SIGALRM, old_handler)
    signal.signal(signal.SIGPROF, old_prof)
    print(f"\nmalformed-model mutants tried: {TRIED}")


def run_cli(argv) -> tuple[int, str]:
    """main(argv) with a hang guard; any exception escaping the CLI fails the test."""
    out, err = io.StringIO(), io.StringIO()
    signal.alarm(WALL_SECONDS_PER_CASE)
    signal.setitimer(signal.ITIMER_PROF, CPU_SECONDS_PER_CASE)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.alarm(0)
    return code, err.getvalue()


def check_outcome(code: int, err: str, argv) -> None:
    assert code in (0, 2), (argv, code, err)
    assert "Traceback" not in err
    if code == 2:
        lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning:")]
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, err)


def _write(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "mutant.onnx"
    path.write_bytes(data)
    return str(path)


def _quantize_argv(path, out):
    return ["quantize", path, "--bits", "4", "--calib", CALIB, "--num-calib", "2",
            "--out", str(out), "--executor", "numpy"]


mutants = st.tuples(st.sampled_from(MODELS), st.lists(st.sampled_from(sorted(OPS)), min_size=1, max_size=3),
                    st.integers(0, 2 ** 32 - 1))
FUZZ = settings(derandomize=True, deadline=None, database=None, max_examples=250,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@FUZZ
@given(case=mutants)
def test_fuzzed_models_through_inspect_and_quantize(tmp_path, case):
    name, ops, seed = case
    path = _write(tmp_path, mutate(SOURCES[name], seed, ops))
    for argv in (["inspect", path], _quantize_argv(path, tmp_path / "q.onnx")):
        code, err = run_cli(argv)
        check_outcome(code, err, (name, ops, seed, argv[0]))
        TRIED[argv[0]] += 1


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("name", MODELS)
def test_every_mutation_operator_on_every_model(tmp_path, name, op):
    for seed in range(3):
        path = _write(tmp_path, mutate(SOURCES[name], seed, [op]))
        for argv in (["inspect", path], _quantize_argv(path, tmp_path / "q.onnx")):
            code, err = run_cli(argv)
            check_outcome(code, err, (name, op, seed, argv[0]))
            TRIED[argv[0]] += 1


# A few through the whole job (tiny settings): the mutants that survive loading are the
# interesting ones (rewired / retyped nodes, changed attributes).
RUN_CASES = [("digits_mbv3_folded", ["attributes"], 11), ("digits_resnet_folded", ["rewire"], 5),
             ("digits_resnet_folded", ["op_type"], 2), ("digits_mbv3_folded", ["flip_bytes"], 20),
             ("digits_resnet_folded", ["init_dims"], 4), ("digits_resnet_folded", ["attributes"], 9)]


@pytest.mark.parametrize("name,ops,seed", RUN_CASES)
def test_fuzzed_models_through_run(tmp_path, name, ops, seed):
    data = (MODELS_DIR / f"{name}.onnx").read_bytes()
    path = _write(tmp_path, mutate(data, seed, ops))
    argv = ["run", path, "--calib", CALIB, "--eval-images", "2", "--repeats", "1",
            "--no-latency-budget", "--out", str(tmp_path / "run"), "--executor", "numpy"]
    code, err = run_cli(argv)
    check_outcome(code, err, (name, ops, seed, "run"))
    TRIED["run"] += 1


# ------------------------------------------------------------ static batch (torch.onnx.export)
def assert_no_native_log(capfd) -> None:
    """onnxruntime's C++ logger writes to file descriptor 2 itself (past Python's sys.stderr):
    nothing of it may reach the user."""
    native = capfd.readouterr().err
    assert "onnxruntime" not in native and "[E:" not in native, native


def _command_argv(command: str, path: str, tmp_path: Path, executor: str = "auto") -> list[str]:
    if command == "quantize":
        return ["quantize", path, "--bits", "4", "--calib", CALIB, "--num-calib", "3",
                "--out", str(tmp_path / "q.onnx"), "--executor", executor]
    if command == "sensitivity":
        return ["sensitivity", path, "--data", CALIB, "--limit", "3", "--out", str(tmp_path / "s.json"),
                "--executor", executor]
    if command == "evaluate":
        return ["evaluate", path, "--data", CALIB, "--limit", "5", "--executor", executor]
    return ["run", path, "--calib", CALIB, "--num", "3", "--eval-images", "3", "--repeats", "1",
            "--out", str(tmp_path / "run"), "--executor", executor]


# A sample (each command takes ~0.3-1 s): every model, both batches, both spellings of the batch.
STATIC_CASES = [("digits_resnet_folded", 1, True), ("digits_mbv3_bn", 1, False),
                ("digits_mbv3_dynamo", 4, False), ("digits_mbv3_bn", 4, True)]


@pytest.mark.parametrize("name,batch,reshape", STATIC_CASES)
def test_static_batch_models_work_in_every_command(tmp_path, capfd, name, batch, reshape):
    """A fixed-batch export (not mutated) quantizes, measures and evaluates with the default
    executor, on any number of images (not a multiple of the batch either)."""
    path = _write(tmp_path, static_batch(SOURCES[name], batch, reshape))
    for command in ("quantize", "sensitivity", "evaluate"):
        argv = _command_argv(command, path, tmp_path)
        code, err = run_cli(argv)
        assert code == 0 and "Traceback" not in err, (name, batch, reshape, command, err)
        assert_no_native_log(capfd)
        TRIED[command] += 1
    # the numpy engine: success, or one line where the batch is baked into a Reshape
    code, err = run_cli(_command_argv("quantize", path, tmp_path, "numpy"))
    check_outcome(code, err, (name, batch, reshape, "quantize numpy"))
    assert code == 0 or reshape, err


static_mutants = st.tuples(st.sampled_from(MODELS), st.sampled_from([1, 4]), st.booleans(),
                           st.lists(st.sampled_from(sorted(OPS)), min_size=0, max_size=2),
                           st.integers(0, 2 ** 32 - 1), st.sampled_from(["quantize", "sensitivity", "evaluate"]))
STATIC_FUZZ = settings(derandomize=True, deadline=None, database=None, max_examples=60,
                       suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@STATIC_FUZZ
@given(case=static_mutants)
def test_fuzzed_static_batch_models_through_every_command(tmp_path, capfd, case):
    name, batch, reshape, ops, seed, command = case
    path = _write(tmp_path, mutate(static_batch(SOURCES[name], batch, reshape), seed, ops))
    for argv in (["inspect", path], _command_argv(command, path, tmp_path)):
        code, err = run_cli(argv)
        check_outcome(code, err, (name, batch, reshape, ops, seed, argv[0]))
        assert_no_native_log(capfd)
        TRIED[argv[0]] += 1


def test_onnxruntime_rejecting_a_graph_is_one_line(tmp_path):
    """A Conv whose group attribute is 0 passes import, but onnxruntime fails running it: chosen
    automatically, the numpy engine takes over (one warning line, then its own verdict); asked for,
    one error line. Run as the user runs it (a process of its own: Python warnings and
    onnxruntime's native log both reach the real stderr)."""
    import subprocess
    import sys
    path = _write(tmp_path, mutate(static_batch(SOURCES["digits_resnet_folded"], 4), 2, ["attributes"]))
    for executor, expect in (("auto", ["warning: onnxruntime cannot run this model (Non-zero status code "
                                       "returned while running Conv node.", "error: "]),
                             ("onnxruntime", ["error: onnxruntime cannot run this model: Non-zero status code"])):
        proc = subprocess.run([sys.executable, "-m", "ohq_pynq", *_command_argv("quantize", path, tmp_path, executor)],
                              capture_output=True, text=True, timeout=120)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == len(expect), proc.stderr
        assert all(line.startswith(e) for line, e in zip(lines, expect)), proc.stderr
        TRIED["quantize"] += 1


STATIC_RUN_CASES = [("digits_resnet_folded", 1, True, [], 0), ("digits_resnet_folded", 4, False, ["rewire"], 8)]


@pytest.mark.parametrize("name,batch,reshape,ops,seed", STATIC_RUN_CASES)
def test_static_batch_models_through_run(tmp_path, capfd, name, batch, reshape, ops, seed):
    path = _write(tmp_path, mutate(static_batch(SOURCES[name], batch, reshape), seed, ops))
    argv = _command_argv("run", path, tmp_path)
    code, err = run_cli(argv)
    check_outcome(code, err, (name, batch, reshape, ops, seed, "run"))
    assert_no_native_log(capfd)
    assert code == 0 or ops, err
    TRIED["run"] += 1


# ------------------------------------------------------------------- named cases, exact messages
def _proto(name="digits_resnet_folded"):
    import onnx
    return onnx.load(str(MODELS_DIR / f"{name}.onnx"))


def test_huge_declared_weights_are_refused_before_allocating():
    import time
    m = _proto()
    t = m.graph.initializer[0]
    del t.dims[:]
    t.dims.extend([1 << 20, 1 << 20])
    t0 = time.perf_counter()
    with pytest.raises(ModelError, match="more than 2 GiB"):
        load_network(m)
    assert time.perf_counter() - t0 < 2


@pytest.mark.parametrize("mutate_fn,expect", [
    (lambda m: m.graph.initializer[2].ClearField("raw_data") or m.graph.initializer[2].float_data.extend([0.0] * 3),
     "stores 3 values instead of 144"),
    (lambda m: setattr(m.graph.initializer[2], "raw_data", m.graph.initializer[2].raw_data[:-4]),
     "stores 572 bytes instead of 576"),
    (lambda m: setattr(m.graph.initializer[2], "data_type", 8), "element type STRING"),
    (lambda m: setattr(m.graph.initializer[2], "raw_data",
                       np.full(144, np.inf, np.float32).tobytes()), "NaN or infinite"),
])
def test_damaged_initializers(mutate_fn, expect):
    m = _proto()
    mutate_fn(m)
    with pytest.raises(ModelError, match=expect):
        load_network(m)


def test_graph_cycle_and_duplicates_are_model_errors():
    m = _proto()
    m.graph.node[0].input[0] = m.graph.node[3].output[0]
    with pytest.raises(ModelError, match="topologically sorted|cycle"):
        load_network(m)
    m = _proto()
    m.graph.node[2].output[0] = m.graph.node[1].output[0]
    with pytest.raises(ModelError):
        load_network(m)


def test_inconsistent_shapes_name_the_node(tmp_path):
    # A Conv bias rewired to a tensor of the wrong length passes the checker and shape
    # inference but cannot run: the error names the node instead of a numpy traceback.
    m = _proto("digits_mbv3_bn")
    conv = next(n for n in m.graph.node if n.op_type == "Conv" and len(n.input) == 3)
    other = next(t for t in m.graph.initializer if len(t.dims) == 1 and t.name != conv.input[2]
                 and t.dims[0] != next(i for i in m.graph.initializer if i.name == conv.input[1]).dims[0])
    conv.input[2] = other.name
    path = tmp_path / "bad.onnx"
    path.write_bytes(m.SerializeToString())
    code, err = run_cli(_quantize_argv(str(path), tmp_path / "q.onnx"))
    assert code == 2 and "error: " in err
