"""The browser demo (android-demo/web), run in headless Chromium with a phone viewport, shows the labels mobclf
predicts for the same bundle. (Its JavaScript tokenizers are proven in test_device_tokenizers.py.)

Needs Node, Debian ``chromium`` and the page's npm packages: run ``android-demo/tools/install-browser.sh`` first.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

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


PAGE_FILES = ("index.html", "app.js", "classifier.js", "tokenizers.js", "bert-unicode.js", "style.css")


@pytest.fixture
def web_server(tmp_path):
    """A copy of the page under ``tmp_path / "site"``, served on 127.0.0.1 (a free port) while the test runs,
    with onnxruntime-web's dist files from android-demo/web/node_modules linked in."""
    import functools
    import http.server
    import threading

    site = tmp_path / "site"
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


def test_browser_demo_shows_pythons_labels_in_chromium(students, web_server, tmp_path):
    from conftest import run

    from mobclf.data.dataset import load_dataset

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing; {INSTALL}")
    node_module("playwright-core")
    site, url = web_server
    models = {"TextCNN": "textcnn", "TinyBERT": "tinybert"}
    for artifact in models.values():
        result = run("export", "--from", students / artifact, "--target", "web", "--out", site / "bundles" / artifact,
                     "--parity-texts", "20")
        assert result.exit_code == 0, result.output
    headlines = load_dataset(students / "data").texts("test")[:6]
    texts = ["", "iPhone15发布，售价5999元起😀", *headlines]  # the screenshots show the last one
    (site / "bundles.json").write_text(json.dumps(
        {"bundles": [{"name": name, "path": f"bundles/{artifact}/"} for name, artifact in models.items()],
         "samples": headlines}, ensure_ascii=False), encoding="utf-8")
    cases = tmp_path / "cases.json"
    cases.write_text(json.dumps({"models": list(models), "texts": texts}, ensure_ascii=False), encoding="utf-8")

    result = subprocess.run([node(), WEB / "tools" / "browser-check.mjs", url + "index.html", cases,
                             tmp_path / "screenshots"], capture_output=True, text=True, encoding="utf-8",
                            timeout=240, cwd=WEB)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    shown = json.loads(result.stdout)
    problems = [message for message in shown["console"] if message.startswith(("error", "pageerror", "request"))]
    assert not problems, problems
    for name, artifact in models.items():
        expected, probs = python_labels(site / "bundles" / artifact, texts)
        labels = json.loads((site / "bundles" / artifact / "bundle.json").read_text("utf-8"))["labels"]
        for text, row, ours, theirs in zip(texts, probs, expected, shown["results"][name]):
            assert theirs["state"] == "done", theirs["error"]
            assert theirs["text"] == text
            assert sorted(theirs["labels"]) == sorted(ours), f"{name}: {text!r}"
            shown_probs = [*zip(theirs["labels"], theirs["probs"]), *((e["label"], e["prob"]) for e in theirs["below"])]
            for label, prob in shown_probs:
                assert abs(prob - row[labels.index(label)]) < 1e-4, (name, text, label, prob)
            assert theirs["inference_ms"] > 0
    for screenshot in shown["screenshots"]:
        assert Path(screenshot).stat().st_size > 10_000
        print(f"screenshot: {screenshot}")
