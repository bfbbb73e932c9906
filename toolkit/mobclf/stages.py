"""Every stage of mobclf, declared as data: its config (each setting with default, help, choices and range), its
inputs and the function that runs it. ``mobclf.cli`` makes one command per stage from these declarations and
``mobclf.recipes`` one kind of recipe step, so the command line and recipes take exactly the same settings.

This module imports nothing heavy: the stage functions are named, not imported (see ``protocol.Stage``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import ClassVar

from mobclf.data.readers import FORMATS
from mobclf.protocol import ConfigError, Input, Stage, StageConfig, nested, setting, settings

RUNTIMES = ("executorch", "onnx")
SCHEMES = ("static", "dynamic")
EMBEDDINGS = ("int8", "fp32")
TARGETS = ("android", "onnx", "web", "all")
POS_WEIGHTS = ("none", "inverse", "sqrt_inverse")
IMPORTANCES = ("magnitude", "taylor")
TOKENIZERS = ("char", "jieba", "wordpiece")
HEADS = ("cls_linear", "cls_mlp", "cnn", "rnn", "bilstm_cnn_attn")  # models/bert.py
DEVICE = "auto (CUDA when present), cpu, cuda."
PARITY_TEXTS = 200  # validation texts a parity check runs, by default
PARITY_SEED = 0  # which ones, by default


@dataclass(frozen=True)
class Tolerance(StageConfig):
    """How close an exported file must stay to the fp32 model (export's parity check, which quantize runs too)."""

    min_agreement: float = setting(0.98, "Least share of texts whose thresholded labels must match the fp32 "
                                   "model's.", min=0, max=1)
    max_prob_diff: float = setting(0.2, "Largest |Δ probability| allowed between an exported file and the fp32 "
                                   "model.", min=0, max=1)


@dataclass(frozen=True)
class ParityCheck(StageConfig):
    """Export's parity check (``export/parity.py``), which quantize runs too, on the same texts: so both agree on
    what "agrees with fp32" means."""

    texts: int = setting(PARITY_TEXTS, "Validation texts run through the fp32 model and every exported file.",
                         flag="parity-texts", min=1)
    tolerance: Tolerance = field(default_factory=Tolerance)
    accept_failure: bool = setting(False, "Write even when a file fails the parity check (its certificate says so, "
                                   "and `mobclf bench` flags it).", flag="accept-parity-failure")


@dataclass(frozen=True)
class FitConfig(StageConfig):
    """The one training loop (``train/loop.py``): AdamW, linear warmup and cosine decay, early stopping."""

    epochs: int = setting(10, "Training epochs (early stopping may end sooner).", min=0)
    batch_size: int = setting(64, "Examples per optimizer step.", min=1)
    lr: float | None = setting(1e-3, "Peak learning rate.", min=0, min_open=True)
    weight_decay: float = setting(0.01, "AdamW weight decay.", min=0)
    warmup_ratio: float = setting(0.1, "Share of the steps spent warming the learning rate up.", min=0, max=1)
    patience: int = setting(3, "Early stopping: epochs without a better val micro-F1.", min=1)
    grad_clip: float = setting(1.0, "Largest gradient norm.", min=0, min_open=True)
    seed: int = setting(42, "Seed of the weights' initialisation and the batch order.")
    accumulate: int = setting(1, "Gradient accumulation: each batch in N pieces, one after the other (the same "
                              "update with 1/N of the activation memory).", min=1)
    precision: str = setting("fp32", "bf16: autocast the forward passes to bfloat16 (GPUs with bf16; slow on most "
                             "CPUs).", choices=("fp32", "bf16"))
    save_every: int = setting(0, "Save the training state every N optimizer steps too (it is saved at every epoch "
                              "end); the same command run again resumes from it.", min=0)
    restart: bool = setting(False, "Discard the saved state of an unfinished run and start over.")


@dataclass(frozen=True)
class ClassifierConfig(StageConfig):
    """How a classifier's loss weighs labels and how its per-label thresholds are tuned (``train/classifier.py``)."""

    pos_weight: str = setting("sqrt_inverse", "Label weights of the BCE loss, from label frequency.",
                              choices=POS_WEIGHTS)
    threshold_objective: str = setting("micro", "F1 that per-label threshold tuning maximises.",
                                       choices=("micro", "macro"))


@dataclass(frozen=True)
class LabelledFileOptions(StageConfig):
    """How a labelled ``--file`` is read (as ``mobclf data prepare`` reads its input) and what becomes of labels the
    model does not know (``mobclf eval``, ``mobclf bench``)."""

    fmt: str | None = setting(None, "--file's format [default: from the extension: .jsonl/.json, .csv, .tsv, .txt = "
                              "THUCNews].", flag="format", choices=FORMATS)
    text_column: str = setting("text", "--file's text column (CSV/TSV) or field (JSONL).")
    label_column: str = setting("labels", "--file's label column (CSV/TSV) or field (JSONL).")
    label_sep: str | None = setting(None, "Separator of several labels in one CSV/TSV cell of --file, e.g. '|' "
                                    "[default: one label].")
    class_file: Path | None = setting(None, "THUCNews class.txt for a --file of text<TAB>label_id lines: label names "
                                      "in id order.")
    ignore_unknown_labels: bool = setting(False, "Drop labels of --file the model does not know (and rows left "
                                          "without a label), and say how many, instead of refusing the file.")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("text_column", "label_column", "label_sep"):
            if getattr(self, name) == "":
                raise ConfigError(name.replace("_", "-"), "must not be empty")

    def given(self) -> list[str]:
        """The options set to something other than their defaults, as command-line flags."""
        return [f"--{setting.flag}" for setting in settings(type(self))
                if getattr(self, setting.name) != setting.default]


@dataclass(frozen=True)
class EvalConfig(StageConfig):
    """``mobclf eval`` (``train/evaluate.py``): which split of a dataset artifact (or how a labelled file is read),
    which file of a bundle runs, where an eager model runs. It writes no artifact."""

    split: str = setting("test", "Split of --data (a --file is scored whole).", choices=("train", "val", "test"))
    bundle_file: str | None = setting(None, "A bundle's model file, e.g. model.onnx, or a cascade's runtime, "
                                      "executorch or onnxruntime [default: its first].", metavar="NAME")
    batch_size: int = setting(128, "Texts per model call (eager models and onnxruntime).", min=1)
    device: str = setting("auto", DEVICE)
    reading: LabelledFileOptions = field(default_factory=LabelledFileOptions)


@dataclass(frozen=True)
class PredictConfig(StageConfig):
    """``mobclf predict`` (``predict.py``): how many probabilities each record keeps, the batch size, which file of a
    bundle runs, where an eager model runs. It writes no artifact."""

    top_k: int | None = setting(None, "Keep the K most probable labels' probabilities [default: every label's].",
                                min=1)
    batch_size: int = setting(64, "Texts per model call.", min=1)
    file: str | None = setting(None, "A bundle's model file, e.g. model.pte or model.onnx, or a cascade's runtime, "
                               "executorch or onnxruntime [default: its first].", flag="bundle-file", metavar="NAME")
    device: str = setting("auto", DEVICE)


@dataclass(frozen=True)
class BenchConfig(StageConfig):
    """``mobclf bench``: the split of a dataset artifact (or a labelled file read as ``reading`` says), how many texts
    are timed, whether the TF-IDF baselines join, and the report's dataset name (``bench/report.py``)."""

    split: str = setting("test", "Split of --data (a --file is scored whole).", choices=("val", "test"))
    latency_texts: int = setting(200, "Real texts timed one at a time per variant and thread count.", min=1)
    tfidf: bool = setting(True, "Add the TF-IDF baselines: logistic regression, linear SVM and complement naive "
                          "Bayes, each with C or alpha chosen on val (trained on the dataset's train split; with "
                          "--file, the dataset the first model came from).")
    name: str | None = setting(None, "Dataset name in the report [default: the --data directory's or --file's "
                               "name].")
    native: bool = setting(True, "Also run every .pte in the native ExecuTorch runner (C++, 1 thread): cold start, "
                           "steady latency and peak RSS without Python (needs g++: "
                           "android-demo/tools/install-native-tools.sh; skipped with a note where it does not build).")
    cold_starts: int = setting(20, "Native runner: whole-process cold starts timed per .pte.", min=1)
    reading: LabelledFileOptions = field(default_factory=LabelledFileOptions)


BENCH = Stage(("bench",), BenchConfig, "mobclf.bench.report:run", produces="report",
              inputs=(Input("model", "Teacher, student, pruned, quantized or export artifact; repeat for each (the "
                            "teacher is the baseline).", multiple=True),
                      Input("data", "Dataset artifact (scored on --split); or give --file.", required=False),
                      Input("file", "A labelled file instead of --data: JSONL, CSV/TSV or THUCNews, read as `data "
                            "prepare` reads it.", required=False, file=True)),
              help="Size, latency, throughput, memory and accuracy parity of every variant against the teacher, on a "
                   "split of a dataset artifact or on a labelled file; writes report.json, report.md and report.html "
                   "with plots.", summary="mobclf.bench.report:summary")


@dataclass(frozen=True)
class PrepareConfig(StageConfig):
    """Reading, checking, filtering and splitting labelled text (``data/prepare.py``)."""

    format: str | None = setting(None, "Input format [default: from the extension: .jsonl/.json, .csv, .tsv, .txt = "
                                 "THUCNews].", choices=FORMATS)
    text_column: str = setting("text", "Text column (CSV/TSV) or field (JSONL).")
    label_column: str = setting("labels", "Label column (CSV/TSV) or field (JSONL).")
    label_sep: str | None = setting(None, "Separator of several labels in one CSV/TSV cell, e.g. '|' [default: one "
                                    "label].")
    split: tuple[float, float, float] = setting((0.8, 0.1, 0.1), "Ratios of the train, val and test splits made "
                                                "here (positive, summing to 1).", min=0, max=1, min_open=True,
                                                metavar="TRAIN VAL TEST")
    seed: int = setting(42, "Seed of the splits.")
    min_label_count: int | None = setting(None, "Drop labels with fewer training examples.", min=1)
    filter_std: float | None = setting(None, "Drop labels whose training count is below mean - K*std of the label "
                                       "counts.", min=0, metavar="K")

    def __post_init__(self) -> None:
        super().__post_init__()
        if abs(sum(self.split) - 1) > 1e-6:
            raise ConfigError("split", f"the train/val/test ratios must sum to 1, got {tuple(self.split)}")


DATA_PREPARE = Stage(("data", "prepare"), PrepareConfig, "mobclf.data.prepare:run", produces="dataset",
                     inputs=(Input("input", "Labelled file, split into train/val/test.", required=False, file=True,
                                   argument=True),
                             Input("train", "Training file (instead of INPUT); val/test not given are carved from "
                                   "it.", required=False, file=True),
                             Input("val", "Validation file, kept as it is.", required=False, file=True),
                             Input("test", "Test file, kept as it is.", required=False, file=True),
                             Input("class-file", "THUCNews class.txt: label names, one per line, in id order.",
                                   required=False, file=True)),
                     help="Check, filter and split labelled text into a dataset artifact. INPUT (or --train) alone "
                          "is split into train/val/test; a --val or --test not given is carved from it.",
                     summary="mobclf.data.prepare:summary")


@dataclass(frozen=True)
class PretrainConfig(StageConfig):
    """Masked-LM pre-training of a BERT with whole-word masking (``train/pretrain.py``)."""

    tokenizer: str = setting("char", "Tokenizer built from the texts.", choices=TOKENIZERS)
    vocab_size: int | None = setting(None, "Largest vocabulary, most frequent tokens first.", min=10)
    min_freq: int = setting(1, "Least count of a token kept in the vocabulary.", min=1)
    max_length: int = setting(128, "Tokens per text (longer texts are cut).", min=4)
    layers: int = setting(4, "Transformer layers.", min=1)
    hidden: int = setting(256, "Hidden size.", min=8)
    heads: int = setting(4, "Attention heads.", min=1)
    intermediate: int | None = setting(None, "FFN width [default: 4 × hidden].", min=8)
    mask_prob: float = setting(0.15, "Chance that a word (or token, with --no-whole-word) is masked.", min=0, max=1,
                               min_open=True, max_open=True)
    whole_word: bool = setting(True, "Mask all characters of a jieba word together.")
    val_fraction: float = setting(0.02, "Texts held out (at most 2,000).", min=0, max=1, min_open=True,
                                  max_open=True)
    fit: FitConfig = nested(FitConfig, "Training.", epochs={"default": 3, "min": 1}, lr={"default": 5e-4},
                            batch_size={"default": 32}, save_every={"default": 500},
                            patience={"help": "Early stopping: epochs without a lower val MLM loss."})
    device: str = setting("auto", DEVICE)


PRETRAIN = Stage(("pretrain",), PretrainConfig, "mobclf.train.pretrain:run", produces="pretrained",
                 inputs=(Input("corpus", "Repeatable: unlabelled texts, .jsonl with 'text' or .txt one per line "
                               "(required unless --data).", required=False, multiple=True, file=True),
                         Input("data", "Dataset artifact whose train texts join the corpus.", required=False),
                         Input("tokenizer-dir", "A saved tokenizer to reuse (e.g. <teacher artifact>/tokenizer) "
                               "instead of building one.", required=False),
                         Input("init", "Continue an earlier pretrain artifact (its tokenizer and geometry).",
                               required=False)),
                 help="Pre-train a BERT masked LM on unlabelled text (whole-word masking), for train-teacher --init. "
                      "An interrupted run resumes when the same command is run again.",
                 summary="mobclf.train.pretrain:summary")


BERT_DROPOUT = "Dropout in the BERT layers and the head (0: none, e.g. to compare runs exactly)."


@dataclass(frozen=True)
class TeacherConfig(StageConfig):
    """A BERT teacher (``train/teacher.py``): geometry and tokenizer when trained from scratch (``--init`` gives
    both otherwise), its head and its training."""

    layers: int = setting(12, "Transformer layers.", min=1)
    hidden: int = setting(768, "Hidden size.", min=8)
    heads: int = setting(12, "Attention heads.", min=1)
    intermediate: int | None = setting(None, "FFN width [default: 4 × hidden].", min=8)
    head: str = setting("cls_linear", "Classification head: linear or MLP on [CLS]; over all token states a CNN, a "
                        "BiLSTM (rnn), or BiLSTM and CNN branches fused by self-attention (bilstm_cnn_attn).",
                        choices=HEADS)
    kernel_sizes: list[int] = setting([2, 3, 4], "Convolution widths of the cnn and bilstm_cnn_attn heads.")
    num_filters: int = setting(128, "Filters per kernel size of those heads.", flag="filters", min=1)
    rnn_hidden: int = setting(256, "Hidden size of each LSTM direction of the rnn and bilstm_cnn_attn heads.", min=1)
    tokenizer: str = setting("char", "Tokenizer built from the training texts.", choices=TOKENIZERS)
    vocab_size: int | None = setting(None, "Largest vocabulary, most frequent tokens first.", min=10)
    min_freq: int = setting(1, "Least count of a token kept in the vocabulary.", min=1)
    max_length: int = setting(32, "Tokens per text (longer texts are cut).", min=4)
    dropout: float = setting(0.1, BERT_DROPOUT, min=0, max=1, max_open=True)
    fit: FitConfig = nested(FitConfig, "Training.", epochs={"default": 10, "min": 1}, lr={"default": 1e-4},
                            batch_size={"default": 32})
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    device: str = setting("auto", DEVICE)


TRAIN_TEACHER = Stage(("train-teacher",), TeacherConfig, "mobclf.train.teacher:run", produces="teacher",
                      inputs=(Input("data", "Dataset artifact (from `mobclf data prepare`)."),
                              Input("init", "Start from a `mobclf pretrain` artifact or a local HF BERT checkpoint dir "
                                    "(never the hub).", required=False)),
                      help="Train a BERT teacher (from a config, or from a local checkpoint with --init).")


LORA_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]  # Qwen2's linears


