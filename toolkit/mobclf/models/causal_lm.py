"""The LLM teacher: a causal language model (Qwen2; Yang et al. 2024, "Qwen2 Technical Report") with a linear head on
the state of each text's last token, one logit per label (sigmoid, multi-label first).

Why a head on the last token rather than label-word likelihood under an instruction prompt: one forward pass scores
every label, whatever their number (likelihoods need a pass, or a scored continuation, per label: 90 for Reuters,
hundreds at scale); each label gets its own sigmoid, so multi-label and per-label thresholds work as for BERT; and
the logits feed soft-target distillation as they are, with no calibration of word probabilities. It is what
transformers' ``Qwen2ForSequenceClassification`` does. The last token of a causal model is the only one that has
read the whole text; the tokenizer ends every text with the checkpoint's end-of-text token so that position means
the same in every text (``text/checkpoint.py``).

Training (``train/llm_teacher.py``) fine-tunes low-rank adapters (LoRA; Hu et al. 2022) with ``peft`` and merges them
into the weights before the artifact is written, so an artifact is a plain Qwen2 model plus head: loading it needs
neither ``peft`` nor the checkpoint it came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from mobclf.errors import UserError
from mobclf.models.bert import EncoderOutput, hugging_face

if TYPE_CHECKING:
    from transformers import Qwen2Config, Qwen2Model

# PretrainedConfig bookkeeping that says nothing about the model (and would tie an artifact to one transformers)
_NOT_GEOMETRY = ("architectures", "transformers_version", "_name_or_path", "dtype", "torch_dtype", "model_type")


class CausalLmClassifier(nn.Module):
    """Qwen2 decoder + linear head on the last real token; ``config``: ``qwen2`` (a plain Qwen2Config dict),
    ``num_labels``, optional ``dropout`` and ``lora`` (the adapters that were merged in, a record)."""

    def __init__(self, config: dict, decoder: Qwen2Model | None = None):
        super().__init__()
        self.config = config
        hf = hugging_face()
        self.decoder = decoder or hf.Qwen2Model(hf.Qwen2Config(**config["qwen2"]))
        self.head = nn.Sequential(nn.Dropout(config.get("dropout", 0.1)),
                                  nn.Linear(self.decoder.config.hidden_size, config["num_labels"]))

    @classmethod
    def from_checkpoint(cls, checkpoint: Path, config: dict) -> "CausalLmClassifier":
        """Start from a local HF Qwen2 checkpoint directory (never the hub), in fp32; the head is new."""
        checkpoint, hf = Path(checkpoint), hugging_face()
        try:
            model_type = hf.Qwen2Config.get_config_dict(str(checkpoint), local_files_only=True)[0].get("model_type")
        except (OSError, ValueError) as err:
            raise UserError(f"not a Hugging Face checkpoint directory ({str(err).splitlines()[0][:100]}); give a "
                            "local model dir", path=checkpoint) from None
        if model_type != "qwen2":
            raise UserError(f"is a {model_type!r} checkpoint; the LLM teacher takes Qwen2 (model_type qwen2)",
                            path=checkpoint / "config.json")
        verbosity = hf.logging.get_verbosity()
        hf.logging.set_verbosity_error()  # its load report lists the language-model head, which a classifier drops
        try:
            decoder, info = hf.Qwen2Model.from_pretrained(str(checkpoint), local_files_only=True, dtype=torch.float32,
                                                          output_loading_info=True)
        finally:
            hf.logging.set_verbosity(verbosity)
        if info["missing_keys"] or info["mismatched_keys"]:
            wrong = sorted(info["missing_keys"]) + sorted(str(key) for key in info["mismatched_keys"])
            raise UserError(f"the checkpoint lacks or mis-shapes decoder weights ({', '.join(wrong[:3])} ...)",
                            path=checkpoint)
        return cls({**config, "qwen2": plain_config(decoder.config)}, decoder=decoder)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encode(input_ids, attention_mask).logits

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, output_hidden_states: bool = False,
               output_attentions: bool = False) -> EncoderOutput:
        """Logits from the state of each text's last real token (batches are padded on the right, and a causal model's
        real tokens never attend to the padding after them, so a padded batch gives the same logits as one text at
        a time)."""
        out = self.decoder(input_ids=input_ids, attention_mask=attention_mask,
                           output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        last = attention_mask.sum(dim=1).clamp(min=1) - 1
        states = out.last_hidden_state[torch.arange(len(last), device=last.device), last]
        return EncoderOutput(self.head(states), out.hidden_states, out.attentions)


def plain_config(config: Qwen2Config) -> dict:
    """The JSON-able geometry of a Qwen2 config (what differs from the defaults)."""
    return {key: value for key, value in config.to_diff_dict().items() if key not in _NOT_GEOMETRY}
