"""The browser demo (android-demo/web): its JavaScript tokenizers give Python's ids exactly, and the page, run in
headless Chromium with a phone viewport, shows the labels mobclf predicts for the same bundle.

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


@pytest.mark.parametrize("kind", ["char", "jieba", "wordpiece"])
def test_javascript_tokenizers_give_pythons_ids(device_tokenizers, kind):
    directory, python_ids = device_tokenizers[kind]
    result = subprocess.run([node(), WEB / "tokenize-cli.mjs", directory, device_tokenizers["texts"]],
                            capture_output=True, text=True, encoding="utf-8", timeout=120)
    assert result.returncode == 0, result.stderr
    js_ids = [[int(i) for i in line.split()] for line in result.stdout.split("\n")[:-1]]
    assert len(js_ids) == len(python_ids) > 5000
    texts = [json.loads(line)["text"] for line in device_tokenizers["texts"].read_text("utf-8").split("\n")[:-1]]
    differing = [(text, ours, theirs) for text, ours, theirs in zip(texts, python_ids, js_ids) if ours != theirs]
    report = "\n".join(f"{text[:80]!r}\n  python {ours[:30]}\n  js     {theirs[:30]}"
                       for text, ours, theirs in differing[:5])
    assert not differing, f"{len(differing)} of {len(texts)} texts differ ({kind}):\n{report}"


def test_generated_unicode_tables_match_the_installed_tokenizers():
    """bert-unicode.js is read off HF tokenizers; a tokenizers upgrade that changes it must regenerate it."""
    import sys

    result = subprocess.run([sys.executable, WEB / "tools" / "gen_bert_unicode.py", "--check"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
