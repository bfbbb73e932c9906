"""Char ↔ word alignment on a hand-made case: text "我爱北京"."""

from __future__ import annotations

import pytest
import torch

from mobclf.distill.alignment import align_attention, align_hidden, alignment_matrix, batch_alignment

# teacher: [CLS] 我 爱 北 京 [SEP]; student: 我 / 爱 / 北京
TEACHER = [(0, 0), (0, 1), (1, 2), (2, 3), (3, 4), (0, 0)]
STUDENT = [(0, 1), (1, 2), (2, 4)]


def test_alignment_matrix_chars_to_words():
    a = alignment_matrix(STUDENT, TEACHER, student_len=4, teacher_len=7)  # one padding row, one padding column
    assert a.dtype == torch.float32
    assert a.tolist() == [
        [0, 1, 0, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0, 0],
        [0, 0, 0, 1, 1, 0, 0],
        [0, 0, 0, 0, 0, 0, 0],
    ]


def test_partial_overlap_and_zero_width():
    # student word "爱北" [1, 3) against teacher pieces [0, 2) and [2, 4); zero-width spans match nothing
    a = alignment_matrix([(1, 3), (2, 2)], [(0, 2), (2, 4), (2, 2)], 2, 3)
    assert a.tolist() == [[1, 1, 0], [0, 0, 0]]


def test_offsets_longer_than_sequence():
    with pytest.raises(ValueError, match="3 student offsets"):
        alignment_matrix(STUDENT, TEACHER, student_len=2, teacher_len=6)


def test_batch_and_aligned_signals():
    # second example: "北京" -> teacher [CLS] 北 京 [SEP]; student 北京
    a = batch_alignment([STUDENT, [(0, 2)]], [TEACHER, [(0, 0), (0, 1), (1, 2), (0, 0)]], 4, 7)
    assert a.shape == (2, 4, 7)
    assert a[1, 0].tolist() == [0, 1, 1, 0, 0, 0, 0]
    assert a[1, 1:].sum() == 0

    attention = torch.tensor(
        [[0.1, 0.2, 0.3, 0.1, 0.25, 0.05, 0.0], [0.4, 0.3, 0.2, 0.1, 0.0, 0.0, 0.0]], dtype=torch.float64
    )
    # words get the sum of their characters: 北京 = 0.1 + 0.25; [CLS]/[SEP] go nowhere
    expected = [[0.2, 0.3, 0.35, 0.0], [0.5, 0.0, 0.0, 0.0]]
    got = align_attention(attention, a)
    assert got.dtype == torch.float64
    assert torch.allclose(got, torch.tensor(expected, dtype=torch.float64))

    hidden = torch.arange(2 * 7 * 2, dtype=torch.float32).reshape(2, 7, 2)
    # example 0: 北京 = mean of teacher rows 3 ([6, 7]) and 4 ([8, 9]) = [7, 8]; padding word -> zeros
    aligned = align_hidden(hidden, a)
    assert aligned.shape == (2, 4, 2)
    assert aligned[0].tolist() == [[2, 3], [4, 5], [7, 8], [0, 0]]
    # example 1: 北京 = mean of rows 1 ([16, 17]) and 2 ([18, 19])
    assert aligned[1].tolist() == [[17, 18], [0, 0], [0, 0], [0, 0]]


def test_align_hidden_passes_gradient():
    a = batch_alignment([STUDENT], [TEACHER], 3, 6)
    hidden = torch.randn(1, 6, 4, requires_grad=True)
    align_hidden(hidden, a).sum().backward()
    # [CLS] and [SEP] contribute nothing; 北 and 京 each count half
    assert hidden.grad[0, :, 0].tolist() == [0, 1, 1, 0.5, 0.5, 0]
