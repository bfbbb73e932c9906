"""Scale (issue 14): the pipeline on generated corpora shaped like a mobile news app's (605 labels with a long tail,
~1.6 labels per article, ~190 characters each), at several sizes and process counts: `data prepare` → a small
teacher (1 epoch) → its outputs for distillation (cached) → a TextCNN student with a FitNets hint (1 epoch).

Each stage runs as its own `mobclf` command (under torchrun for N > 1 processes) and is measured from outside: wall
time and the peak RSS of its largest process (`os.wait4`, which covers the processes it waited for); teacher-cache
size on disk. Each stage's log lines (with their times: where the time went) are kept beside its outputs in the
work folder. Run it alone on the machine: timings under contention mean nothing.

    python benchmarks/scale.py --sizes 50000,100000,200000 --processes 1,2
    python benchmarks/scale.py --sizes 200000 --processes 2 --no-threads     # one more run; the others are kept

Results: benchmarks/results/scale.json and scale.md (each run with its machine, the load average after it and the
commit it measured; a later run of the same size and processes replaces an earlier one, others are kept).
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

from mobclf.bench.report import machine
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
    with log.open("w+", encoding="utf-8") as messages:
        start = time.perf_counter()
        process = subprocess.Popen([*launcher, str(BIN / "mobclf"), *args], cwd=cwd, env=environment,
                                   stdout=subprocess.DEVNULL, stderr=messages)
        _, status, usage = os.wait4(process.pid, 0)  # its own rusage: the peak of it and what it waited for
        seconds = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status):
            messages.seek(0)
            raise click.ClickException(f"{' '.join(args[:2])} failed:\n{messages.read()[-2000:]}")
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024)}


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


def commit() -> str:
    """The checkout's commit these runs measured (``+`` when it had uncommitted changes)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True).stdout.strip()
    return git("rev-parse", "--short", "HEAD") + ("+" if git("status", "--porcelain", "--", "../toolkit") else "")


def _key(run: dict) -> tuple:
    return run["documents"], run["processes"], run["threads"]


def markdown(results: list[dict]) -> str:
    """Every run's stages; the speed-up of 2 processes and of 2 threads over 1 × 1 at each size; the peak RSS of
    each stage at every size (1 × 1) against the smallest size's."""
    lines = ["| documents | processes × threads | stage | wall (s) | documents/s | peak RSS (MB) "
             "| teacher cache (MB) | code |",
             "|---:|---|---|---:|---:|---:|---:|---|"]
    for result in results:
        for stage, figures in result["stages"].items():
            lines.append(f"| {result['documents']:,} | {result['processes']} × {result['threads']} | {stage} | "
                         f"{figures['seconds']} | {figures['documents_per_s']} | {figures['peak_rss_mb']} | "
                         f"{result['teacher_cache_mb'] if stage == 'distill textcnn' else ''} | "
                         f"{result.get('commit', '?')} |")
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
def main(sizes: str, process_counts: str, compare_threads: bool, work: Path, results: Path) -> None:
    runs = []
    counts = [int(count) for count in process_counts.split(",")]
    for size in (int(size) for size in sizes.split(",")):
        for processes in counts:
            runs.append(one_size(size, processes, 1, work))
        if compare_threads and max(counts) > 1:
            runs.append(one_size(size, 1, max(counts), work))
    for run in runs:
        run.update(machine=machine(), load_average_after=[round(load, 2) for load in os.getloadavg()],
                   commit=commit())
    results.mkdir(parents=True, exist_ok=True)
    saved = results / "scale.json"
    earlier = json.loads(saved.read_text("utf-8"))["runs"] if saved.is_file() else []
    runs = sorted({**{_key(run): run for run in earlier}, **{_key(run): run for run in runs}}.values(), key=_key)
    saved.write_text(json.dumps({"runs": runs}, indent=2) + "\n", "utf-8")
    (results / "scale.md").write_text(markdown(runs), "utf-8")
    click.echo(markdown(runs))


if __name__ == "__main__":
    main()
