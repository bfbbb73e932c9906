"""Batches: every row once, deterministic per seed, and length-grouped when lengths are given."""

from __future__ import annotations

import torch

from mobclf.text import build_tokenizer
from mobclf.train.batching import batch_indices, encode_texts


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


def test_encoding_in_chunks_gives_the_one_batch_encoding_with_compact_offsets():
    texts = ["北京时间今晚", "iPhone 15发布", "", "欧冠：皇马3比1胜拜仁 晋级决赛"] * 5
    tokenizer = build_tokenizer("char", texts, max_length=12, add_special_tokens=True)
    whole = tokenizer.encode_batch(texts)
    encoded = encode_texts(tokenizer, texts, offsets=True, chunk=3)
    assert torch.equal(encoded.input_ids, whole["input_ids"]) and encoded.input_ids.dtype == torch.long
    assert encoded.lengths.tolist() == whole["attention_mask"].sum(1).tolist()
    assert encoded.offsets.dtype == torch.int32 and encoded.offsets.shape == (*whole["input_ids"].shape, 2)
    for row, spans in enumerate(whole["offsets"]):
        assert encoded.offsets[row, :len(spans)].tolist() == [list(span) for span in spans]
        assert not encoded.offsets[row, len(spans):].any()  # padding: (0, 0)
    assert encode_texts(tokenizer, texts).offsets is None  # only when asked for
