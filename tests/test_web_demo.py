"""The browser demo (android-demo/web), run in headless Chromium with a phone viewport, shows the labels mobclf
predicts for the same bundle, and for a cascade the model mobclf's rule picks. (Its JavaScript tokenizers are
proven in test_device_tokenizers.py.)

Needs Node, Debian ``chromium`` and the page's npm packages: run ``android-demo/tools/install-browser.sh`` first.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from mobclf.cascade import confidence

WEB = Path(__file__).resolve().parents[1] / "android-demo" / "web"
INSTALL = "run android-demo/tools/install-browser.sh (it installs Debian chromium and the page's npm packages)"
CHROMIUM = Path("/usr/bin/chromium")


def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.fail(f"node is not installed; {INSTALL}")
    return found


def node_module(name: str) -> Path:
    path = WEB / "node_modules" / name
    if not path.is_dir():
        pytest.fail(f"{path} is missing; {INSTALL}")
    return path


PLAIN = {"TextCNN": "textcnn", "TinyBERT": "tinybert"}  # model switcher name → bundle directory
CASCADE = "Cascade"
EARLY_EXIT = "Early exit"
PAGE_FILES = ("index.html", "app.js", "classifier.js", "tokenizers.js", "bert-unicode.js", "style.css")


@pytest.fixture(scope="module")
def web_server(tmp_path_factory):
    """A copy of the page in a temporary ``site`` directory, served on 127.0.0.1 (a free port) while this module's
    tests run, with onnxruntime-web's dist files from android-demo/web/node_modules linked in."""
    import functools
    import http.server
    import threading

    site = tmp_path_factory.mktemp("web") / "site"
    (site / "node_modules" / "onnxruntime-web").mkdir(parents=True)
    for name in PAGE_FILES:
        shutil.copyfile(WEB / name, site / name)
    (site / "node_modules" / "onnxruntime-web" / "dist").symlink_to(node_module("onnxruntime-web") / "dist")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                          ".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm"}

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def python_labels(bundle_dir: Path, texts: list[str]) -> tuple[list[list[str]], object]:
    """What mobclf predicts with the bundle's own .onnx, tokenizer and thresholds (as the export's parity check)."""
    import numpy as np

    from mobclf.export.onnx import OnnxRunner
    from mobclf.text import load_tokenizer
    from mobclf.train.classifier import predict_probs
    from mobclf.train.thresholds import predict_labels

    bundle = json.loads((bundle_dir / "bundle.json").read_text("utf-8"))
    runner = OnnxRunner(bundle_dir / bundle["model"]["files"]["onnx"]["file"], bundle["inputs"]["min_length"])
    probs = predict_probs(runner, load_tokenizer(bundle_dir / "tokenizer"), texts, description="python")
    predicted = predict_labels(probs, np.asarray(bundle["thresholds"]), bundle["output"]["decision"] == "argmax")
    return [[bundle["labels"][i] for i in np.flatnonzero(row)] for row in predicted], probs


def splitting_threshold(confidences: np.ndarray) -> float:
    """A threshold that escalates at least two of ``confidences`` and keeps at least two: the middle of the widest
    gap between them, so that the browser's float32 probabilities fall on the same side as Python's."""
    ordered = np.sort(confidences)
    gap = 1 + int(np.argmax(np.diff(ordered[1:-1])))
    assert ordered[gap + 1] - ordered[gap] > 1e-3, ordered
    return float((ordered[gap] + ordered[gap + 1]) / 2)


class PageRun(NamedTuple):
    texts: list[str]
    shown: dict  # browser-check.mjs's JSON
    cascade: object  # the Python CascadePredictor, with the served threshold
    answers: object  # its Answers for the texts
    confidences: np.ndarray  # its fast model's confidence of each text
    early_exit: object  # Python's answers of the early-exit bundle's .onnx for the texts (with exit layers)


def early_and_late_leavers(predictor, texts: list[str], each: int = 3) -> list[str]:
    """``each`` texts that leave the early-exit model before its last layer and ``each`` that run every layer."""
    layers = predictor.answer(texts).exit_layers
    depth = predictor.model.depth
    early, late = np.flatnonzero(layers < depth), np.flatnonzero(layers == depth)
    assert len(early) and len(late), layers
    return [texts[row] for row in sorted([*early[:each], *late[:each]])]


