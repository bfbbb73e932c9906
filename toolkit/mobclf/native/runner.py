"""The native runner: ``pte_runner.cpp`` built against the ExecuTorch C++ SDK that the ``executorch`` wheel ships
(headers, ``libexecutorch.so``, XNNPACK, kernels, thread pool, ETDump; no runner binary), and run on a ``.pte``.

It measures what an app pays and Python hides: loading the program, the first inference, steady latency at one
thread, and the memory of a process that holds nothing but the runtime and the model. Its logits are compared with
the Python runtime's on every text it runs (``bench`` reports both).

    runner = build_runner()                                  # once per SDK and source; cached under $MOBCLF_CACHE
    run = run_pte(runner, Path("bundle/model.pte"), rows)    # rows: what the program takes, see program_inputs
    run.logits, run.ms, run.peak_rss_mb                      # ms: each text's model call
    cold_start_ms(runner, Path("bundle/model.pte"), rows[0], repeats=20)

An early-exit ``.pte`` (``export/early_exit.py``) runs with its rule (``exits``: bundle.json's ``early_exit`` and
the label thresholds): the runner chains its methods as the app does, and ``run.exit_layers`` says where each text
left.

Targets: ``host`` (this machine's g++ and wheel) and ``aarch64`` (Debian's ``aarch64-linux-gnu-g++`` against the
aarch64 wheel's SDK, unpacked into this environment, run under ``qemu-aarch64`` as a Cortex-A76, a common phone
core), all installed by ``android-demo/tools/install-native-tools.sh``. Not qemu's default CPU ("max"): XNNPACK
then picks INT8 kernels for features qemu 7.2 emulates wrongly, and static INT8 programs give logits ~1 off, where
every real core model tried (A53, A57, A76, Neoverse N1, A64FX) gives x86's to the bit.
The compiler flags are the ones TOOLCHAIN.md found: C++17, the SDK's c10 compatibility macros, the event tracer
(ETDump) and thread pool on, and the libraries that only register kernels or a backend linked with
``--no-as-needed`` (nothing references them by name, so the linker would drop them).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from mobclf.errors import UserError

SOURCE = Path(__file__).with_name("pte_runner.cpp")
INSTALL = "android-demo/tools/install-native-tools.sh"
REGISTERING = ["executorch_kernels_optimized", "executorch_kernels_quantized", "executorch_backend_xnnpack",
               "executorch_threadpool", "executorch_etdump"]


@dataclass(frozen=True)
class Target:
    """Where the runner is built for: its compiler, the SDK (an unpacked ``executorch`` wheel) it links against, and
    what runs its binary (nothing on the host; ``qemu-aarch64`` with the cross sysroot for ARM)."""

    name: str
    compiler: str
    sdk: Path
    launcher: tuple[str, ...] = ()


def native_cache() -> Path:
    return Path(os.environ.get("MOBCLF_CACHE", Path.home() / ".cache" / "mobclf")) / "native"


def target(name: str = "host") -> Target:
    """``host`` or ``aarch64``; a clear error when its tools are not installed."""
    if name == "host":
        import executorch

        return Target("host", "g++", Path(executorch.__path__[0]))
    if name == "aarch64":
        sdk = Path(sys.prefix) / "share" / "mobclf" / f"executorch-{version('executorch')}-aarch64" / "executorch"
        if not (sdk / "lib" / "libexecutorch.so").is_file() or shutil.which("qemu-aarch64") is None:
            raise UserError(f"the aarch64 executorch SDK or qemu-aarch64 is missing; run {INSTALL}", path=sdk)
        return Target("aarch64", "aarch64-linux-gnu-g++", sdk,
                      ("qemu-aarch64", "-cpu", "cortex-a76", "-L", "/usr/aarch64-linux-gnu"))
    raise UserError(f"unknown native target {name!r}; choose host or aarch64")


@dataclass(frozen=True)
class Runner:
    """A built runner: its binary and what launches it (``Target.launcher``)."""

    binary: Path
    launcher: tuple[str, ...] = ()

    def command(self, *args: str) -> list[str]:
        return [*self.launcher, str(self.binary), *args]


def build_runner(name: str = "host") -> Runner:
    """The runner for target ``name``, compiled once per source, compiler, SDK and flags (cached)."""
    chosen = target(name)
    if shutil.which(chosen.compiler) is None:
        raise UserError(f"{chosen.compiler} is not installed; run {INSTALL}")
    lib = chosen.sdk / "lib"
    flags = ["-std=c++17", "-O2", "-DC10_USING_CUSTOM_GENERATED_MACROS", "-DET_EVENT_TRACER_ENABLED",
             "-DET_USE_THREADPOOL", "-isystem", str(chosen.sdk / "include"),
             "-isystem", str(chosen.sdk / "include/executorch/runtime/core/portable_type/c10")]
    libraries = [f"-L{lib}", "-lexecutorch", "-Wl,--push-state,--no-as-needed",
                 *[f"-l{library}" for library in REGISTERING], "-Wl,--pop-state", f"-Wl,-rpath,{lib}"]
    key = hashlib.sha256(json.dumps([SOURCE.read_text("utf-8"), chosen.compiler, flags, libraries]).encode())
    binary = native_cache() / f"pte_runner-{chosen.name}-{key.hexdigest()[:16]}"
    if binary.is_file():
        return Runner(binary, chosen.launcher)
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_name(binary.name + f".{os.getpid()}.tmp")
    built = subprocess.run([chosen.compiler, *flags, str(SOURCE), "-o", str(partial), *libraries],
                           capture_output=True, text=True)
    if built.returncode:
        first = next((line for line in built.stderr.splitlines() if "error" in line), built.stderr.strip()[-300:])
        partial.unlink(missing_ok=True)
        raise UserError(f"building the native runner with {chosen.compiler} failed: {first}")
    os.replace(partial, binary)
    return Runner(binary, chosen.launcher)


@dataclass
class NativeRun:
    """One run of the runner over some texts."""

    load_ms: float  # loading the program and its forward method (memory-mapped)
    first_inference_ms: float  # the first text, right after loading
    ms: list[float]  # each text once, after the warm-up
    logits: np.ndarray  # [texts, labels] float32
    peak_rss_mb: float  # the runner process's VmHWM
    exit_layers: np.ndarray | None = None  # [texts], 1-based: the exit each text left at (an early-exit program)


@dataclass(frozen=True)
class ExitRule:
    """An early-exit program's rule as the runner takes it: bundle.json's ``early_exit`` and the label thresholds."""

    rule: dict
    thresholds: list[float]

    def write(self, path: Path) -> None:
        path.write_text(f"{self.rule['confidence']} {self.rule['threshold']!r}\n{' '.join(self.rule['methods'])}\n"
                        + " ".join(repr(float(value)) for value in self.thresholds) + "\n", encoding="ascii")


def _write_inputs(rows: list[tuple[torch.Tensor, torch.Tensor]], path: Path) -> None:
    with path.open("w", encoding="ascii") as inputs:
        for ids, mask in rows:
            inputs.write(" ".join(map(str, ids.flatten().tolist())) + "\t"
                         + " ".join(map(str, mask.flatten().tolist())) + "\n")


def _run(runner: Runner, pte: Path, rows: list[tuple[torch.Tensor, torch.Tensor]], options: list[str],
         exits: ExitRule | None = None) -> tuple[subprocess.CompletedProcess, float]:
    """The runner on ``rows`` (written to a temporary inputs file), chaining an early-exit program's methods by
    ``exits``; its completed process and wall time in ms."""
    with tempfile.TemporaryDirectory(prefix="mobclf-native-") as folder:
        inputs = Path(folder) / "inputs.tsv"
        _write_inputs(rows, inputs)
        if exits is not None:
            exits.write(Path(folder) / "exits.txt")
            options = [*options, "--exits", str(Path(folder) / "exits.txt")]
        start = time.perf_counter()
        done = subprocess.run(runner.command(str(pte), str(inputs), *options), capture_output=True, text=True)
        wall = (time.perf_counter() - start) * 1000
    if done.returncode:
        reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit status {done.returncode}"
        raise UserError(f"the native runner failed: {reason}", path=pte)
    return done, wall


def run_pte(runner: Runner, pte: Path, rows: list[tuple[torch.Tensor, torch.Tensor]], *, threads: int = 1,
            warmup: int = 0, etdump: Path | None = None, exits: ExitRule | None = None) -> NativeRun:
    """Every row through ``pte`` in one runner process at ``threads`` threads, after ``warmup`` warm-up runs; with
    ``etdump``, the per-operator trace written there (for ``executorch.devtools.Inspector``); with ``exits``, an
    early-exit program's methods chained by its rule."""
    options = ["--threads", str(threads), "--warmup", str(warmup)] + (["--etdump", str(etdump)] if etdump else [])
    done, _ = _run(runner, pte, rows, options, exits)
    report = json.loads(done.stdout)
    return NativeRun(report["load_ms"], report["first_inference_ms"], [text["ms"] for text in report["texts"]],
                     np.asarray([text["logits"] for text in report["texts"]], dtype=np.float32),
                     report["peak_rss_kb"] / 1024,
                     None if exits is None else np.asarray([text["exit_layer"] for text in report["texts"]]))


