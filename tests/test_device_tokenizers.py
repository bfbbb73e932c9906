"""The device tokenizers and post-processing against Python: the phone's Java classes (android-demo/app, package
org.mobclf.core, compiled and run on the JVM) and the browser demo's JavaScript (android-demo/web, run in Node).

- Tokenizer parity: both ports give exactly Python's ids for 6,000 real texts from ../shared/data and the tricky
  cases of device_texts.py, and for every code point of Unicode planes 0-3 and 14, for the char, jieba and
  wordpiece tokenizers.
- Replay: a bundle from ``mobclf export --target android``, with ids from the JVM tokenizer run through the
  ``.pte`` in the ExecuTorch Python runtime and labels decided by the Java post-processing, predicts exactly the
  labels mobclf's own (eager) prediction gives.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import STUDENTS, run
from device_texts import write_jsonl
from bundles import assert_java_ids_through_the_pte_give_mobclf_labels

from mobclf.native.jvm import ANDROID_DEMO
from mobclf.text import load_tokenizer

WEB = ANDROID_DEMO / "web"
INSTALL_HINT = "run android-demo/tools/install-test-tools.sh"
KINDS = ("char", "jieba", "wordpiece")


def port_ids(request, port: str, directory: Path, texts_file: Path) -> list[list[int]]:
    """The ids the ``port`` ("java" or "javascript") gives for each ``{"text": ...}`` line of ``texts_file``."""
    if port == "java":
        lines = request.getfixturevalue("device_cli")("tokenize", directory, texts_file)
    else:
        node = shutil.which("node")
        assert node and (WEB / "node_modules").is_dir(), f"node and the web demo's npm packages: {INSTALL_HINT}"
        result = subprocess.run([node, WEB / "tokenize-cli.mjs", directory, texts_file], capture_output=True,
                                text=True, encoding="utf-8")
        assert result.returncode == 0, result.stderr
        lines = result.stdout.split("\n")[:-1]
    return [[int(token) for token in line.split()] for line in lines]


def assert_same_ids(texts: list[str], python_ids: list[list[int]], port_ids: list[list[int]]):
    assert len(port_ids) == len(python_ids) == len(texts)
    differing = [(text[:60], ours, theirs) for text, ours, theirs in zip(texts, python_ids, port_ids)
                 if ours != theirs]
    report = "\n".join(f"{text!r}\n  python {ours[:30]}\n  port   {theirs[:30]}" for text, ours, theirs in differing[:5])
    assert not differing, f"{len(differing)} of {len(texts)} texts differ:\n{report}"


@pytest.mark.parametrize("port", ["java", "javascript"])
@pytest.mark.parametrize("kind", KINDS)
def test_ports_give_python_ids_for_real_and_tricky_texts(request, device_tokenizers, port, kind):
    directory, python_ids = device_tokenizers[kind]
    texts = [json.loads(line)["text"] for line in device_tokenizers["texts"].read_text("utf-8").splitlines()]
    assert len(texts) >= 6000
    ids = port_ids(request, port, directory, device_tokenizers["texts"])
    assert_same_ids(texts, python_ids, ids)
    assert max(map(len, ids)) == load_tokenizer(directory).max_length  # truncation was exercised


@pytest.fixture(scope="module")
def code_point_texts(device_tokenizers, tmp_path_factory):
    """Every code point of planes 0-3 and 14 (surrogates aside), 32 to a text, each followed by "a" and a
    space, with the three tokenizers allowed 512 tokens: ``(texts_file, texts, {kind: (directory, ids)})``."""
    root = tmp_path_factory.mktemp("code-points")
    points = [cp for cp in [*range(0x40000), *range(0xE0000, 0xE1000)] if not 0xD800 <= cp <= 0xDFFF]
    texts = ["".join(chr(cp) + "a " for cp in points[start:start + 32]) for start in range(0, len(points), 32)]
    texts_file = root / "texts.jsonl"
    write_jsonl(texts_file, [{"text": text} for text in texts])
    tokenizers = {}
    for kind in KINDS:
        directory = root / kind
        shutil.copytree(device_tokenizers[kind][0], directory)
        spec = json.loads((directory / "tokenizer.json").read_text("utf-8")) | {"max_length": 512}
        (directory / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
        tokenizer = load_tokenizer(directory)
        tokenizers[kind] = (directory, [tokenizer.encode(text).ids for text in texts])
    return texts_file, texts, tokenizers


@pytest.mark.parametrize("port", ["java", "javascript"])
@pytest.mark.parametrize("kind", KINDS)
def test_ports_give_python_ids_for_every_code_point(request, code_point_texts, port, kind):
    """Character classes (punctuation, control, whitespace, marks, CJK) are where ports drift: the JVM's and the
    browser's Unicode tables are newer than tokenizers'; android-demo/tools/gen_bert_unicode.py holds the latter."""
    texts_file, texts, tokenizers = code_point_texts
    directory, python_ids = tokenizers[kind]
    assert_same_ids(texts, python_ids, port_ids(request, port, directory, texts_file))


def test_generated_unicode_tables_match_the_installed_tokenizers():
    """BertUnicode.java and bert-unicode.js are read off HF tokenizers; an upgrade that changes them must
    regenerate them."""
    result = subprocess.run([sys.executable, ANDROID_DEMO / "tools" / "gen_bert_unicode.py", "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_java_errors_name_the_file_and_the_fix(tmp_path, device_tokenizers, device_cli):
    broken = tmp_path / "tokenizer"
    shutil.copytree(device_tokenizers["char"][0], broken)
    (broken / "vocab.txt").write_text("[PAD]\n[UNK]\n\n[CLS]\n", encoding="utf-8")
    texts = tmp_path / "texts.jsonl"
    texts.write_text('{"text": "a"}\n', encoding="utf-8")
    with pytest.raises(AssertionError, match=r"vocab\.txt:3: empty line in the vocabulary"):
        device_cli("tokenize", broken, texts)
    with pytest.raises(AssertionError, match=r"no bundle\.json; export one with `mobclf export --target android`"):
        device_cli("encode", tmp_path, texts)
    (tmp_path / "bundle.json").write_text('{"schema_version": 2}', encoding="utf-8")
    with pytest.raises(AssertionError, match=r"bundle schema 2, this app reads 1; re-export"):
        device_cli("encode", tmp_path, texts)


@pytest.fixture(scope="module")
def android_bundles(students, tmp_path_factory):
    """fp32 Android bundles of the tiny students: TextCNN on chars, jieba words and WordPiece, and TinyBERT."""
    root = tmp_path_factory.mktemp("android-bundles")
    models = {"textcnn-char": students / "textcnn", "tinybert": students / "tinybert"}
    for kind in ("jieba", "wordpiece"):
        models[f"textcnn-{kind}"] = root / f"textcnn-{kind}"
        result = run("distill", "textcnn", "--teacher", students / "teacher", "--data", students / "data",
                     "--out", models[f"textcnn-{kind}"], "--batch-size", "32", *STUDENTS["textcnn"],
                     "--tokenizer", kind, *(["--vocab-size", "600"] if kind == "wordpiece" else []))
        assert result.exit_code == 0, result.output
    bundles = {}
    for name, model in models.items():
        bundles[name] = (model, root / f"bundle-{name}")
        result = run("export", "--from", model, "--target", "android", "--out", bundles[name][1],
                     "--parity-texts", "20")
        assert result.exit_code == 0, result.output
    return bundles


TOKENIZER_OF = {"textcnn-char": "char", "textcnn-jieba": "jieba", "textcnn-wordpiece": "wordpiece",
                "tinybert": "char"}  # TinyBERT reads its teacher's tokens: chars in conftest's teacher


@pytest.mark.parametrize("name", list(TOKENIZER_OF))
def test_jvm_ids_through_the_pte_give_mobclf_labels(students, android_bundles, device_cli, tmp_path, name):
    model_dir, bundle_dir = android_bundles[name]
    bundle = json.loads((bundle_dir / "bundle.json").read_text("utf-8"))
    assert bundle["tokenizer"]["type"] == TOKENIZER_OF[name]
    assert_java_ids_through_the_pte_give_mobclf_labels(model_dir, bundle_dir, students / "data", device_cli, tmp_path)


def test_java_post_processing_of_multi_and_single_label_bundles(android_bundles, device_cli, tmp_path):
    """Multi-label: every label at or above its threshold, the most probable one when none passes (as
    ``predict_labels``); single-label (decision "argmax"): the most probable label only."""
    bundle_dir = tmp_path / "bundle"
    shutil.copytree(android_bundles["textcnn-char"][1], bundle_dir)
    bundle = json.loads((bundle_dir / "bundle.json").read_text("utf-8"))
    labels, thresholds = bundle["labels"], np.asarray(bundle["thresholds"])
    logit_at = np.log(thresholds / (1 - thresholds))  # sigmoid(logit_at) == threshold
    rows = [logit_at + 0.01, logit_at - 0.01, np.where(np.arange(len(labels)) == 2, logit_at + 1, logit_at - 1)]
    logits_file = tmp_path / "logits.jsonl"
    write_jsonl(logits_file, [{"logits": row.tolist()} for row in rows])
    most_probable = labels[int(np.argmax(1 / (1 + np.exp(-rows[1]))))]
    assert [sorted(json.loads(line)) for line in device_cli("classify", bundle_dir, logits_file)] == [
        sorted(labels), [most_probable], [labels[2]]]

    for activation in ("sigmoid", "softmax"):  # mobclf writes sigmoid + argmax for single-label data
        bundle["output"] |= {"activation": activation, "decision": "argmax"}
        (bundle_dir / "bundle.json").write_text(json.dumps(bundle), encoding="utf-8")
        assert [json.loads(line) for line in device_cli("classify", bundle_dir, logits_file)] == [
            [labels[int(np.argmax(row))]] for row in rows]
