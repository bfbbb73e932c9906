"""Scale (issue 14): the pipeline on generated corpora shaped like a mobile news app's (605 labels with a long tail,
~1.6 labels per article, ~190 characters each), at several sizes and process counts: `data prepare` → a small
teacher (1 epoch) → its outputs for distillation (cached) → a TextCNN student with a FitNets hint (1 epoch).

Each stage runs as its own `mobclf` command (under torchrun for N > 1 processes) and is measured from outside: wall
time and the peak RSS of its largest process (`os.wait4`, which covers the processes it waited for); teacher-cache
size on disk. Each stage's log lines (with their times: where the time went) are kept beside its outputs in the
work folder. Run it alone on the machine: timings under contention mean nothing.

    python benchmarks/scale.py --sizes 50000,100000,200000 --processes 1,2
    python benchmarks/scale.py --sizes 200000 --processes 2 --no-threads     # one more run; the others are kept
    python benchmarks/scale.py --ceiling-only       # what 2 processes can give on this machine at best

Results: benchmarks/results/scale.json and scale.md (each run with its machine, the load average after it, the share
of the CPUs other processes took during each stage and the commit it measured; a later run of the same size and
processes replaces an earlier one, others are kept; every ceiling measured is kept).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import click
from common import HERE, WORK_ROOT

from mobclf.bench.measure import OtherProcesses
from mobclf.bench.report import machine, provenance
from mobclf.data.demo_corpus import generate_article_corpus

BIN = Path(sys.executable).parent
TEACHER = ["--layers", "2", "--hidden", "128", "--heads", "4", "--intermediate", "256", "--max-length", "128",
           "--epochs", "1", "--batch-size", "64", "--lr", "1e-3", "--device", "cpu"]
STUDENT = ["--loss", "soft_kd=1", "--loss", "hard_bce=1", "--loss", "hint_mse=1", "--epochs", "1", "--batch-size", "64",
           "--embedding-dim", "128", "--filters", "128", "--device", "cpu"]


def measured(args: list[str], cwd: Path, log: Path, processes: int = 1, threads: int = 1) -> dict:
    """Run one mobclf command, its messages (time-stamped log lines) written to ``log``; its wall time and the peak
    RSS of its largest process (MB)."""
    launcher = [str(BIN / "torchrun"), "--nproc_per_node", str(processes)] if processes > 1 else []
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with log.open("w+", encoding="utf-8") as messages, OtherProcesses() as others:
        start = time.perf_counter()
        process = subprocess.Popen([*launcher, str(BIN / "mobclf"), *args], cwd=cwd, env=environment,
                                   stdout=subprocess.DEVNULL, stderr=messages)
        _, status, usage = os.wait4(process.pid, 0)  # its own rusage: the peak of it and what it waited for
        seconds = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status):
            messages.seek(0)
            raise click.ClickException(f"{' '.join(args[:2])} failed:\n{messages.read()[-2000:]}")
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024),
            "others_cpu_share": others.cpu_share}


# one thread of matmuls shaped like the teacher's, as often as it can for the given seconds, from a common start
PAIR_WORK = """
import sys, time, torch
torch.set_num_threads(1)
a, b = torch.randn(6400, 128), torch.randn(128, 512)
while time.time() < float(sys.argv[1]):
    time.sleep(0.001)
start, count = time.perf_counter(), 0
while time.perf_counter() - start < float(sys.argv[2]):
    (a @ b).relu_().sum()
    count += 1
