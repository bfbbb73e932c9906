"""The TinyBERT student recipe (Jiao et al., 2020, "TinyBERT: Distilling BERT for Natural Language Understanding").

The student is a small BERT that reads the teacher's tokens, so its layers can be compared with the teacher's
position by position: ``embedding_mse`` on the embedding outputs, ``hidden_mse`` on each mapped layer's output and
``attention_mse`` on each mapped layer's attention scores (``layer_map``, e.g. uniform 1→3, 2→6, 3→9, 4→12). Student
widths are mapped to the teacher's by one learned linear projection shared by the embedding and hidden losses, as in
TinyBERT's code. The intermediate losses need every mapped teacher layer, too much to cache for real data sets, so
the teacher runs alongside the student (no gradients); the teacher's logits come from the cache.

Initialisation: from scratch (``TINYBERT_4`` geometry by default), from a ``mobclf pretrain`` artifact (MLM
pre-trained at student size) or from an earlier TinyBERT student (e.g. after general distillation); both must share
the teacher's vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mobclf.artifacts import load_artifact
from mobclf.console import console
from mobclf.distill.layer_map import parse_layer_map
from mobclf.distill.losses import Match
from mobclf.data.dataset import Texts
from mobclf.distill.student import PreparedStudent
from mobclf.distill.teacher_cache import teacher_outputs
from mobclf.errors import UserError
from mobclf.models import count_parameters, load_classifier, set_dropout
from mobclf.models.bert import TINYBERT_4, TinyBertClassifier, attention_scores, bert_config
from mobclf.text import load_tokenizer
from mobclf.train.batching import TokenizedTexts
from mobclf.train.pretrain import open_pretrained

INTERMEDIATE_LOSSES = ("embedding_mse", "hidden_mse", "attention_mse")


@dataclass
class TinyBertConfig:
    layers: int = TINYBERT_4["layers"]
    hidden: int = TINYBERT_4["hidden"]
    heads: int = TINYBERT_4["heads"]
    intermediate: int = TINYBERT_4["intermediate"]
    dropout: float = 0.1
    init: Path | None = None  # a `pretrained` artifact or a TinyBERT `student` artifact; geometry then comes from it


def _same_vocabulary(tokenizer, teacher_tokenizer, path: Path) -> None:
    if tokenizer.vocab != teacher_tokenizer.vocab:
        raise UserError("its vocabulary differs from the teacher's, so its token ids would mean other tokens; "
                        "pretrain with --tokenizer-dir <teacher>/tokenizer", path=path)


def _initial_student(config: TinyBertConfig, teacher_tokenizer, num_labels: int) -> tuple[TinyBertClassifier, list]:
    """The student before distillation, and the artifact it starts from (for the lineage)."""
    head = {"head": "cls_linear", "num_labels": num_labels}
    if config.init is None:
        encoder = bert_config(len(teacher_tokenizer.vocab), config.layers, config.hidden, config.heads,
                              config.intermediate, teacher_tokenizer.max_length)
        return TinyBertClassifier({"bert": encoder, **head}), []
    artifact = load_artifact(config.init, kind=("pretrained", "student"))
    if artifact.kind == "pretrained":
        _, checkpoint, tokenizer = open_pretrained(config.init, teacher_tokenizer.max_length)
        _same_vocabulary(tokenizer, teacher_tokenizer, config.init)
        student = TinyBertClassifier.from_checkpoint(checkpoint, head)
    else:
        if artifact.manifest["architecture"]["name"] != "tinybert":
            raise UserError("is not a TinyBERT student; --init takes a pretrain artifact or a TinyBERT student",
                            path=config.init)
        _same_vocabulary(load_tokenizer(artifact.file("tokenizer")), teacher_tokenizer, config.init)
        encoder = load_classifier(artifact).bert
        student = TinyBertClassifier({"bert": artifact.manifest["architecture"]["config"]["bert"], **head},
                                     encoder=encoder)
    console.log(f"student: initialised from {artifact.kind} artifact {config.init}")
    return student, [artifact]


def prepare_tinybert(config: TinyBertConfig, plan, weights: dict[str, float], teacher_artifact, teacher,
                     teacher_tokenizer, texts: Texts, num_labels: int, device: torch.device) -> PreparedStudent:
    student, parents = _initial_student(config, teacher_tokenizer, num_labels)
    set_dropout(student, config.dropout)
    student_bert, teacher_bert = student.bert.config, teacher.bert.config
    pairs = (parse_layer_map(plan.layer_map, student_bert.num_hidden_layers, teacher_bert.num_hidden_layers)
             if {"hidden_mse", "attention_mse"} & set(weights) else [])
    matches = [Match("embedding_mse", "hidden.0", "hidden.0", weights["embedding_mse"], projection="hidden")
               ] if "embedding_mse" in weights else []
    for name, output, projection in (("hidden_mse", "hidden", "hidden"), ("attention_mse", "attention", None)):
        if name in weights:  # the mapped layers share the weight: their mean, as TinyBERT's sum up to a factor
            matches += [Match(name, f"{output}.{s}", f"{output}.{t}", weights[name] / len(pairs), projection)
                        for s, t in pairs]
    projections = nn.ModuleDict({"hidden": nn.Linear(student_bert.hidden_size, teacher_bert.hidden_size)}
                                if {"embedding_mse", "hidden_mse"} & set(weights) else {})
    cached = teacher_outputs(teacher_artifact, teacher, teacher_tokenizer, texts, device=device)
    teacher.to(device).eval()
    console.log(f"student: TinyBERT {student_bert.num_hidden_layers}×{student_bert.hidden_size}, "
                f"{count_parameters(student):,} parameters; layer map {pairs or '-'}")

    def named_outputs(model, batch, names):
        """``logits``, ``hidden.N`` and ``attention.N`` of a BERT classifier, as far as ``names`` asks."""
        out = model.encode(**batch, output_hidden_states=any(name != "logits" for name in names))
        outputs = {"logits": out.logits} if "logits" in names else {}
        for name in names - {"logits"}:
            output, layer = name.split(".")
            states = out.hidden_states[int(layer) - (output == "attention")]
            outputs[name] = (states if output == "hidden"
                             else attention_scores(model.bert.encoder.layer[int(layer) - 1], states))
        return outputs

    def teacher_named_outputs(index, batch, names):
        with torch.no_grad():
            return named_outputs(teacher, batch, names)

    return PreparedStudent(model=student, tokenizer=teacher_tokenizer, encoded=TokenizedTexts(teacher_tokenizer, texts),
                           teacher_cache=cached, matches=matches, projections=projections,
                           student_outputs=lambda batch, names: named_outputs(student, batch, names),
                           teacher_outputs=teacher_named_outputs,
                           intermediate_module=nn.ModuleDict({"bert": student.bert, "projections": projections}),
                           prediction_only_after_intermediate=True,
                           plan_details={"layer_map": plan.layer_map, "layer_pairs": pairs,
                                         "init": str(config.init) if config.init else None},
                           parents=parents)
