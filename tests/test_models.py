"""Model shapes, padding invariance, pretrained vectors and loading a local HF checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import BertConfig, BertModel

from mobclf.errors import UserError
from mobclf.models import architecture_of, build_model
from mobclf.models.bert import HEADS, BertClassifier, TinyBertClassifier, attention_scores, bert_config
from mobclf.models.textcnn import TextCNN, load_pretrained_vectors

TEXTCNN = {"vocab_size": 50, "embedding_dim": 16, "kernel_sizes": [2, 3, 5], "num_filters": 8, "dropout": 0.0,
           "num_labels": 4}


def batch_with_padding():
    ids = torch.tensor([[5, 6, 7, 8, 9, 10], [11, 12, 13, 0, 0, 0]])
    return ids, (ids != 0).long()


def test_textcnn_shapes_and_padding_does_not_change_predictions():
    model = TextCNN(TEXTCNN).eval()
    ids, mask = batch_with_padding()
    assert model.features(ids, mask).shape == (2, 6, 24)
    batched = model(ids, mask)
    alone = model(ids[1:, :3], mask[1:, :3])
    assert batched.shape == (2, 4)
    torch.testing.assert_close(batched[1:], alone)


@pytest.mark.parametrize("head", HEADS)
def test_bert_heads_give_one_logit_per_label_and_rebuild_from_their_architecture(head):
    config = {"bert": bert_config(50, layers=1, hidden=16, heads=2, intermediate=32, max_length=16), "head": head,
              "num_labels": 3, "kernel_sizes": [2, 3], "num_filters": 4, "rnn_hidden": 6}
    model = BertClassifier(config).eval()
    ids, mask = batch_with_padding()
    out = model.encode(ids, mask, output_hidden_states=True)
    assert out.logits.shape == (2, 3) and len(out.hidden_states) == 2
    # the padded text's logits are those it has alone (the heads over all tokens see zeros at padding)
    torch.testing.assert_close(out.logits[1:], model(ids[1:, :3], mask[1:, :3]))
    rebuilt = build_model(architecture_of(model))
    rebuilt.load_state_dict(model.state_dict())
    torch.testing.assert_close(rebuilt.eval()(ids, mask), model(ids, mask))


def test_bert_from_local_checkpoint_and_a_clear_error_for_a_non_checkpoint(tmp_path):
    encoder = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=32), add_pooling_layer=False)
    encoder.save_pretrained(tmp_path / "ckpt")
    model = BertClassifier.from_checkpoint(tmp_path / "ckpt", {"head": "cls_linear", "num_labels": 2})
    torch.testing.assert_close(model.bert.embeddings.word_embeddings.weight, encoder.embeddings.word_embeddings.weight)
    assert model.config["bert"]["hidden_size"] == 16
    with pytest.raises(UserError, match="no config.json"):
        BertClassifier.from_checkpoint(tmp_path, {"head": "cls_linear", "num_labels": 2})
    # a BERT config over weights of something else: refused, not silently left at random initialisation
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text((tmp_path / "ckpt" / "config.json").read_text())
    save_file({"linear.weight": torch.zeros(2, 2)}, str(tmp_path / "other" / "model.safetensors"))
    with pytest.raises(UserError, match="lacks or mis-shapes encoder weights"):
        BertClassifier.from_checkpoint(tmp_path / "other", {"head": "cls_linear", "num_labels": 2})


def test_unknown_head_and_bad_geometry_are_user_errors():
    with pytest.raises(UserError, match="unknown teacher head"):
        BertClassifier({"bert": bert_config(20, 1, 16, 2, 32, 16), "head": "pooler", "num_labels": 2})
    with pytest.raises(UserError, match="multiple of --heads"):
        bert_config(20, 1, 30, 4, None, 16)


def test_pretrained_vectors_fill_known_tokens(tmp_path):
    (tmp_path / "vocab.txt").write_text("新\n闻\nx\n", encoding="utf-8")
    vectors = np.arange(6, dtype=np.float32).reshape(3, 2)
    np.save(tmp_path / "vectors.npy", vectors)
    matrix, coverage = load_pretrained_vectors(["[PAD]", "[UNK]", "闻", "新", "没"], tmp_path / "vocab.txt",
                                               tmp_path / "vectors.npy")
    assert matrix.shape == (5, 2) and coverage == pytest.approx(2 / 3)
    assert matrix[2].tolist() == [2.0, 3.0] and matrix[3].tolist() == [0.0, 1.0] and matrix[0].abs().sum() == 0
    with pytest.raises(UserError, match="not found"):
        load_pretrained_vectors(["a"], tmp_path / "missing.txt", tmp_path / "vectors.npy")


def test_tinybert_is_its_own_architecture_and_its_recomputed_scores_are_the_attention_logits():
    config = {"bert": bert_config(50, layers=2, hidden=16, heads=4, intermediate=32, max_length=16),
              "head": "cls_linear", "num_labels": 3}
    model = TinyBertClassifier(config).eval()
    assert architecture_of(model)["name"] == "tinybert"
    assert type(build_model(architecture_of(model))) is TinyBertClassifier
    model.bert.set_attn_implementation("eager")
    ids, mask = batch_with_padding()
    out = model.encode(ids, mask, output_hidden_states=True, output_attentions=True)
    for layer in (1, 2):
        scores = attention_scores(model.bert.encoder.layer[layer - 1], out.hidden_states[layer - 1])
        assert scores.shape == (2, 4, 6, 6)
        masked = scores + (1 - mask[:, None, None, :].float()) * torch.finfo(scores.dtype).min
        torch.testing.assert_close(masked.softmax(-1), out.attentions[layer - 1])
