from __future__ import annotations

import json
from collections import Counter

from mobclf.data.demo_corpus import LABELS, MAX_CHARS, MIN_CHARS, generate_demo_corpus


def _read(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_same_seed_same_file_other_seed_other_file(tmp_path):
    first, again, other = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    assert generate_demo_corpus(first, n_items=300, seed=3) == generate_demo_corpus(again, n_items=300, seed=3)
    generate_demo_corpus(other, n_items=300, seed=4)
    assert first.read_bytes() == again.read_bytes()
    assert first.read_bytes() != other.read_bytes()


def test_multi_label_long_tail_with_every_label_well_represented(tmp_path):
    path = tmp_path / "demo.jsonl"
    summary = generate_demo_corpus(path, n_items=3000, seed=0)
    items = _read(path)
    counts = Counter(label for item in items for label in item["labels"])

    assert len(items) == summary["items"] == 3000
    assert summary["labels"] == dict(counts) and set(counts) == set(LABELS)
    assert summary["cardinality"] > 1.1
    assert summary["max_labels_per_item"] == 3
    assert max(counts.values()) >= 5 * min(counts.values())
    assert min(counts.values()) >= 30
    assert all(len(set(item["labels"])) == len(item["labels"]) for item in items)


def test_headlines_are_unique_chinese_and_headline_length(tmp_path):
    path = tmp_path / "demo.jsonl"
    generate_demo_corpus(path, n_items=1000, seed=1)
    texts = [item["text"] for item in _read(path)]
    assert len(set(texts)) == len(texts)
    assert all(MIN_CHARS <= len(text) <= MAX_CHARS for text in texts)
    assert all(any("\u4e00" <= char <= "\u9fff" for char in text) for text in texts)
    assert any(any(char.isascii() and char.isalnum() for char in text) for text in texts)
    assert "\\u" not in path.read_text(encoding="utf-8")