@dataclass(frozen=True)
class LoraSettings(StageConfig):
    """The low-rank adapters (Hu et al. 2022, "LoRA") an LLM teacher trains in place of its weights (``peft``)."""

    rank: int = setting(8, "Rank of each adapter.", flag="lora-rank", min=1)
    alpha: float = setting(16.0, "Adapter scale numerator: updates are scaled by alpha / rank.", flag="lora-alpha",
                           min=0, min_open=True)
    dropout: float = setting(0.05, "Dropout on the adapters' input.", flag="lora-dropout", min=0, max=1,
                             max_open=True)
    modules: list[str] = setting(LORA_MODULES, "Linear layers of every decoder layer that get adapters.",
                                 flag="lora-modules")


@dataclass(frozen=True)
class LlmTeacherConfig(StageConfig):
    """An LLM teacher (``train/llm_teacher.py``): a local Qwen2 checkpoint fine-tuned with LoRA adapters, a linear
    head on each text's last token."""

    max_length: int = setting(64, "Tokens per text, its end token included (longer texts are cut).", min=2)
    dropout: float = setting(0.1, "Dropout before the head.", min=0, max=1, max_open=True)
    lora: LoraSettings = field(default_factory=LoraSettings)
    fit: FitConfig = nested(FitConfig, "Training.", epochs={"default": 3, "min": 1}, lr={"default": 2e-4},
                            batch_size={"default": 16})
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    device: str = setting("auto", DEVICE)


