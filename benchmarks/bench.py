"""`mobclf bench` on the benchmark artifacts (issue 5): the teacher fp32 eager baseline, the students fp32, pruned
and INT8 (`.pte` in ExecuTorch, `.onnx` in onnxruntime), and TF-IDF, on the test split.

Run `tinybert_distill.py` and `compress.py` for the data set first (this reuses their work directory); run on an
otherwise idle machine, since latency is measured.

    python benchmarks/bench.py --dataset thucnews
    python benchmarks/bench.py --dataset reuters

Results: benchmarks/results/<dataset>-bench/ (report.json, report.md, report.html and the plots).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import click
from common import WORK_ROOT

from mobclf.stages import BENCH, BenchConfig

TEACHERS = {"thucnews": "teacher-bert-base", "reuters": "teacher-6x512-scratch"}
VARIANTS = ["textcnn-kd", "textcnn-kd-pruned", "textcnn-kd-pruned-int8-pte", "textcnn-kd-pruned-int8-onnx",
            "tinybert4-pred", "tinybert4-pred-pruned", "tinybert4-pred-pruned-int8-pte",
            "tinybert4-pred-pruned-int8-onnx"]
REPORT_FILES = ("report.json", "report.md", "report.html", "f1_vs_latency.png", "f1_vs_size.png", "per_label_f1.png")


@click.command()
@click.option("--dataset", "name", type=click.Choice(sorted(TEACHERS)), required=True)
@click.option("--work", type=click.Path(path_type=Path), help="[default: ~/.cache/mobclf/benchmarks/<dataset>]")
@click.option("--results", default=Path(__file__).parent / "results", type=click.Path(path_type=Path),
              show_default=True)
@click.option("--latency-texts", default=200, show_default=True)
def main(name: str, work: Path | None, results: Path, latency_texts: int) -> None:
    work = work or WORK_ROOT / name
    out = work / "bench-report"
    models = [work / TEACHERS[name], *(work / variant for variant in VARIANTS)]
    BENCH.call(BenchConfig(latency_texts=latency_texts, name=name), {"model": models, "data": work / "dataset"}, out,
               force=True)
    target = results / f"{name}-bench"
    target.mkdir(parents=True, exist_ok=True)
    for file in REPORT_FILES:
        shutil.copyfile(out / file, target / file)
    click.echo((target / "report.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
