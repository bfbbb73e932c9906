"""BERT classifiers: a transformers ``BertModel`` encoder with a classification head over its token states.

Heads: ``cls_linear`` (linear on [CLS], Devlin et al. 2019), ``cls_mlp`` ([CLS] → hidden → labels, as in seed
paper 000), ``cnn`` (Kim-style convolutions with max-over-time pooling over all token states, the BERT-CNN of
seed papers 003/004), ``rnn`` (a BiLSTM over the token states, its last states pooled: the BERT-RNN of the Chinese
BERT text-classification study) and ``bilstm_cnn_attn`` (the online-education study's BERT → BiLSTM and CNN
branches over the token states, fused by a self-attention layer, then max-over-time). The encoder is built from a
config (trained from scratch) or loaded from a local HF checkpoint. The teacher is a ``BertClassifier``; the
TinyBERT student (``TinyBertClassifier``) is the same module at a small geometry, registered under its own name so
artifacts, reports and export say which is which.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from mobclf.errors import UserError
from mobclf.models.rnn import BiRecurrence, last_states
from mobclf.models.textcnn import ConvFeatures, MaskedMaxPool
from mobclf.models.token_student import real_tokens
from mobclf.stages import HEADS

if TYPE_CHECKING:
    from transformers import BertConfig, BertModel


def hugging_face():
    """``transformers``, imported where a BERT is built rather than with mobclf (it takes seconds, and a ``.pte`` or
    ``.onnx`` run never needs it), with its tqdm bars for loading and saving weights off: mobclf reports progress
    itself."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    return transformers


@dataclass
class EncoderOutput:
    """What distillation needs from a BERT: logits, and on request all hidden states and attention maps."""

    logits: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None = None  # embeddings + one per layer, each [B, L, H]
    attentions: tuple[torch.Tensor, ...] | None = None  # one per layer, each [B, heads, L, L]