TRAIN_LLM_TEACHER = Stage(("train-llm-teacher",), LlmTeacherConfig, "mobclf.train.llm_teacher:run",
                          produces="teacher",
                          inputs=(Input("data", "Dataset artifact (from `mobclf data prepare`)."),
                                  Input("checkpoint", "Local HF Qwen2 checkpoint directory with its tokenizer files "
                                        "(never the hub).")),
                          help="Fine-tune an LLM teacher: a local Qwen2 checkpoint with LoRA adapters (merged into "
                               "the artifact) and a classification head on the last token.")


@dataclass(frozen=True)
class KnowledgeDistillation(StageConfig):
    """What every student learns from its teacher (``distill/distill.py``, losses in ``distill/losses.py``)."""

    losses: dict[str, float] = setting({"soft_kd": 1.0, "hard_bce": 1.0}, "Repeatable NAME=WEIGHT: soft_kd, "
                                       "hard_bce and the student's intermediate losses.", flag="loss", min=0,
                                       metavar="NAME=WEIGHT")
    temperature: float = setting(2.0, "soft_kd temperature.", min=0, min_open=True)
    intermediate_epochs: int = setting(0, "Epochs of intermediate losses alone before the main stage.", min=0)
    tfidf_teacher: bool = setting(False, "The TF-IDF baseline (logistic regression or complement naive Bayes, the "
                                  "better on val, fitted on the training split) teaches too.")
    teacher_weights: list[float] = setting([], "Weights of the teachers' soft targets, in order: --teacher, each "
                                           "--also-teacher, the TF-IDF teacher [default: equal].", min=0)