print(count / (time.perf_counter() - start))
"""


def cpu_ceiling(rounds: int = 3, seconds: float = 10.0) -> dict:
    """What two processes can give on this machine at best: two copies of a 1-thread matmul loop that never talk
    to each other, against one alone (a ratio, per round). No 2 × 1 run can beat it; on a VM whose vCPUs share
    physical cores with other guests it is well below 2."""
    def together(count: int) -> float:
        start = str(time.time() + 8)  # after torch is imported in each
        processes = [subprocess.Popen([sys.executable, "-c", PAIR_WORK, start, str(seconds)], stdout=subprocess.PIPE,
                                      text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}) for _ in range(count)]
        return sum(float(process.communicate()[0]) for process in processes)

    load = round(os.getloadavg()[0], 2)
    ratios = [round(together(2) / together(1), 2) for _ in range(rounds)]
    return {"date": provenance()["date"], "load_average_before": load, "ratios": ratios,
            "median": sorted(ratios)[len(ratios) // 2]}


def one_size(size: int, processes: int, threads: int, work: Path) -> dict:
    """Every stage at ``size`` documents on ``processes`` × ``threads``."""
    folder = work / f"{size}-{processes}x{threads}"
    folder.mkdir(parents=True, exist_ok=True)
    corpus = work / f"articles-{size}.jsonl"
    if not corpus.is_file():
        generate_article_corpus(corpus, size, seed=1)
    cache = folder / "cache"
    shutil.rmtree(cache, ignore_errors=True)  # this benchmark's own: its size is one run's
    os.environ["MOBCLF_CACHE"] = str(cache)
    stages = {"data prepare": (["data", "prepare", str(corpus), "--out", "data", "--force"], 1),
              "train-teacher": (["train-teacher", "--data", "data", "--out", "teacher", *TEACHER, "--force"],
                                processes),
              "distill textcnn": (["distill", "textcnn", "--teacher", "teacher", "--data", "data", "--out",
                                   "student", *STUDENT, "--force"], processes)}
    result = {"documents": size, "processes": processes, "threads": threads, "stages": {}}
    for name, (args, count) in stages.items():
        click.echo(f"{size:,} documents, {count} × {threads}: {name} ...", err=True)
        figures = measured(args, folder, folder / f"{name.replace(' ', '-')}.log", count, threads)
        figures["documents_per_s"] = round(size / figures["seconds"], 1)
        result["stages"][name] = figures
    result["teacher_cache_mb"] = round(sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) / 1e6, 1)
    return result


def _key(run: dict) -> tuple:
    return run["documents"], run["processes"], run["threads"]


def markdown(results: list[dict], ceilings: list[dict]) -> str:
    """Every run's stages; the speed-up of 2 processes and of 2 threads over 1 × 1 at each size, and the machine's
    ceiling for it; the peak RSS of each stage at every size against the smallest size's."""
    lines = ["| documents | processes × threads | stage | wall (s) | documents/s | peak RSS (MB) "
             "| teacher cache (MB) | others' CPU | code |",
             "|---:|---|---|---:|---:|---:|---:|---:|---|"]
    for result in results:
        for stage, figures in result["stages"].items():
            others = figures.get("others_cpu_share")
            lines.append(f"| {result['documents']:,} | {result['processes']} × {result['threads']} | {stage} | "
                         f"{figures['seconds']} | {figures['documents_per_s']} | {figures['peak_rss_mb']} | "
                         f"{result['teacher_cache_mb'] if stage == 'distill textcnn' else ''} | "
                         f"{'' if others is None else f'{others:.0%}'} | {result.get('commit', '?')} |")
    runs = {_key(result): result for result in results}
    sizes = sorted({result["documents"] for result in results})
    stages = list(results[0]["stages"]) if results else []
    lines += ["", "Speed-up over 1 process × 1 thread (documents/s):", "",
              "| documents | stage | 2 processes × 1 thread | 1 process × 2 threads |", "|---:|---|---:|---:|"]
    for size in sizes:
        for stage in stages[1:]:  # data prepare is one process whatever the others run on
            base = runs.get((size, 1, 1))
            if base is None:
                continue
            speed = base["stages"][stage]["documents_per_s"]
            ratios = [f"{runs[key]['stages'][stage]['documents_per_s'] / speed:.2f}×" if key in runs else "-"
                      for key in ((size, 2, 1), (size, 1, 2))]
            lines.append(f"| {size:,} | {stage} | {ratios[0]} | {ratios[1]} |")
    if ceilings:
        lines += ["", "The machine's ceiling for 2 processes: two 1-thread matmul loops that never communicate, "
                  "against one alone (`cpu_ceiling`; no 2 × 1 run can do better):", "",
                  "| measured | load average before | ratio per round | median |", "|---|---:|---|---:|"]
        lines += [f"| {ceiling['date']} | {ceiling['load_average_before']} | "
                  f"{', '.join(f'{ratio:.2f}×' for ratio in ceiling['ratios'])} | {ceiling['median']:.2f}× |"
                  for ceiling in ceilings]
    for processes, threads in sorted({(result["processes"], result["threads"]) for result in results}):
        measured = [size for size in sizes if (size, processes, threads) in runs]
        if len(measured) < 2:
            continue
        lines += ["", f"Peak RSS at {processes} × {threads} (MB) by size, and the largest size's over the smallest's:",
                  "", "| stage | " + " | ".join(f"{size:,}" for size in measured) + " | ratio |",
                  "|---|" + "---:|" * (len(measured) + 1)]
        for stage in stages:
            peaks = [runs[(size, processes, threads)]["stages"][stage]["peak_rss_mb"] for size in measured]
            lines.append(f"| {stage} | " + " | ".join(f"{peak:,}" for peak in peaks)
                         + f" | {peaks[-1] / peaks[0]:.2f} |")
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--sizes", default="50000,100000,200000", show_default=True)
@click.option("--processes", "process_counts", default="1,2", show_default=True,
              help="Process counts to run each size with (1 thread each).")
@click.option("--threads/--no-threads", "compare_threads", default=True, show_default=True,
              help="Also run 1 process × as many threads as the most processes, to compare the two.")
@click.option("--work", type=click.Path(path_type=Path), default=WORK_ROOT / "scale", show_default=True)
@click.option("--results", type=click.Path(path_type=Path), default=HERE / "results", show_default=True)
@click.option("--ceiling/--no-ceiling", default=True, show_default=True,
              help="Measure the machine's ceiling for 2 processes first (about a minute).")
@click.option("--ceiling-only", is_flag=True, help="Measure the ceiling and run nothing else.")
def main(sizes: str, process_counts: str, compare_threads: bool, work: Path, results: Path, ceiling: bool,
         ceiling_only: bool) -> None:
    saved = results / "scale.json"
    earlier = json.loads(saved.read_text("utf-8")) if saved.is_file() else {}
    ceilings = earlier.get("ceilings", []) + ([cpu_ceiling()] if ceiling or ceiling_only else [])
    runs = []
    counts = [int(count) for count in process_counts.split(",")]
    for size in [] if ceiling_only else [int(size) for size in sizes.split(",")]:
        for processes in counts:
            runs.append(one_size(size, processes, 1, work))
        if compare_threads and max(counts) > 1:
            runs.append(one_size(size, 1, max(counts), work))
    measured_with = {"machine": machine(), "load_average_after": [round(load, 2) for load in os.getloadavg()],
                     "commit": provenance()["commit"]}
    for run in runs:
        run.update(measured_with)
    results.mkdir(parents=True, exist_ok=True)
    runs = sorted({**{_key(run): run for run in earlier.get("runs", [])}, **{_key(run): run for run in runs}}.values(),
                  key=_key)
    saved.write_text(json.dumps({"runs": runs, "ceilings": ceilings}, indent=2) + "\n", "utf-8")
    (results / "scale.md").write_text(markdown(runs, ceilings), "utf-8")
    click.echo(markdown(runs, ceilings))


if __name__ == "__main__":
    main()
