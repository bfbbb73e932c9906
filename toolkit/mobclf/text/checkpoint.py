"""A causal language model checkpoint's own tokenizer (its ``tokenizer.json``, run by HF ``tokenizers``): the LLM
teacher's, read from a local checkpoint directory and saved into the teacher artifact.

Rules: a text is the checkpoint tokenizer's tokens (its pre-tokenizer and merges, no special tokens added), cut to
``max_length - 1``, then the checkpoint's end-of-text token (``eos_token`` of its ``tokenizer_config.json``), so the
last position, which the classifier reads, is the same token in every text, and an empty text still has one.
Batches are padded on the right with that token, masked out. Offsets are those ``tokenizers`` gives (code points
of the original text); the end token has ``(0, 0)``.

Saved form: ``tokenizer.json`` is mobclf's spec (as for every tokenizer, see ``base``) and names the checkpoint's
tokenizer file, copied beside it as ``checkpoint_tokenizer.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer

from mobclf.errors import UserError
from mobclf.text.base import SPEC_FILE, SPEC_VERSION, Encoding, padded_batch, saved_file

CHECKPOINT_TOKENIZER_FILE = "checkpoint_tokenizer.json"


class CheckpointTokenizer:
    """Text → ids with a checkpoint's tokenizer, ending with its end-of-text token."""

    kind = "checkpoint"

    def __init__(self, tokenizer: HFTokenizer, end_token: str, max_length: int):
        if max_length < 2:
            raise UserError(f"max_length must be at least 2 (got {max_length})")
        self._tokenizer, self.end_token, self.max_length = tokenizer, end_token, max_length
        tokenizer.no_padding()  # mobclf pads and cuts (a checkpoint's file may switch either on)
        tokenizer.no_truncation()
        self.end_id = tokenizer.token_to_id(end_token)
        if self.end_id is None:
            raise UserError(f"the tokenizer has no token {end_token!r}, which its config names as eos_token")
        self.pad_id = self.end_id
        self.num_tokens = tokenizer.get_vocab_size(with_added_tokens=True)

    @classmethod
    def from_checkpoint(cls, directory: Path, max_length: int) -> CheckpointTokenizer:
        """The tokenizer of a local HF checkpoint: its ``tokenizer.json`` and the ``eos_token`` of its
        ``tokenizer_config.json``."""
        directory = Path(directory)
        try:
            config = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
            end_token = config["eos_token"]
        except FileNotFoundError:
            raise UserError("no tokenizer_config.json: give the checkpoint directory with its tokenizer files",
                            path=directory) from None
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
            raise UserError(f"cannot read its eos_token ({err!r}); the LLM teacher ends every text with it",
                            path=directory / "tokenizer_config.json") from None
        end_token = end_token.get("content") if isinstance(end_token, dict) else end_token  # older AddedToken form
        if not isinstance(end_token, str) or not end_token:
            raise UserError("its eos_token is not a token; the LLM teacher ends every text with it",
                            path=directory / "tokenizer_config.json")
        return cls(_read_hf_tokenizer(directory / "tokenizer.json"), end_token, max_length)

    @classmethod
    def from_saved(cls, directory: Path, spec: dict) -> CheckpointTokenizer:
        return cls(_read_hf_tokenizer(saved_file(directory, spec["tokenizer_file"])), spec["end_token"],
                   spec["max_length"])

    @property
    def spec(self) -> dict:
        return {"type": self.kind, "version": SPEC_VERSION, "max_length": self.max_length,
                "tokenizer_file": CHECKPOINT_TOKENIZER_FILE, "end_token": self.end_token,
                "num_tokens": self.num_tokens}

    def encode(self, text: str) -> Encoding:
        encoding = self._tokenizer.encode(text, add_special_tokens=False)
        kept = self.max_length - 1
        return Encoding([*encoding.ids[:kept], self.end_id], [*encoding.offsets[:kept], (0, 0)])

    def encode_batch(self, texts: list[str]) -> dict:
        """``input_ids`` and ``attention_mask`` (LongTensor[B, L], padded on the right) and ``offsets``."""
        return padded_batch([self.encode(text) for text in texts], self.pad_id)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._tokenizer.save(str(directory / CHECKPOINT_TOKENIZER_FILE))
        (directory / SPEC_FILE).write_text(json.dumps(self.spec, indent=2, ensure_ascii=False) + "\n",
                                           encoding="utf-8")


def _read_hf_tokenizer(path: Path) -> HFTokenizer:
    try:
        return HFTokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises plain Exceptions for missing and malformed files alike
        reason = str(err).strip().splitlines()[0][:120] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot read the tokenizer ({reason}); give the checkpoint's tokenizer.json",
                        path=path) from None
