"""Match teacher tokens to student tokens through their character offsets into the same text.

A BERT teacher sees characters, a TextCNN student sees jieba words; both tokenizers report each token's
``(start, end)`` span in the original text, special tokens ``(0, 0)``. A student token and a teacher token are
aligned when their spans overlap, which turns teacher signals into student-length ones:

    text "我爱北京"; teacher [CLS] 我 爱 北 京 [SEP]; student 我 / 爱 / 北京
    alignment  [[0, 1, 0, 0, 0, 0],
                [0, 0, 1, 0, 0, 0],
                [0, 0, 0, 1, 1, 0]]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

Offsets = Sequence[tuple[int, int]] | torch.Tensor


def _spans(offsets: Offsets, length: int, what: str) -> torch.Tensor:
    spans = torch.as_tensor(offsets, dtype=torch.long).reshape(-1, 2)
    if len(spans) > length:
        raise ValueError(f"{len(spans)} {what} offsets do not fit a sequence length of {length}")
    return spans


def alignment_matrix(
    student_offsets: Offsets,
    teacher_offsets: Offsets,
    student_len: int,
    teacher_len: int,
) -> torch.Tensor:
    """``[student_len, teacher_len]`` float matrix, 1 where a student span overlaps a teacher span.

    Spans are half-open ``[start, end)``; zero-width spans (special tokens) overlap nothing. Rows and columns
    past the given offsets (padding) stay 0.
    """
    s = _spans(student_offsets, student_len, "student")
    t = _spans(teacher_offsets, teacher_len, "teacher")
    out = torch.zeros(student_len, teacher_len)
    starts = torch.maximum(s[:, None, 0], t[None, :, 0])
    ends = torch.minimum(s[:, None, 1], t[None, :, 1])
    out[: len(s), : len(t)] = (starts < ends).float()
    return out


def batch_alignment(
    student_offsets_batch: Sequence[Offsets],
    teacher_offsets_batch: Sequence[Offsets],
    student_len: int,
    teacher_len: int,
) -> torch.Tensor:
    """:func:`alignment_matrix` for each example of a batch, stacked to ``[B, student_len, teacher_len]``."""
    if len(student_offsets_batch) != len(teacher_offsets_batch):
        raise ValueError(
            f"{len(student_offsets_batch)} student and {len(teacher_offsets_batch)} teacher offset lists"
        )
    return torch.stack(
        [
            alignment_matrix(s, t, student_len, teacher_len)
            for s, t in zip(student_offsets_batch, teacher_offsets_batch)
        ]
    )


def align_attention(teacher_attention: torch.Tensor, alignment: torch.Tensor) -> torch.Tensor:
    """Teacher attention ``[B, Lt]`` summed into student positions: ``[B, Ls]`` (a word gets its characters')."""
    return torch.einsum("bst,bt->bs", alignment.to(teacher_attention), teacher_attention)


def align_hidden(teacher_hidden: torch.Tensor, alignment: torch.Tensor) -> torch.Tensor:
    """Teacher hidden states ``[B, Lt, H]`` averaged over the teacher tokens each student token overlaps.

    Returns ``[B, Ls, H]``; a student token overlapping no teacher token (padding, truncated text) gets zeros.
    """
    a = alignment.to(teacher_hidden)
    return torch.bmm(a, teacher_hidden) / a.sum(-1, keepdim=True).clamp_min(1.0)
