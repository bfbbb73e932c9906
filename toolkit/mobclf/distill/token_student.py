"""The recipe of the students with their own tokenizer (TextCNN, DPCNN, FastText, TextRNN, BiLSTM-attention; see
``models/token_student.py``): the tokenizer (char or jieba words) built from the transfer texts, optional pretrained
vectors, a FitNets hint from one teacher layer to the per-token features, and attention transfer from the teacher's
[CLS] attention to the student's attention map (its features' activations, or its own attention weights).

Teacher and student tokens are aligned by their character spans (characters summed into words), a batch at a time.
The teacher's attention, and its hint states up to ``hint_cache_gb`` on disk, are computed once and cached
(``teacher_cache``); beyond that the teacher computes a batch's hint states when it is trained on. The intermediate
stage is FitNets' stage 1: the layers below the features and the projection learn the hint alone.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mobclf.console import console
from mobclf.distill.alignment import align_attention, align_hidden, batch_alignment
from mobclf.distill.losses import Match
from mobclf.distill.student import PreparedStudent
from mobclf.data.dataset import Texts
from mobclf.distill.teacher_cache import teacher_outputs
from mobclf.models import build_model, count_parameters
from mobclf.models.textcnn import load_pretrained_vectors
from mobclf.stages import TokenStudentDistillConfig
from mobclf.text import build_tokenizer
from mobclf.train.batching import TokenizedTexts

INTERMEDIATE_LOSSES = ("hint_mse", "attention_transfer")


def prepare_token_student(config: TokenStudentDistillConfig, plan, weights: dict[str, float], teacher_artifact,
                          teacher, teacher_tokenizer, texts: Texts, num_labels: int, device: torch.device
                          ) -> PreparedStudent:
    layers = teacher.bert.config.num_hidden_layers if set(weights) & set(INTERMEDIATE_LOSSES) else 0
    hint_layer = (plan.hint_layer if plan.hint_layer is not None else layers // 2) if "hint_mse" in weights else None
    attention_layers = (plan.attention_layers or [layers]) if "attention_transfer" in weights else []
    # [N, L, H] fp16 states on disk: 1.6 GB for 50k articles of 128 tokens from a 128-wide teacher; 40 GB for 200k
    # from BERT-base
    cache_hint = hint_layer is not None and (len(texts) * teacher_tokenizer.max_length
                                             * teacher.bert.config.hidden_size * 2 <= config.hint_cache_gb * 1e9)
    outputs = teacher_outputs(teacher_artifact, teacher, teacher_tokenizer, texts,
                              hint_layer=hint_layer if cache_hint else None, attention_layers=attention_layers,
                              device=device)
    aligned = hint_layer is not None or bool(attention_layers)
    teacher_tokens = TokenizedTexts(teacher_tokenizer, texts, offsets=True) if aligned else None
    if hint_layer is not None and not cache_hint:
        teacher.to(device).eval()
        console.log(f"student: the teacher's layer-{hint_layer} states of {len(texts):,} texts would take more than "
                    f"--hint-cache-gb {config.hint_cache_gb:g}; the teacher computes them for each batch")

    tokenizer = build_tokenizer(config.tokenizer, texts, max_length=config.max_length or teacher_tokenizer.max_length,
                                add_special_tokens=False, vocab_size=config.vocab_size, min_freq=config.min_freq)
    encoded = TokenizedTexts(tokenizer, texts, offsets=aligned)
    model_config = {"vocab_size": len(tokenizer.vocab), "embedding_dim": config.embedding_dim,
                    "max_length": tokenizer.max_length, "dropout": config.dropout, "num_labels": num_labels,
                    **config.geometry()}
    vectors_coverage = None
    if config.vectors:
        matrix, vectors_coverage = load_pretrained_vectors(tokenizer.vocab, Path(config.vectors) / "vocab.txt",
                                                           Path(config.vectors) / "vectors.npy")
        model_config["embedding_dim"] = matrix.shape[1]
    student = build_model({"name": config.architecture, "config": model_config})
    if config.vectors:
        student.embedding.weight.data.copy_(matrix)
        console.log(f"student: {vectors_coverage:.1%} of the vocabulary initialised from {config.vectors}")
    matches = []
    if hint_layer is not None:
        matches.append(Match("hint_mse", "features", f"hidden.{hint_layer}", weights["hint_mse"], projection="hint"))
    if attention_layers:
        matches.append(Match("attention_transfer", "attention_map", "cls_attention", weights["attention_transfer"]))
    projections = nn.ModuleDict({"hint": nn.Linear(student.feature_dim, teacher.config["bert"]["hidden_size"])}
                                if hint_layer is not None else {})
    console.log(f"student: {config.architecture}, {count_parameters(student):,} parameters, vocab "
                f"{len(tokenizer.vocab):,}")

    def student_outputs(batch, names):
        mask = batch["attention_mask"]
        features = student.features(batch["input_ids"], mask)
        outputs = {"features": features}
        if "attention_map" in names:
            outputs["attention_map"] = student.attention_map(features, mask)
        if "logits" in names:
            outputs["logits"] = student.classify(features, mask)
        return outputs

    def aligned_teacher_outputs(index, batch, names):
        """The teacher's [CLS] attention and hint states for the texts ``index`` (read from the cache, or the states
        computed now), moved onto the student's token positions of ``batch``."""
        if not names:
            return {}
        teacher_batch = teacher_tokens.batch(index)
        width_t = teacher_batch["input_ids"].shape[1]
        matrix = batch_alignment(batch["offsets"].cpu(), teacher_batch["offsets"], batch["input_ids"].shape[1],
                                 width_t).to(device)
        theirs = {}
        if "cls_attention" in names:
            theirs["cls_attention"] = align_attention(outputs.rows("cls_attention", index)[:, :width_t].to(device),
                                                      matrix)
        if f"hidden.{hint_layer}" in names:
            if cache_hint:
                states = outputs.rows("hidden", index)[:, :width_t].to(device).float()
            else:
                with torch.no_grad():
                    states = teacher.encode(input_ids=teacher_batch["input_ids"].to(device),
                                            attention_mask=teacher_batch["attention_mask"].to(device),
                                            output_hidden_states=True).hidden_states[hint_layer].float()
            theirs[f"hidden.{hint_layer}"] = align_hidden(states, matrix)
        return theirs

    return PreparedStudent(model=student, tokenizer=tokenizer, encoded=encoded, teacher_cache=outputs,
                           matches=matches, projections=projections, student_outputs=student_outputs,
                           teacher_outputs=aligned_teacher_outputs,
                           intermediate_module=nn.ModuleDict({"student": student, "projections": projections}),
                           prediction_only_after_intermediate=False,
                           plan_details={"hint_layer": hint_layer, "attention_layers": attention_layers,
                                         "hint_states": None if hint_layer is None else
                                         "cached" if cache_hint else "computed per batch",
                                         "vectors": str(config.vectors) if config.vectors else None,
                                         "vectors_coverage": vectors_coverage})