@dataclass(frozen=True)
class TokenStudentDistillConfig(StageConfig):
    """What every student with its own tokenizer shares (``distill/token_student.py``): soft-target KD (Hinton et
    al. 2015), FitNets hints (Romero et al. 2015) and attention transfer (Zagoruyko & Komodakis 2017); each
    architecture adds its geometry."""

    architecture: ClassVar[str]  # the name in mobclf.models.ARCHITECTURES

    kd: KnowledgeDistillation = nested(KnowledgeDistillation, "Distillation.",
                                       losses={"help": "Repeatable NAME=WEIGHT: soft_kd, hard_bce, hint_mse, "
                                               "attention_transfer."},
                                       intermediate_epochs={"help": "Epochs of hint_mse/attention_transfer alone "
                                                            "before the main stage (FitNets' hint stage)."})
    hint_layer: int | None = setting(None, "Teacher layer for hint_mse [default: the middle one].", min=0)
    hint_cache_gb: float = setting(1.0, "Cache the teacher's hint-layer states (fp16, on disk) up to this "
                                   "size; for more texts the teacher computes them batch by batch.", min=0)
    attention_layers: list[int] = setting([], "Teacher layers for attention_transfer [default: the last].")
    tokenizer: str = setting("char", "The student's own tokenizer, built from the training texts.",
                             choices=TOKENIZERS)
    vocab_size: int | None = setting(None, "Largest vocabulary, most frequent tokens first.", min=10)
    min_freq: int = setting(1, "Least count of a token kept in the vocabulary.", min=1)
    max_length: int | None = setting(None, "Tokens per text [default: the teacher's].", min=4)
    embedding_dim: int = setting(128, "Embedding width.", min=1)
    dropout: float = setting(0.5, "Dropout before the classifier.", min=0, max=1, max_open=True)
    vectors: Path | None = setting(None, "Pretrained embeddings: a directory with vocab.txt + vectors.npy.")
    fit: FitConfig = nested(FitConfig, "Training.", epochs={"default": 20, "min": 1})
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    device: str = setting("auto", DEVICE)

    def geometry(self) -> dict:
        """The architecture's own ``config`` keys (its settings below the shared ones)."""
        shared = {item.name for item in fields(TokenStudentDistillConfig)}
        return {item.name: getattr(self, item.name) for item in fields(self) if item.name not in shared}