def cold_start_ms(runner: Runner, pte: Path, row: tuple[torch.Tensor, torch.Tensor], repeats: int,
                  exits: ExitRule | None = None) -> list[float]:
    """Whole-process cold start, ``repeats`` times: from starting the runner to its exit after the first logits of
    ``row`` (process start, dynamic linking, loading the program, one inference; an app pays all of it once)."""
    return [_run(runner, pte, [row], ["--threads", "1"], exits)[1] for _ in range(repeats)]


def operator_profile(runner: Runner, pte: Path, rows: list[tuple[torch.Tensor, torch.Tensor]]) -> dict:
    """Where a program's time goes, per text: the runner with ETDump on over ``rows``, read by ExecuTorch's
    Inspector. ``execute_ms``: the whole method; ``xnnpack_ms``: its XNNPACK delegate calls; ``portable_ms``: the
    operators left on portable kernels; ``operators``: each kind of operator (XNNPACK's own names, e.g. "Fully
    Connected (NC, QS8, QC8W) GEMM", or the portable kernel's, e.g. "native_layer_norm") with its median ms per
    text, slowest first. Timings are the traced ones (tracing adds a little to each operator)."""
    from executorch.devtools import Inspector

    with tempfile.TemporaryDirectory(prefix="mobclf-etdump-") as folder:
        etdump = Path(folder) / "profile.etdp"
        run_pte(runner, pte, rows, etdump=etdump)
        events = [event for block in Inspector(etdump_path=str(etdump)).event_blocks if block.name == "Execute"
                  for event in block.events if event.perf_data is not None]
    totals = {"Method::execute": 0.0, "DELEGATE_CALL": 0.0, "OPERATOR_CALL": 0.0}
    operators: dict[tuple[str, str], float] = {}
    for event in events:
        ms = float(np.median(event.perf_data.raw))  # per run of the method: the median (the first is a cold start)
        if event.name in totals:
            totals[event.name] += ms
        elif event.is_delegated_op or event.name.startswith("native_call_"):
            key = ((re.sub(r" #\d+$", "", event.name), "XNNPACK") if event.is_delegated_op else
                   (re.sub(r"^native_call_|\.\w*out$", "", event.name), "portable"))
            operators[key] = operators.get(key, 0.0) + ms
    return {"execute_ms": round(totals["Method::execute"], 4), "xnnpack_ms": round(totals["DELEGATE_CALL"], 4),
            "portable_ms": round(totals["OPERATOR_CALL"], 4), "texts": len(rows),
            "operators": [{"operator": name, "runs_on": backend, "ms": round(ms, 4)}
                          for (name, backend), ms in sorted(operators.items(), key=lambda item: -item[1])]}