@pytest.fixture(scope="module")
def page(students, exits, web_server, tmp_path_factory):
    """The page, in one headless Chromium run, on the tiny TextCNN and TinyBERT exported with ``--target web``, on
    their cascade (``mobclf cascade``) and on the early-exit TinyBERT (``--target web``), for the same texts: headlines
    of which some leave that model early and some do not. The served cascade's threshold is moved between the fast
    model's confidences of those texts, so that some escalate and some do not. Returns the texts, browser-check's
    JSON, and what Python's cascade and early-exit model make of them (``PageRun``)."""
    from conftest import run

    from mobclf.artifacts import load_artifact
    from mobclf.bench.variants import open_model
    from mobclf.cascade import open_cascade
    from mobclf.data.dataset import load_dataset

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing; {INSTALL}")
    node_module("playwright-core")
    site, url = web_server
    work = tmp_path_factory.mktemp("web-demo")
    for artifact in PLAIN.values():
        result = run("export", "--from", students / artifact, "--target", "web", "--out", site / "bundles" / artifact,
                     "--parity-texts", "20")
        assert result.exit_code == 0, result.output
    result = run("cascade", "--fast", site / "bundles" / "textcnn", "--accurate", site / "bundles" / "tinybert",
                 "--data", students / "data", "--out", work / "cascade", "--keep", "0.98")
    assert result.exit_code == 0, result.output
    result = run("export", "--from", exits / "early-exit", "--target", "web", "--out", site / "bundles" / "early-exit",
                 "--parity-texts", "20")
    assert result.exit_code == 0, result.output
    early_exit = open_model(site / "bundles" / "early-exit")
    headlines = early_and_late_leavers(early_exit, list(load_dataset(students / "data").texts("test")))
    texts = ["", "iPhone15发布，售价5999元起😀", *headlines]  # the screenshots show the last one

    cascade = open_cascade(load_artifact(work / "cascade", kind="cascade"), "onnxruntime")
    fast = cascade.fast
    confidences = confidence(fast.probs(texts), fast.thresholds, fast.single_label)
    threshold = splitting_threshold(confidences)
    cascade = replace(cascade, threshold=threshold)
    served = site / "bundles" / "cascade"
    shutil.copytree(work / "cascade", served)
    rule = json.loads((served / "cascade.json").read_text("utf-8"))
    rule["runtimes"]["onnxruntime"]["threshold"] = threshold
    (served / "cascade.json").write_text(json.dumps(rule), encoding="utf-8")

    paths = {**PLAIN, CASCADE: "cascade", EARLY_EXIT: "early-exit"}
    (site / "bundles.json").write_text(json.dumps(
        {"bundles": [{"name": name, "path": f"bundles/{path}/"} for name, path in paths.items()],
         "samples": headlines}, ensure_ascii=False), encoding="utf-8")
    cases = work / "cases.json"
    cases.write_text(json.dumps({"models": list(paths), "texts": texts}, ensure_ascii=False), encoding="utf-8")
    result = subprocess.run([node(), WEB / "tools" / "browser-check.mjs", url + "index.html", cases,
                             work / "screenshots"], capture_output=True, text=True, encoding="utf-8",
                            timeout=360, cwd=WEB)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    shown = json.loads(result.stdout)
    problems = [message for message in shown["console"] if message.startswith(("error", "pageerror", "request"))]
    assert not problems, problems
    for screenshot in shown["screenshots"]:
        assert Path(screenshot).stat().st_size > 10_000
        print(f"screenshot: {screenshot}")
    return PageRun(texts, shown, cascade, cascade.answer(texts), confidences, early_exit.answer(texts))


def assert_shows(theirs: dict, labels: list[str], chosen: np.ndarray, probs: np.ndarray, what: str):
    """The page's answer to one text shows the labels ``chosen`` and, for them and those below, ``probs``."""
    assert theirs["state"] == "done", theirs["error"]
    assert sorted(theirs["labels"]) == sorted(labels[i] for i in np.flatnonzero(chosen)), what
    shown_probs = [*zip(theirs["labels"], theirs["probs"]), *((e["label"], e["prob"]) for e in theirs["below"])]
    for label, prob in shown_probs:
        assert abs(prob - probs[labels.index(label)]) < 1e-4, (what, label, prob)
    assert theirs["inference_ms"] > 0


