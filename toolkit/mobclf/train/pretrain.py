"""``mobclf pretrain``: BERT masked-LM pre-training (Devlin et al. 2019) on unlabelled text, with whole-word masking
for Chinese (Cui et al. 2019/2021, "Pre-Training with Whole Word Masking for Chinese BERT"), resumable.

The ``pretrained`` artifact holds ``checkpoint/`` (a standard local HF checkpoint: config.json, safetensors weights,
vocab.txt) and ``tokenizer/``; ``mobclf train-teacher --init <artifact>`` starts a teacher from both. While it
trains, the run's state lives next to ``out`` (``train.state``), so the same command run again continues an
interrupted run.
"""

from __future__ import annotations

import hashlib
import itertools
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from mobclf.artifacts import Artifact, lineage, load_artifact, sha256_file, write_artifact
from mobclf.console import console
from mobclf.data.dataset import Dataset, Texts, iter_texts, load_dataset, open_texts, write_texts
from mobclf.data.readers import text_digest
from mobclf.errors import UserError
from mobclf.models import count_parameters
from mobclf.models.bert import bert_config, hugging_face
from mobclf.text import Tokenizer, build_tokenizer, load_tokenizer
from mobclf.text.base import VOCAB_FILE
from mobclf.train import distributed
from mobclf.train.batching import TokenizedTexts, batch_indices
from mobclf.stages import PretrainConfig
from mobclf.train.loop import fit
from mobclf.train.state import open_state
from mobclf.train.masking import IGNORE, mask_tokens, replacement_ids, word_ids

if TYPE_CHECKING:
    from transformers import BertForMaskedLM

CHECKPOINT = "checkpoint"
CORPUS_FILE = "corpus.arrow"  # the distinct texts, in the run's state folder while it trains
UNIGRAM_MARGIN = 0.1  # nats below the frequency-only loss that count as having learnt to use context
MAX_VAL_TEXTS = 2000


