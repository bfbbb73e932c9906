"""Batches: every row once, deterministic per seed, and length-grouped when lengths are given."""

from __future__ import annotations

import torch

from mobclf.text import build_tokenizer
from mobclf.train.batching import TokenizedTexts, batch_indices


def test_length_grouped_batches_cover_every_row_once_and_cut_padding():
    lengths = torch.randint(1, 200, (1000,), generator=torch.Generator().manual_seed(0))
    plain = batch_indices(1000, 32, shuffle=True, seed=3)
    grouped = batch_indices(1000, 32, shuffle=True, seed=3, lengths=lengths, pool_batches=10)
    assert sorted(torch.cat(grouped).tolist()) == list(range(1000))
    assert [b.tolist() for b in grouped] == [b.tolist() for b in
                                             batch_indices(1000, 32, shuffle=True, seed=3, lengths=lengths,
                                                           pool_batches=10)]

    def padded_tokens(batches):
        return sum(int(lengths[b].max()) * len(b) for b in batches)

    assert padded_tokens(grouped) < 0.75 * padded_tokens(plain)
    unshuffled = [b.tolist() for b in batch_indices(5, 2, lengths=lengths[:5])]
    assert unshuffled == [[0, 1], [2, 3], [4]]  # without shuffling, lengths change nothing


def test_a_batch_is_tokenized_when_drawn_padded_to_its_longest_text_with_compact_offsets():
    texts = ["北京时间今晚", "iPhone 15发布", "", "欧冠：皇马3比1胜拜仁 晋级决赛"] * 5
    tokenizer = build_tokenizer("char", texts, max_length=12, add_special_tokens=True)
    whole = tokenizer.encode_batch(texts)
    tokens = TokenizedTexts(tokenizer, texts, offsets=True)
    assert tokens.lengths.tolist() == whole["attention_mask"].sum(1).tolist() and len(tokens) == len(texts)
    index = torch.tensor([5, 2, 8])
    batch = tokens.batch(index)
    width = int(tokens.lengths[index].max())
    assert torch.equal(batch["input_ids"], whole["input_ids"][index, :width])
    assert torch.equal(batch["attention_mask"], whole["attention_mask"][index, :width])
    assert batch["offsets"].dtype == torch.int32 and batch["offsets"].shape == (3, width, 2)
    for row, spans in zip(batch["offsets"], (whole["offsets"][i] for i in index.tolist())):
        assert row[:len(spans)].tolist() == [list(span) for span in spans]
        assert not row[len(spans):].any()  # padding: (0, 0)
    assert "offsets" not in TokenizedTexts(tokenizer, texts).batch(index)  # only when asked for