@dataclass(frozen=True)
class TextCnnDistillConfig(TokenStudentDistillConfig):
    """A TextCNN student (Kim 2014)."""

    architecture: ClassVar[str] = "textcnn"
    kernel_sizes: list[int] = setting([2, 3, 4], "Convolution widths.")
    num_filters: int = setting(128, "Filters per kernel size.", flag="filters", min=1)


@dataclass(frozen=True)
class DpcnnDistillConfig(TokenStudentDistillConfig):
    """A DPCNN student (Johnson & Zhang 2017)."""

    architecture: ClassVar[str] = "dpcnn"
    num_filters: int = setting(128, "Filters of every convolution.", flag="filters", min=1)
    blocks: int = setting(2, "Downsampling blocks (each halves the length; exported programs pad texts to at least "
                          "4 × 2^blocks tokens, and with 2 or more to the max length).", min=0)


@dataclass(frozen=True)
class FastTextDistillConfig(TokenStudentDistillConfig):
    """A FastText student (Joulin et al. 2017): averaged token and hashed n-gram embeddings."""

    architecture: ClassVar[str] = "fasttext"
    ngrams: list[int] = setting([2], "Token n-gram sizes besides single tokens (2, 3).")
    buckets: int = setting(50_000, "Hash buckets shared by the n-grams of each size.", min=1)