def read_bundle(directory: Path) -> dict:
    return json.loads((directory / "bundle.json").read_text("utf-8"))


def model_line(bundle: dict) -> str:
    """How the page's model line starts describing ``bundle``: "textcnn, fp32"."""
    return f"{bundle['model']['architecture']}, {bundle['model']['files']['onnx']['precision']}"


def test_browser_demo_shows_pythons_labels_in_chromium(page, web_server):
    """Each plain bundle's page shows the labels and probabilities mobclf predicts in Python, and no cascade note."""
    site, _ = web_server
    for name, artifact in PLAIN.items():
        expected, probs = python_labels(site / "bundles" / artifact, page.texts)
        bundle = read_bundle(site / "bundles" / artifact)
        for text, row, ours, theirs in zip(page.texts, probs, expected, page.shown["results"][name]):
            assert theirs["text"] == text
            assert_shows(theirs, bundle["labels"], np.isin(bundle["labels"], ours), row, f"{name}: {text!r}")
            assert theirs["answered_by"] is None and theirs["answer_note"] is None
        assert page.shown["info"][name].startswith(f"{name}: {model_line(bundle)}, ")


def test_browser_demo_shows_which_model_of_a_cascade_answered(page, web_server):
    """Each text is answered by the model Python's cascade picks (both kinds occur), with that model's labels and
    probabilities; the page names the model, and shows the fast model's confidence and each model's time."""
    cascade, answers = page.cascade, page.answers
    site, _ = web_server
    parts = {role: read_bundle(site / "bundles" / "cascade" / role) for role in ("fast", "accurate")}
    results = page.shown["results"][CASCADE]
    assert {theirs["answered_by"] for theirs in results} == {"fast", "accurate"}
    for text, sent, sure, probs, chosen, theirs in zip(page.texts, answers.escalated, page.confidences,
                                                        answers.probs, answers.choices, results):
        role = "accurate" if sent else "fast"
        assert theirs["text"] == text
        assert theirs["answered_by"] == role, text
        assert_shows(theirs, cascade.labels, chosen, probs, f"cascade: {text!r}")
        assert theirs["fast_confidence"] == pytest.approx(sure, abs=1e-4)
        assert f"the {role} model ({parts[role]['model']['architecture']})" in theirs["answer_note"]
        assert ("ms fast + " in theirs["timing"]) == sent and "ms fast" in theirs["timing"]
    rate = json.loads((site / "bundles" / "cascade" / "cascade.json").read_text("utf-8"))[
        "runtimes"]["onnxruntime"]["val"]["escalation_rate"]
    info = page.shown["info"][CASCADE]
    assert f"fast {model_line(parts['fast'])}" in info and f"accurate {model_line(parts['accurate'])}" in info
    assert f"below confidence {cascade.threshold:#.3g}" in info and f"({100 * rate:.1f}% of val texts)" in info


def test_browser_demo_shows_where_an_early_exit_model_stopped(page, web_server):
    """The early-exit bundle's one .onnx graph stops in the browser where it stops in Python: each text's exit layer
    (some leave early, some run every layer), labels and probabilities; the page says where the text left."""
    site, _ = web_server
    bundle = read_bundle(site / "bundles" / "early-exit")
    depth, answers = bundle["early_exit"]["depth"], page.early_exit
    results = page.shown["results"][EARLY_EXIT]
    assert {theirs["exit_layer"] < depth for theirs in results} == {True, False}
    for text, layer, probs, chosen, theirs in zip(page.texts, answers.exit_layers, answers.probs, answers.choices,
                                                  results):
        assert theirs["text"] == text and theirs["exit_layer"] == layer, text
        assert_shows(theirs, bundle["labels"], chosen, probs, f"early exit: {text!r}")
        assert theirs["answered_by"] is None
        assert theirs["answer_note"].startswith(f"left after layer {layer} of {depth}" if layer < depth
                                                else f"ran all {depth} layers")
    assert f"early exit after any of {depth} layers" in page.shown["info"][EARLY_EXIT]
