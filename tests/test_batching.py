"""Batches: every row once, deterministic per seed, and length-grouped when lengths are given."""

from __future__ import annotations

import torch

from mobclf.train.batching import batch_indices


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