@dataclass(frozen=True)
class TextRnnDistillConfig(TokenStudentDistillConfig):
    """A TextRNN student: a bidirectional LSTM or GRU, pooled by its last states or its mean."""

    architecture: ClassVar[str] = "textrnn"
    cell: str = setting("lstm", "Recurrent cell.", choices=("lstm", "gru"))
    hidden: int = setting(128, "Hidden size of each direction.", min=1)
    pooling: str = setting("last", "The final states of both directions, or the mean over tokens.",
                           choices=("last", "mean"))


@dataclass(frozen=True)
class BiLstmAttentionDistillConfig(TokenStudentDistillConfig):
    """A CNN-BiLSTM-attention student: optional convolution, BiLSTM, additive attention pooling (Yang et al. 2016);
    attention transfer reaches its attention weights."""

    architecture: ClassVar[str] = "bilstm_attn"
    hidden: int = setting(128, "Hidden size of each LSTM direction.", min=1)
    conv_kernel: int = setting(3, "Width of the convolution before the BiLSTM (0: none).", min=0)
    conv_filters: int = setting(128, "Filters of that convolution.", min=1)
    attention_dim: int = setting(64, "Width of the additive attention.", min=1)


@dataclass(frozen=True)
class TinyBertDistillConfig(StageConfig):
    """A TinyBERT student (Jiao et al. 2020): embedding, hidden-state and attention distillation layer by layer,
    then prediction-layer distillation."""

    kd: KnowledgeDistillation = nested(KnowledgeDistillation, "Distillation.",
                                       losses={"help": "Repeatable NAME=WEIGHT: soft_kd, hard_bce, embedding_mse, "
                                               "hidden_mse, attention_mse."},
                                       intermediate_epochs={"help": "Epochs of the intermediate losses alone, after "
                                                            "which only the prediction losses train (TinyBERT's "
                                                            "two-stage task distillation)."})
    layer_map: str = setting("uniform", "Student:teacher layer pairs for hidden_mse/attention_mse, e.g. "
                             "1:3,2:6,3:9,4:12.")
    general_epochs: int = setting(0, "General distillation epochs over --general-texts (intermediate losses on "
                                  "unlabelled text, before task distillation).", min=0)
    layers: int = setting(4, "Transformer layers (--init gives them instead).", min=1)
    hidden: int = setting(312, "Hidden size.", min=8)
    heads: int = setting(12, "Attention heads.", min=1)
    intermediate: int = setting(1200, "FFN width.", min=8)
    dropout: float = setting(0.1, BERT_DROPOUT, min=0, max=1, max_open=True)
    fit: FitConfig = nested(FitConfig, "Training (a lower --lr suits TinyBERT: 1e-4 from a pretrained --init, 5e-4 "
                            "from scratch).", epochs={"default": 20, "min": 1})
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    device: str = setting("auto", DEVICE)


_DISTILL_INPUTS = (Input("teacher", "Teacher artifact."),
                   Input("also-teacher", "One more teacher artifact (repeatable): its soft targets are averaged "
                         "with the teacher's per label (--teacher-weights); hints and attention come from --teacher.",
                         required=False, multiple=True),
                   Input("data", "Dataset artifact the teacher was trained on."),
                   Input("unlabeled", "Unlabelled transfer texts (.jsonl with 'text', or .txt); the teacher labels "
                         "them softly.", required=False, file=True))
TOKEN_STUDENTS = {
    "textcnn": (TextCnnDistillConfig, "a TextCNN"), "dpcnn": (DpcnnDistillConfig, "a DPCNN"),
    "fasttext": (FastTextDistillConfig, "a FastText"), "textrnn": (TextRnnDistillConfig, "a TextRNN (BiLSTM/BiGRU)"),
    "bilstm-attn": (BiLstmAttentionDistillConfig, "a CNN-BiLSTM with attention pooling")}
DISTILL_TOKEN_STUDENTS = {
    name: Stage(("distill", name), config, "mobclf.distill.distill:run_token_student", produces="student",
                inputs=_DISTILL_INPUTS, help=f"Distil a teacher into {what}: soft-target KD, FitNets hints, "
                "attention transfer.")
    for name, (config, what) in TOKEN_STUDENTS.items()}