def run(config: PretrainConfig, *, out: Path, corpus: list[Path] = (), data: Path | None = None,
        tokenizer_dir: Path | None = None, init: Path | None = None, force: bool = False) -> Artifact:
    """Pre-train a BERT masked LM on the ``corpus`` files plus the train texts of ``data``; write ``out``.

    ``init``, an earlier ``pretrained`` artifact, continues its training (more epochs, or other text) with its
    tokenizer and geometry; the tokenizer and geometry settings are then ignored. ``tokenizer_dir``: a saved
    tokenizer to reuse instead of building one.

    Early stopping and the kept weights follow the MLM loss on ``config.val_fraction`` of the texts (at most
    2,000), masked once with a fixed seed. The state is saved every ``config.fit.save_every`` steps; a run with the
    same settings resumes it, ``config.fit.restart`` discards it.
    """
    tokenizer, vocab_size, min_freq, max_length = config.tokenizer, config.vocab_size, config.min_freq, \
        config.max_length
    layers, hidden, heads, intermediate = config.layers, config.hidden, config.heads, config.intermediate
    mask_prob, whole_word, val_fraction = config.mask_prob, config.whole_word, config.val_fraction
    fit_config, device = config.fit, config.device
    corpus = list(corpus)
    out = Path(out)
    distributed.claim_output(out, force)
    run_device = distributed.setup(device)
    if not corpus and data is None:
        raise UserError("nothing to pre-train on; give --corpus FILE (repeatable) and/or --data DIR")
    dataset = load_dataset(data) if data is not None else None
    files, distinct, texts_digest = _scan_corpus(corpus, dataset)
    if init is not None and tokenizer_dir is not None:
        raise UserError("--init brings its own tokenizer; leave out --tokenizer-dir")
    init_artifact, init_checkpoint, init_tokenizer = (open_pretrained(init, max_length) if init is not None
                                                      else (None, None, None))
    state = open_state(out, config, fit_config.restart, corpus=[str(Path(path).resolve()) for path in corpus],
                       data=str(Path(data).resolve()) if data else None,
                       tokenizer_dir=str(Path(tokenizer_dir).resolve()) if tokenizer_dir else None,
                       init=init_artifact.sha256 if init_artifact else None, texts=texts_digest)
    texts = _corpus_texts(state.dir, corpus, dataset, distinct, texts_digest)
    if state.resumed:
        text_tokenizer = load_tokenizer(state.dir / "tokenizer")  # a rebuilt WordPiece vocabulary could differ
    elif init_tokenizer is not None:
        text_tokenizer = init_tokenizer
    elif tokenizer_dir is not None:
        text_tokenizer = load_tokenizer(tokenizer_dir, max_length=max_length)
        if not text_tokenizer.add_special_tokens:
            raise UserError("this tokenizer adds no [CLS]/[SEP]; BERT pre-training needs one that does",
                            path=tokenizer_dir)
    else:
        text_tokenizer = build_tokenizer(tokenizer, texts, max_length=max_length, add_special_tokens=True,
                                         vocab_size=vocab_size, min_freq=min_freq)

    n_val = min(MAX_VAL_TEXTS, max(1, round(val_fraction * len(texts))))
    if len(texts) <= n_val:
        raise UserError(f"{len(texts)} distinct text(s) are too few to hold {n_val} out for validation; "
                        "give more text")
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(fit_config.seed))
    val_texts, train_rows = texts.take(order[:n_val]), order[n_val:]  # training reads its rows of ``texts``
    masking = {"mask_prob": mask_prob, "mask_id": text_tokenizer.mask_id,
               "replacements": replacement_ids(text_tokenizer)}
    tokens = TokenizedTexts(text_tokenizer, texts, offsets=True)
    val = TokenizedTexts(text_tokenizer, val_texts, offsets=True).batch(torch.arange(n_val))  # masked once, whole
    val_inputs, val_labels = mask_tokens(val["input_ids"], word_ids(val_texts, val, whole_word),
                                         generator=torch.Generator().manual_seed(fit_config.seed), **masking)
    val_lengths = val["attention_mask"].sum(dim=1)
    if not (val_labels != IGNORE).any():
        raise UserError(f"no token of the {n_val} validation text(s) was masked; raise --val-fraction or --mask-prob")
    if not state.resumed and distributed.is_main():
        text_tokenizer.save(state.dir / "tokenizer")
    distributed.barrier()

    torch.manual_seed(fit_config.seed)
    hf = hugging_face()
    if init_artifact is not None:
        architecture = init_artifact.manifest["architecture"]["config"]
        model = hf.BertForMaskedLM.from_pretrained(str(init_checkpoint), local_files_only=True)
    else:
        architecture = bert_config(len(text_tokenizer.vocab), layers, hidden, heads, intermediate, max_length)
        model = hf.BertForMaskedLM(hf.BertConfig(**architecture))
    model.to(run_device)
    console.log(f"pretrain: {count_parameters(model):,} parameters, vocab {len(text_tokenizer.vocab):,}, "
                f"{len(train_rows):,} train / {n_val:,} val texts, on {run_device}")

    def batch_words(index: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The training texts ``index`` (positions in ``train_rows``) tokenized, and the word of each token."""
        rows = train_rows[index]
        batch = tokens.batch(rows)
        return batch, word_ids(texts.take(rows), batch, whole_word)

    def batch_loss(index: torch.Tensor) -> torch.Tensor:
        batch, words = batch_words(index)
        inputs, labels = mask_tokens(batch["input_ids"], words, **masking)
        logits, targets = _masked_logits(model, inputs, batch["attention_mask"], labels, run_device)
        return F.cross_entropy(logits, targets, reduction="sum") / max(1, len(targets))

    @torch.no_grad()
    def val_mlm() -> tuple[float, float]:
        """MLM loss and accuracy over the masked tokens of the validation texts (the same masks every time)."""
        model.eval()
        loss, correct, count = 0.0, 0, 0
        for index in batch_indices(len(val_texts), 128):
            width = int(val_lengths[index].max())
            logits, targets = _masked_logits(model, val_inputs[index, :width], val["attention_mask"][index, :width],
                                             val_labels[index, :width], run_device)
            loss += F.cross_entropy(logits.float(), targets, reduction="sum").item()
            correct += int((logits.argmax(dim=-1) == targets).sum())
            count += len(targets)
        return loss / count, correct / count

    initial_loss = val_mlm()[0]
    counts = torch.zeros(len(text_tokenizer.vocab), dtype=torch.long)
    for index in batch_indices(len(train_rows), 4096):
        batch, words = batch_words(index)
        counts += torch.bincount(batch["input_ids"][words >= 0], minlength=len(counts))
    unigram_loss = _unigram_loss(counts, val_labels)
    console.log(f"pretrain: val MLM loss before training {initial_loss:.4f}; guessing from token frequencies alone "
                f"would give {unigram_loss:.4f}")
    result = fit(model, len(train_rows), batch_loss, lambda: val_mlm()[0], fit_config, "pretrain",
                 checkpoint=state.checkpoint("pretrain"), score_name="val MLM loss", minimize=True,
                 lengths=tokens.lengths[train_rows])
    val_loss, val_accuracy = val_mlm()
    if val_loss > unigram_loss - UNIGRAM_MARGIN:
        console.log(f"[yellow]pretrain: warning: val MLM loss {val_loss:.4f} is no better than guessing from token "
                    f"frequencies ({unigram_loss:.4f}): the model has not learnt to use context yet, and its outputs "
                    "barely depend on the input, so fine-tuning from it can do worse than from scratch. Train longer "
                    "(`--init` continues this artifact) or with another --lr.")
    console.log(f"pretrain: best epoch {result.best_epoch}, val MLM loss {initial_loss:.4f} → {val_loss:.4f}, "
                f"masked-token accuracy {val_accuracy:.4f}")

    def write() -> None:
        with write_artifact(out, kind="pretrained", force=force) as artifact:
            model.cpu().save_pretrained(artifact.dir / CHECKPOINT)
            text_tokenizer.save(artifact.dir / "tokenizer")
            shutil.copyfile(artifact.dir / "tokenizer" / VOCAB_FILE, artifact.dir / CHECKPOINT / VOCAB_FILE)
            artifact.manifest.update({
                "architecture": {"name": "bert-mlm", "config": architecture},
                "params": count_parameters(model),
                "tokenizer": text_tokenizer.spec,
                "corpus": files,
                "dataset_texts": len(dataset.texts("train")) if dataset else None,
                "distinct_texts": len(texts),
                "masking": {"mask_prob": mask_prob, "whole_word": whole_word, "segmenter": "jieba (HMM off)"},
                "metrics": {"val_mlm_loss_initial": initial_loss, "val_mlm_loss": val_loss,
                            "val_unigram_loss": unigram_loss, "uses_context": val_loss <= unigram_loss - UNIGRAM_MARGIN,
                            "val_masked_accuracy": val_accuracy, "val_texts": n_val},
                "training": {"config": asdict(fit_config), "best_epoch": result.best_epoch, "seconds": result.seconds,
                             "history": result.history, "resumed_from": result.resumed_from},
                "init": str(init) if init else None,
                "lineage": lineage(([dataset.artifact] if dataset else []) + ([init_artifact] if init_artifact else []),
                                   fit_config.seed),
            })

    artifact = distributed.written_by_main(out, write)
    state.finish()
    return artifact


def summary(artifact: Artifact) -> str:
    """What ``mobclf pretrain`` says of the artifact it wrote."""
    metrics = artifact.manifest["metrics"]
    return f"val MLM loss {metrics['val_mlm_loss_initial']:.4f} → {metrics['val_mlm_loss']:.4f}"


def open_pretrained(path: Path, max_length: int) -> tuple[Artifact, Path, Tokenizer]:
    """A verified ``pretrained`` artifact, its HF checkpoint directory and its tokenizer cut to ``max_length``."""
    artifact = load_artifact(path, kind="pretrained")
    positions = artifact.manifest["architecture"]["config"]["max_position_embeddings"]
    if max_length > positions:
        raise UserError(f"was pre-trained for at most {positions} tokens; use --max-length {positions} or less",
                        path=path)
    return artifact, artifact.file(CHECKPOINT), load_tokenizer(artifact.file("tokenizer"), max_length=max_length)


def _distinct_texts(corpus: list[Path], dataset: Dataset | None,
                    per_file: list[int] | None = None) -> Iterator[str]:
    """Distinct texts (first occurrence kept) of the corpus files, then of the dataset's train split, a text at a
    time (what is remembered per text is its digest); ``per_file`` counts every file's texts."""
    def read(number: int, path: Path) -> Iterator[str]:
        for text in iter_texts(path):
            if per_file is not None:
                per_file[number] += 1
            yield text

    seen = set()
    for text in itertools.chain(*(read(number, path) for number, path in enumerate(corpus)),
                                dataset.texts("train") if dataset else ()):
        key = text_digest(text)
        if key not in seen:
            seen.add(key)
            yield text


def _hashed(texts: Iterable[str], digest) -> Iterator[str]:
    """``texts``, each added to the running ``digest`` (hashlib) as it passes."""
    for text in texts:
        digest.update(text.encode("utf-8") + b"\n")
        yield text


def _scan_corpus(corpus: list[Path], dataset: Dataset | None) -> tuple[list[dict], int, str]:
    """Each corpus file's text count and sha256 (an empty file refused), how many distinct texts there are, and the
    sha256 of them in order (what the run's settings name)."""
    per_file, digest = [0] * len(corpus), hashlib.sha256()
    distinct = sum(1 for _ in _hashed(_distinct_texts(corpus, dataset, per_file), digest))
    for path, count in zip(corpus, per_file):
        if not count:
            raise UserError("no texts; the corpus file is empty", path=path)
    files = [{"path": str(path), "texts": count, "sha256": sha256_file(path)} for path, count in zip(corpus, per_file)]
    return files, distinct, digest.hexdigest()


def _corpus_texts(state_dir: Path, corpus: list[Path], dataset: Dataset | None, distinct: int,
                  texts_digest: str) -> Texts:
    """The distinct texts, written once into the run's state folder (refused if they are not the ones scanned a
    moment before) and read from there memory-mapped, so pre-training on any number of texts holds the texts of its
    batch; a resumed run reads the file it wrote."""
    path = state_dir / CORPUS_FILE
    if distributed.is_main() and not path.is_file():
        partial, digest = path.with_name(path.name + ".tmp"), hashlib.sha256()
        write_texts(partial, _hashed(_distinct_texts(corpus, dataset), digest))
        if digest.hexdigest() != texts_digest:
            partial.unlink()
            raise UserError("a corpus file changed while it was being read; run the command again when nothing "
                            "writes to it")
        partial.rename(path)
    distributed.barrier()
    texts = open_texts(path)
    if len(texts) != distinct:
        raise UserError(f"holds {len(texts)} texts where the corpus has {distinct}; start over with --restart",
                        path=path)
    return texts


def _unigram_loss(counts: torch.Tensor, val_labels: torch.Tensor) -> float:
    """Cross-entropy of the masked validation tokens under the frequencies ``counts`` of the training tokens
    (per id; special tokens and padding left out; add-one smoothed): the
    loss of a model that ignores its input. MLM from scratch sits at this plateau for its first thousands of steps,
    with representations that are nearly the same for every text."""
    counts = counts.double() + 1
    log_p = (counts / counts.sum()).log()
    targets = val_labels[val_labels != IGNORE]
    return float(-log_p[targets].mean())


def _masked_logits(model: BertForMaskedLM, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   labels: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Vocabulary logits at the masked positions and their target ids (the MLM head runs on those positions only)."""
    input_ids, attention_mask, labels = input_ids.to(device), attention_mask.to(device), labels.to(device)
    states = model.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    chosen = labels != IGNORE
    return model.cls(states[chosen]), labels[chosen]
