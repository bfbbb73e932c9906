from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mobclf.cli import main
from mobclf.data.dataset import load_dataset
from mobclf.data.demo_corpus import generate_demo_corpus
from mobclf.native.jvm import ORG_JSON, build_device_cli


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory):
    """Teacher-output caches of the tests go to a temporary directory, never the user's ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MOBCLF_CACHE", str(tmp_path_factory.mktemp("mobclf-cache")))
    yield
    mp.undo()


TEACHER = ["--layers", "1", "--hidden", "48", "--heads", "4", "--max-length", "40", "--batch-size", "32",
           "--lr", "2e-3", "--epochs", "4"]
STUDENTS = {
    "textcnn": ["--embedding-dim", "32", "--filters", "16", "--epochs", "6", "--lr", "3e-3"],
    "tinybert": ["--layers", "1", "--hidden", "32", "--heads", "2", "--intermediate", "64",
                 "--epochs", "6", "--lr", "2e-3"],
}


def chance_micro_f1(data: Path) -> float:
    """Micro-F1 of always predicting the most frequent label (a floor any learned model must beat)."""
    targets = load_dataset(data).targets("test")
    hits = targets[:, 0].sum()  # labels are ranked by frequency
    return float(2 * hits / (len(targets) + targets.sum()))


def run(*args):
    """Invoke the mobclf CLI with any arguments turned into strings."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="session")
def students(tmp_path_factory):
    """A dataset, a 1-layer teacher and two students distilled from it (TextCNN, 1-layer TinyBERT), all tiny."""
    root = tmp_path_factory.mktemp("quantize")
    generate_demo_corpus(root / "news.jsonl", n_items=600, seed=11)
    assert run("data", "prepare", root / "news.jsonl", "--out", root / "data").exit_code == 0
    assert run("train-teacher", "--data", root / "data", "--out", root / "teacher", *TEACHER).exit_code == 0
    for name, options in STUDENTS.items():
        result = run("distill", name, "--teacher", root / "teacher", "--data", root / "data", "--out", root / name,
                     "--batch-size", "32", *options)
        assert result.exit_code == 0, result.output
    return root


@pytest.fixture(scope="session")
def exits(students):
    """A 3-layer TinyBERT distilled from the tiny teacher, and its early-exit version (unlabelled texts too)."""
    result = run("distill", "tinybert", "--teacher", students / "teacher", "--data", students / "data", "--out",
                 students / "tinybert3", "--layers", "3", "--hidden", "32", "--heads", "2", "--intermediate", "64",
                 "--epochs", "6", "--lr", "2e-3", "--batch-size", "32")
    assert result.exit_code == 0, result.output
    generate_demo_corpus(students / "unlabeled.jsonl", n_items=200, seed=5)  # its labels go unread
    result = run("early-exit", "--from", students / "tinybert3", "--data", students / "data", "--out",
                 students / "early-exit", "--unlabeled", students / "unlabeled.jsonl", "--epochs", "30", "--lr",
                 "5e-3", "--keep", "0.98")
    assert result.exit_code == 0, result.output
    return students


@pytest.fixture(scope="session")
def device_tokenizers(tmp_path_factory):
    """Saved char, jieba and wordpiece tokenizers built on real training texts, the parity texts as JSONL
    (``texts.jsonl``, one ``{"text": ...}`` per line) and Python's ids for them: ``{kind: (directory, ids)}``
    plus ``"texts"``. Ports (Java, JavaScript) must reproduce the ids exactly."""
    from device_texts import device_texts, training_texts, write_jsonl
    from mobclf.text import build_tokenizer

    root = tmp_path_factory.mktemp("device-tokenizers")
    corpus = training_texts("thucnews", 3000) + training_texts("reuters21578_modapte", 500)
    texts = device_texts()
    write_jsonl(root / "texts.jsonl", [{"text": text} for text in texts])
    options = {"char": {"max_length": 64, "add_special_tokens": False},
               "jieba": {"max_length": 128, "add_special_tokens": False},
               "wordpiece": {"max_length": 128, "add_special_tokens": True, "vocab_size": 8000}}
    built = {"texts": root / "texts.jsonl"}
    for kind, kind_options in options.items():
        tokenizer = build_tokenizer(kind, corpus, **kind_options)
        tokenizer.save(root / kind)
        built[kind] = (root / kind, [tokenizer.encode(text).ids for text in texts])
    return built


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """The README's main job, run once as a user would (the shipped demo recipe at its full size, in a fresh
    process): ``(work directory, the process's result)``."""
    work = tmp_path_factory.mktemp("demo-run") / "demo"
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([str(Path(sys.executable).with_name("mobclf")), "run", "export_recipes/demo.yaml"], cwd=root,
                          capture_output=True, text=True, timeout=900, env={**os.environ, "MOBCLF_WORK": str(work)})
    assert done.returncode == 0, done.stderr[-3000:]
    return work, done


@pytest.fixture(scope="session")
def device_cli():
    """A function running ``DeviceCli COMMAND DIR INPUT`` on the JVM and returning its output lines."""
    classes = build_device_cli()

    def device_cli(command: str, directory: Path, input_file: Path) -> list[str]:
        result = subprocess.run(["java", "-cp", f"{classes}:{ORG_JSON}", "org.mobclf.core.DeviceCli", command,
                                 str(directory), str(input_file)], capture_output=True, text=True, encoding="utf-8")
        assert result.returncode == 0, result.stderr
        return result.stdout.split("\n")[:-1]

    return device_cli