DISTILL_TINYBERT = Stage(("distill", "tinybert"), TinyBertDistillConfig, "mobclf.distill.distill:run_tinybert",
                         produces="student",
                         inputs=(*_DISTILL_INPUTS,
                                 Input("general-texts", "Unlabelled texts for general distillation.", required=False,
                                       file=True),
                                 Input("init", "Start from a `mobclf pretrain` artifact or a TinyBERT student (same "
                                       "vocabulary as the teacher); its geometry replaces the geometry settings.",
                                       required=False)),
                         help="Distil a teacher into a TinyBERT: its layer-wise losses, then prediction-layer "
                              "distillation.")


@dataclass(frozen=True)
class PruneConfig(StageConfig):
    """Structured pruning and recovery distillation (``compress/prune.py``)."""

    ratio: float = setting(0.3, "Fraction of conv filters (TextCNN) or attention heads and FFN channels (TinyBERT) "
                           "removed.", min=0, max=1, min_open=True, max_open=True)
    importance: str = setting("magnitude", "Group L2 norm of the weights, or first-order Taylor |w·grad| on a few "
                              "training batches.", choices=IMPORTANCES)
    global_pruning: bool = setting(False, "Rank channels across layers (--global), or remove the same fraction in "
                                   "every layer (--per-layer).", flag="global", off="per-layer")
    steps: int = setting(1, "Iterative pruning: this many prune → recover rounds to reach --ratio.", min=1)
    prune_vocab: bool = setting(True, "Keep only the tokens seen in the training texts (smaller embedding and "
                                "vocab.txt).")
    losses: dict[str, float] = setting({"soft_kd": 1.0, "hard_bce": 1.0}, "Repeatable NAME=WEIGHT: soft_kd, "
                                       "hard_bce.", flag="loss", min=0, metavar="NAME=WEIGHT")
    temperature: float | None = setting(None, "soft_kd temperature [default: the student's distillation "
                                        "temperature].", min=0, min_open=True)
    taylor_batches: int = setting(8, "Training batches whose gradients the Taylor importance reads.", min=1)
    fit: FitConfig = nested(FitConfig, "Recovery training after each pruning step.",
                            epochs={"default": 3, "flag": "recovery-epochs", "help": "Recovery epochs after each "
                                    "pruning step (0: keep the pruned weights as they are)."},
                            lr={"default": None, "help": "Recovery learning rate [default: the student's training "
                                "lr]."})
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    device: str = setting("auto", DEVICE)


PRUNE = Stage(("prune",), PruneConfig, "mobclf.compress.prune:run", produces="pruned",
              inputs=(Input("from", "TextCNN or TinyBERT student (or pruned) artifact."),
                      Input("data", "Dataset artifact the student was trained on."),
                      Input("teacher", "Teacher to recover against [default: the one in the student's lineage].",
                            required=False)),
              help="Structured pruning (torch-pruning) of a TextCNN's filters or a TinyBERT's heads and FFN channels, "
                   "with vocabulary pruning, then recovery distillation from the teacher.")


@dataclass(frozen=True)
class QuantizeConfig(StageConfig):
    """INT8 post-training quantization (``compress/quantize.py``)."""

    runtime: str = setting("executorch", "ExecuTorch (PT2E, XNNPACK) → model.pte; ONNX (onnxruntime.quantization) → "
                           "model.onnx.", choices=RUNTIMES)
    scheme: str = setting("static", "static: int8 activations calibrated on training texts; dynamic: activations "
                          "quantized per call (linear layers, for TinyBERT).", choices=SCHEMES)
    calibration_size: int = setting(256, "Training texts to calibrate on.", flag="calibration", min=1)
    embedding: str = setting("int8", "ExecuTorch: embedding tables as int8 with per-row scales, or fp32 as PT2E "
                             "leaves them.", choices=EMBEDDINGS)
    seed: int = setting(42, "Which training texts calibrate.")
    escalate: bool = setting(True, "When the file fails the parity check, try the next way (more calibration texts, "
                             "the output layer in fp32, dynamic, quantization-aware training, fp32 embeddings) "
                             "and keep the first that passes; every attempt is recorded.", off="no-escalate")
    qat_epochs: int = setting(3, "Quantization-aware training (PT2E QAT) epochs of the escalation's QAT attempt (0: "
                              "none).", min=0)
    qat_lr: float = setting(1e-4, "Learning rate of quantization-aware training.", min=0, min_open=True)
    parity: ParityCheck = field(default_factory=ParityCheck)


QUANTIZE = Stage(("quantize",), QuantizeConfig, "mobclf.compress.quantize:run", produces="quantized",
                 inputs=(Input("from", "Student or pruned artifact."),
                         Input("data", "Dataset artifact (calibration texts, val/test metrics).")),
                 help="INT8 quantization, measured on val (and test) in the runtime the model will run in; the file "
                      "gets `mobclf export`'s parity check first (same texts, same tolerance), and when it fails the "
                      "next way is tried, up to quantization-aware training.")


