"""Boot-time autotune: re-run the pipeline only when the model, bitstream or settings changed.

``python -m ohq_pynq autotune --config autotune.toml`` reads a TOML file (see
``ohq_pynq/service/autotune.example.toml``), fingerprints its inputs — SHA-256 of the model file,
of the bitstream (on a board), and of the settings — and compares them with the fingerprint of
the config installed last time. Nothing changed: one log line, nothing measured, exit 0.
Something changed: the pipeline runs (its own stage caches mean a changed budget re-solves
without re-profiling), then ``config.json`` is installed atomically at ``install`` together with
its fingerprint. One log line per stage, suitable for the systemd journal.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Callable

from typing import TYPE_CHECKING

from .errors import ConfigError
from .fileio import atomic_write, file_sha256, json_sha256, read_json, write_json

if TYPE_CHECKING:
    from .pipeline import Settings

BUDGET_KEYS = {"latency": "latency_budget", "size": "size_budget", "energy": "energy_budget"}
SEARCH_KEYS = {"beta", "gamma", "candidates", "compare_random", "seed", "hw_metric", "estimator", "perturbation", "alpha", "repeats",
               "num_images", "eval_images", "pareto_points"}
TOP_KEYS = {"model", "out", "install", "backend", "board", "calib", "eval_data", "input_shape",
            "bitstream", "executor", "overheads"}


def _toml():
    try:
        import tomllib  # Python >= 3.11
    except ImportError:  # pragma: no cover - Python 3.10 (PYNQ 3.0/3.1 images)
        import tomli as tomllib
    return tomllib


def load_config(path: str | os.PathLike) -> tuple[dict, "Settings"]:
    """Parse the TOML file → (raw dict, pipeline Settings). Relative paths are relative to it."""
    from .pipeline import Settings

    path = Path(path)
    try:
        raw = _toml().loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"autotune config not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read autotune config {path}: {err}") from None
    except Exception as err:  # tomllib.TOMLDecodeError
        raise ConfigError(f"autotune config {path} is not valid TOML: {err}") from None
    unknown = sorted(set(raw) - TOP_KEYS - {"budgets", "search"})
    unknown += [f"budgets.{k}" for k in raw.get("budgets", {}) if k not in BUDGET_KEYS]
    unknown += [f"search.{k}" for k in raw.get("search", {}) if k not in SEARCH_KEYS]
    if unknown:
        raise ConfigError(f"autotune config {path}: unknown key(s) {', '.join(unknown)}")
    if "model" not in raw or "install" not in raw:
        raise ConfigError(f"autotune config {path} must set 'model' and 'install'")
    base = path.resolve().parent

    def resolve(p):
        return None if p is None else str((base / p).resolve()) if not os.path.isabs(p) else p

    d = Settings()                 # defaults: the pipeline's, except the backend (on a board: pynq)
    kw = {"model": resolve(raw["model"]), "out": resolve(raw.get("out", d.out)),
          "calib": resolve(raw.get("calib")), "eval_data": resolve(raw.get("eval_data")),
          "backend": raw.get("backend", "pynq"), "board": raw.get("board"),
          "input_shape": raw.get("input_shape"), "executor": raw.get("executor", d.executor),
          "overlay": resolve(raw.get("bitstream")), "overheads": bool(raw.get("overheads", d.overheads))}
    budgets = raw.get("budgets", {"latency": d.latency_budget})
    for k, attr in BUDGET_KEYS.items():
        kw[attr] = None if budgets.get(k) is None else str(budgets[k])
    kw["latency_budget_given"] = "budgets" in raw     # the default alone relaxes when infeasible
    kw.update(raw.get("search", {}))
    allowed = {f.name for f in fields(Settings)}
    settings = Settings(**{k: v for k, v in kw.items() if k in allowed})
    raw["install"] = resolve(raw["install"])
    raw["bitstream"] = resolve(raw.get("bitstream"))
    return raw, settings


def fingerprint(raw: dict, settings) -> dict:
    """What decides the result: model, bitstream and settings hashes, and the package version."""
    from dataclasses import asdict

    from . import __version__

    model = settings.model
    if not Path(model).is_file():
        raise ConfigError(f"model not found: {model}")
    bitstream = raw.get("bitstream")
    if bitstream is None and settings.backend == "pynq":
        from .errors import HardwareError
        from .hw.boards import detect_board_name
        from .hw.overlay import find_bitstream
        board = settings.board or detect_board_name()
        try:
            bitstream = str(find_bitstream(board)) if board else None
        except HardwareError:
            bitstream = None       # the pipeline reports the missing overlay itself
    keep = {k: v for k, v in asdict(settings).items() if k not in ("out", "force", "progress")}
    return {"model": file_sha256(model),
            "bitstream": file_sha256(bitstream) if bitstream and Path(bitstream).is_file() else None,
            "settings": json_sha256(keep), "version": __version__}


def autotune(config_path: str | os.PathLike, log: Callable[[str], None] | None = None,
             force: bool = False) -> dict:
    """Run one autotune pass; returns ``{"changed": bool, "installed": path, ...}``."""
    from .pipeline import run

    log = log or (lambda m: print(f"ohq-pynq autotune: {m}", flush=True))
    raw, settings = load_config(config_path)
    install = Path(raw["install"])
    stamp = install.with_name(install.name + ".fingerprint.json")
    fp = fingerprint(raw, settings)
    old = None
    if stamp.is_file() and install.is_file():
        try:
            old = read_json(stamp, "autotune fingerprint")
        except ConfigError:
            old = None
    if old == fp and not force:
        log(f"nothing changed (model {fp['model'][:12]}, settings {fp['settings'][:12]}); "
            f"keeping {install}")
        return {"changed": False, "installed": str(install), "fingerprint": fp}
    what = "first run" if old is None else ", ".join(k for k in fp if old.get(k) != fp[k]) + " changed"
    log(f"{what}: tuning {settings.model} on {settings.backend}")
    t0 = time.perf_counter()
    settings.force = force
    summary = run(settings, log=log)
    config = Path(settings.out) / "config.json"
    data = config.read_bytes()
    atomic_write(install, lambda f: f.write(data))
    write_json(stamp, fp)
    t = summary["totals"]
    log(f"installed {install} ({time.perf_counter() - t0:.1f} s): latency "
        f"{1e3 * t['chosen']['seconds']:.3f} ms vs {1e3 * t['int8']['seconds']:.3f} ms all-int8")
    return {"changed": True, "installed": str(install), "fingerprint": fp, "summary": summary}


UNIT_NAME = "ohq-pynq-autotune.service"


def service_unit(config_path: str | os.PathLike, python: str | None = None) -> str:
    """The systemd unit text for ``config_path`` (absolute) and this Python interpreter."""
    from importlib import resources

    template = (resources.files("ohq_pynq") / "service" / UNIT_NAME).read_text(encoding="utf-8")
    return (template.replace("@PYTHON@", python or sys.executable)
            .replace("@CONFIG@", str(Path(config_path).resolve())))


def install_service(config_path: str | os.PathLike, unit_dir: str | os.PathLike = "/etc/systemd/system",
                    enable: bool = True, log: Callable[[str], None] = print) -> Path:
    """Write the unit file (atomically) and, with ``enable``, ``systemctl enable`` it."""
    import shutil
    import subprocess

    load_config(config_path)                      # refuse to install a broken config
    unit = Path(unit_dir) / UNIT_NAME
    text = service_unit(config_path)
    try:
        atomic_write(unit, lambda f: f.write(text), mode="w")
    except PermissionError:
        raise ConfigError(f"cannot write {unit}: run as root (sudo) or pass --unit-dir") from None
    log(f"wrote {unit}")
    if enable:
        if shutil.which("systemctl") is None:
            raise ConfigError("systemctl not found: enable the unit by hand, or pass --no-enable")
        for cmd in (["systemctl", "daemon-reload"], ["systemctl", "enable", UNIT_NAME]):
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode != 0:
                raise ConfigError(f"{' '.join(cmd)} failed: {p.stderr.strip() or p.stdout.strip()}")
        log(f"enabled {UNIT_NAME}: it runs at the next boot (now: systemctl start {UNIT_NAME})")
    return unit