class BertClassifier(nn.Module):
    """BERT encoder + classification head; outputs one logit per label (sigmoid, multi-label first).

    ``config``: ``bert`` (a plain BertConfig dict), ``head``, ``num_labels``, optional ``dropout``, ``head_hidden``,
    ``kernel_sizes``, ``num_filters``, ``rnn_hidden``; a pruned encoder adds ``layer_heads`` and
    ``layer_intermediate`` (one entry per layer: attention heads kept, FFN width kept), which override ``bert``'s
    uniform geometry.
    """

    def __init__(self, config: dict, encoder: BertModel | None = None):
        super().__init__()
        self.config = config
        hf = hugging_face()
        self.bert = encoder or hf.BertModel(hf.BertConfig(**config["bert"]), add_pooling_layer=False)
        hidden, labels, dropout = self.bert.config.hidden_size, config["num_labels"], config.get("dropout", 0.1)
        head = config["head"]
        if head == "cls_linear":
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, labels))
        elif head == "cls_mlp":
            width = config.get("head_hidden", hidden)
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, width), nn.Tanh(),
                                      nn.Dropout(dropout), nn.Linear(width, labels))
        elif head == "cnn":
            self.convs = ConvFeatures(hidden, config.get("kernel_sizes", [2, 3, 4]), config.get("num_filters", 128))
            self.pool = MaskedMaxPool()
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.convs.out_channels, labels))
        elif head == "rnn":
            self.recurrence = BiRecurrence("lstm", hidden, config.get("rnn_hidden", 256))
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * self.recurrence.rnn.hidden_size, labels))
        elif head == "bilstm_cnn_attn":
            self.recurrence = BiRecurrence("lstm", hidden, config.get("rnn_hidden", 256))
            self.convs = ConvFeatures(hidden, config.get("kernel_sizes", [2, 3, 4]), config.get("num_filters", 128))
            width = 2 * self.recurrence.rnn.hidden_size + self.convs.out_channels
            self.fusion = nn.MultiheadAttention(width, num_heads=1, batch_first=True)
            self.pool = MaskedMaxPool()
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, labels))
        else:
            raise UserError(f"unknown teacher head {head!r}; choose one of {', '.join(HEADS)}")
        if "layer_heads" in config or "layer_intermediate" in config:
            resize_layers(self.bert, config.get("layer_heads"), config.get("layer_intermediate"))

    @classmethod
    def from_checkpoint(cls, checkpoint: Path, config: dict) -> "BertClassifier":
        """Start from a local HF checkpoint directory (never the hub); the head is new."""
        if not (Path(checkpoint) / "config.json").is_file():
            raise UserError("not a Hugging Face checkpoint directory (no config.json); give a local model dir",
                            path=checkpoint)
        hf = hugging_face()
        verbosity = hf.logging.get_verbosity()
        hf.logging.set_verbosity_error()  # its load report lists the MLM head's weights, which a classifier drops
        try:
            encoder, info = hf.BertModel.from_pretrained(str(checkpoint), local_files_only=True,
                                                         add_pooling_layer=False, output_loading_info=True)
        finally:
            hf.logging.set_verbosity(verbosity)
        if info["missing_keys"] or info["mismatched_keys"]:
            wrong = sorted(info["missing_keys"]) + sorted(str(key) for key in info["mismatched_keys"])
            raise UserError(f"the checkpoint lacks or mis-shapes encoder weights ({', '.join(wrong[:3])} ...); "
                            "give a BERT checkpoint", path=checkpoint)
        config = {**config, "bert": _plain_config(encoder.config)}
        return cls(config, encoder=encoder)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encode(input_ids, attention_mask).logits

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, output_hidden_states: bool = False,
               output_attentions: bool = False) -> EncoderOutput:
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                        output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        return EncoderOutput(self.classify(out.last_hidden_state, attention_mask), out.hidden_states, out.attentions)

    def classify(self, states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The head: last-layer token states [B, L, H] → logits [B, labels]. The heads over every token see zeros
        at padding (BERT's states there would reach a convolution's window), so a padded batch gives the same
        logits as one text at a time."""
        head = self.config["head"]
        if head in ("cls_linear", "cls_mlp"):
            return self.head(states[:, 0])
        states = states * real_tokens(attention_mask, states)
        if head == "cnn":
            return self.head(self.pool(self.convs(states), attention_mask))
        if head == "rnn":
            return self.head(last_states(self.recurrence(states, attention_mask), attention_mask))
        branches = torch.cat([self.recurrence(states, attention_mask), self.convs(states)], dim=-1)
        fused, _ = self.fusion(branches, branches, branches, key_padding_mask=attention_mask == 0, need_weights=False)
        return self.head(self.pool(branches + fused, attention_mask))

    # What structured pruning (compress/prune.py, torch-pruning) asks of a model.

    def prunable_groups(self, ratio: float) -> dict:
        """torch-pruning ``MetaPruner`` options: whole attention heads (Michel et al., 2019, "Are Sixteen Heads
        Really Better than One?") and FFN channels are pruned; hidden size, embeddings and the head stay."""
        heads = {linear: layer.attention.self.num_attention_heads for layer in self.bert.encoder.layer
                 for linear in (layer.attention.self.query, layer.attention.self.key, layer.attention.self.value)}
        return {"num_heads": heads, "prune_num_heads": True, "prune_head_dims": False, "head_pruning_ratio": ratio,
                "ignored_layers": [self.bert.embeddings, self.head]}

    def pruned_geometry(self) -> dict:
        """The ``config`` keys of the current (pruned) geometry, after bringing each attention's head count in line
        with its pruned weights (transformers reshapes by head size, so whole-head pruning keeps it valid)."""
        for layer in self.bert.encoder.layer:
            attention = layer.attention.self
            attention.all_head_size = attention.query.out_features
            attention.num_attention_heads = attention.all_head_size // attention.attention_head_size
        return {"layer_heads": [layer.attention.self.num_attention_heads for layer in self.bert.encoder.layer],
                "layer_intermediate": [layer.intermediate.dense.out_features for layer in self.bert.encoder.layer]}

    @property
    def word_embedding(self) -> nn.Embedding:
        return self.bert.embeddings.word_embeddings

    def replace_word_embedding(self, embedding: nn.Embedding) -> None:
        """Swap in a (vocabulary-pruned) embedding table (no tied output embedding in a classifier)."""
        self.bert.set_input_embeddings(embedding)
        self.bert.config.vocab_size = embedding.num_embeddings
        self.bert.config.pad_token_id = embedding.padding_idx
        self.config["bert"] = {**self.config["bert"], "vocab_size": embedding.num_embeddings,
                               "pad_token_id": embedding.padding_idx}


class TinyBertClassifier(BertClassifier):
    """TinyBERT student (Jiao et al., 2020, "TinyBERT: Distilling BERT for Natural Language Understanding"):
    a narrow, shallow BERT with a linear head on [CLS]; default geometry :data:`TINYBERT_4`."""


TINYBERT_4 = {"layers": 4, "hidden": 312, "heads": 12, "intermediate": 1200}


def resize_layers(bert: BertModel, layer_heads: list[int] | None, layer_intermediate: list[int] | None) -> None:
    """Give each layer of ``bert`` its own number of attention heads and FFN width (a pruned geometry).

    Head size and hidden size stay those of ``bert.config`` (whose ``num_attention_heads`` then describes only the
    head size, hidden / heads); the new linear layers are uninitialised stand-ins for weights loaded afterwards.
    """
    layers = bert.encoder.layer
    for name, values in (("layer_heads", layer_heads), ("layer_intermediate", layer_intermediate)):
        if values is not None and (len(values) != len(layers) or min(values) < 1):
            raise UserError(f"{name} {values} must hold a positive number for each of the {len(layers)} layers")
    hidden = bert.config.hidden_size
    for index, layer in enumerate(layers):
        if layer_heads is not None:
            attention = layer.attention.self
            width = layer_heads[index] * attention.attention_head_size
            attention.query, attention.key, attention.value = (nn.Linear(hidden, width) for _ in range(3))
            attention.num_attention_heads, attention.all_head_size = layer_heads[index], width
            layer.attention.output.dense = nn.Linear(width, hidden)
        if layer_intermediate is not None:
            layer.intermediate.dense = nn.Linear(hidden, layer_intermediate[index])
            layer.output.dense = nn.Linear(layer_intermediate[index], hidden)


def additive_mask(attention_mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The ready 4D attention mask [B, 1, 1, L] a BERT layer adds to its scores: 0 on real tokens, -1e4 on padding
    (passed as it is, transformers builds none: its own integer arithmetic breaks PT2E)."""
    return (1.0 - attention_mask[:, None, None, :].to(dtype)) * -1e4


def attention_scores(layer: nn.Module, layer_input: torch.Tensor) -> torch.Tensor:
    """Pre-softmax attention scores ``Q Kᵀ / √d`` [B, heads, L, L] of one ``BertLayer``, recomputed from the hidden
    states that enter it (``hidden_states[k - 1]`` for layer k), so they do not depend on the attention kernel
    (sdpa returns no maps). No mask is added: callers mask padded positions themselves."""
    attention = layer.attention.self
    shape = (*layer_input.shape[:-1], -1, attention.attention_head_size)
    query = attention.query(layer_input).view(shape).transpose(1, 2)
    key = attention.key(layer_input).view(shape).transpose(1, 2)
    return query @ key.transpose(-1, -2) * attention.scaling


def _plain_config(config: BertConfig) -> dict:
    keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings",
            "type_vocab_size", "layer_norm_eps", "pad_token_id")
    return {key: getattr(config, key) for key in keys}


def bert_config(vocab_size: int, layers: int, hidden: int, heads: int, intermediate: int | None,
                max_length: int) -> dict:
    """A plain-dict BertConfig for a model trained from scratch."""
    if hidden % heads:
        raise UserError(f"--hidden {hidden} must be a multiple of --heads {heads}")
    config = hugging_face().BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                                       num_attention_heads=heads, intermediate_size=intermediate or 4 * hidden,
                                       max_position_embeddings=max(max_length, 64), pad_token_id=0)
    return _plain_config(config)