@dataclass(frozen=True)
class ExportConfig(StageConfig):
    """A device bundle with its parity certificate (``export/bundle.py``)."""

    target: str = setting("android", "android: model.pte (ExecuTorch, XNNPACK); onnx/web: model.onnx (onnxruntime); "
                          "all: both.", choices=TARGETS)
    parity: ParityCheck = field(default_factory=ParityCheck)
    ort: bool = setting(False, "Also write model.ort (ONNX Runtime Mobile format) beside model.onnx.")
    seed: int = setting(PARITY_SEED, "Which validation texts check parity.")


EXPORT = Stage(("export",), ExportConfig, "mobclf.export.bundle:run", produces="export",
               inputs=(Input("from", "Student, pruned or quantized artifact."),
                       Input("data", "Dataset artifact for the parity texts [default: the model's own].",
                             required=False)),
               help="Write a device bundle (model files, tokenizer, labels, thresholds, bundle.json) with a parity "
                    "certificate.")

ASSURANCE = 0.9
ASSURANCE_HELP = ("Share of bootstrap resamples of val in which the threshold must keep --keep too: a margin for new "
                  "texts (0: on val alone).")


@dataclass(frozen=True)
class CascadeConfig(StageConfig):
    """A cascade of two export bundles (``cascade.py``): the fast model answers, the accurate one when the fast
    model is not confident enough."""

    keep: float = setting(0.995, "Share of the accurate model's val micro-F1 the cascade keeps: the threshold is the "
                          "one of the fewest escalations that keeps it.", min=0, max=1, min_open=True)
    assurance: float = setting(ASSURANCE, ASSURANCE_HELP, min=0, max=1)


CASCADE = Stage(("cascade",), CascadeConfig, "mobclf.cascade:run", produces="cascade",
                inputs=(Input("fast", "Export bundle of the fast model (a TextCNN, say)."),
                        Input("accurate", "Export bundle of the accurate model (a TinyBERT, say)."),
                        Input("data", "Dataset artifact: its val split calibrates the threshold, its test split "
                              "scores the cascade.")),
                help="Bundle two exported models as a cascade, with its confidence threshold calibrated on val.")


@dataclass(frozen=True)
class EarlyExitConfig(StageConfig):
    """Exits after every layer of a BERT student, trained by self-distillation and calibrated on val
    (``distill/early_exit.py``)."""

    keep: float = setting(0.995, "Share of the student's own val micro-F1 the early exits keep: the threshold is the "
                          "one of the fewest layers run on average that keeps it.", min=0, max=1, min_open=True)
    assurance: float = setting(ASSURANCE, ASSURANCE_HELP, min=0, max=1)
    losses: dict[str, float] = setting({"soft_kd": 1.0, "hard_bce": 1.0}, "Repeatable NAME=WEIGHT: soft_kd (towards "
                                       "the last layer's predictions), hard_bce (the gold labels).", flag="loss",
                                       min=0, metavar="NAME=WEIGHT")
    temperature: float = setting(2.0, "soft_kd temperature.", min=0, min_open=True)
    pos_weight: str = setting("sqrt_inverse", "Label weights of the hard_bce loss, from label frequency.",
                              choices=POS_WEIGHTS)
    fit: FitConfig = nested(FitConfig, "Training of the exits (the student's own weights stay).",
                            epochs={"default": 10, "min": 1})
    device: str = setting("auto", DEVICE)


EARLY_EXIT = Stage(("early-exit",), EarlyExitConfig, "mobclf.distill.early_exit:run", produces="student",
                   inputs=(Input("from", "BERT or TinyBERT student (or teacher) artifact."),
                           Input("data", "Dataset artifact it was trained on: train teaches the exits, val "
                                 "calibrates the threshold, test scores it."),
                           Input("unlabeled", "Unlabelled texts (.jsonl with 'text', or .txt) whose last-layer "
                                 "predictions teach the exits too.", required=False, file=True)),
                   help="Give a BERT student an exit after every layer (DeeBERT, FastBERT): texts leave at the first "
                        "layer sure enough of its answer; the threshold is calibrated on val.")

STAGES = (DATA_PREPARE, PRETRAIN, TRAIN_TEACHER, TRAIN_LLM_TEACHER, *DISTILL_TOKEN_STUDENTS.values(), DISTILL_TINYBERT,
          PRUNE, EARLY_EXIT, QUANTIZE, EXPORT, CASCADE, BENCH)
