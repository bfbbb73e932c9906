"""Tokenizers: rules, ids, truncation, offsets, vocabulary limits, saved form and its errors."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
from tokenizers import Tokenizer as HFTokenizer

from mobclf.errors import UserError
from mobclf.text import SPECIAL_TOKENS, JiebaTokenizer, build_tokenizer, load_tokenizer, tokenizer_from_vocab
from mobclf.text.base import WHITESPACE, normalize_chars

MIXED = "ＮＢＡ球星Kobe得了81分！😀 iPhone15\u3000发布会，T恤衫热卖。"
TEXTS = [
    MIXED,
    "我爱北京天安门",
    "北京时间今晚，中国队2:1战胜日本队",
    "Apple发布iPhone 15：售价5999元",
    "小米汽车发布会在北京举行",
    "股市大涨　沪指站上3000点！",
    "",
]
KINDS = ("char", "jieba", "wordpiece")


def build(kind: str, *, add_special_tokens: bool = False, max_length: int = 32, **options):
    return build_tokenizer(kind, TEXTS, max_length=max_length, add_special_tokens=add_special_tokens, **options)


@pytest.fixture(scope="module")
def tokenizers() -> dict:
    """One tokenizer of each kind; jieba loads a 349k-word dictionary, so it is built once."""
    return {kind: build(kind, add_special_tokens=kind == "wordpiece") for kind in KINDS}


def tokens_of(tokenizer, text: str) -> list[str]:
    return [token for token, _, _ in tokenizer.tokenize(text)]


def test_char_rules():
    tokenizer = build("char")
    assert tokens_of(tokenizer, MIXED) == [
        "nba", "球", "星", "kobe", "得", "了", "81", "分", "!", "😀", "iphone15", "发", "布", "会", ",",
        "t", "恤", "衫", "热", "卖", "。"]
    assert tokens_of(tokenizer, "Ⅱ café\u200b①") == ["Ⅱ", "caf", "é", "①"]  # no NFKC, zero-width dropped
    assert tokens_of(build("char", lowercase=False), "iPhone ＡＢ") == ["iPhone", "AB"]


def test_jieba_rules(tokenizers):
    tokenizer = tokenizers["jieba"]
    assert tokens_of(tokenizer, "我爱北京天安门") == ["我", "爱", "北京", "天安门"]
    assert tokens_of(tokenizer, MIXED) == [
        "nba", "球星", "kobe", "得", "了", "81", "分", "!", "😀", "iphone15", "发布会", ",", "t恤衫", "热卖", "。"]
    # HMM off: unknown words stay split into characters ("杭研" is a word only with jieba's HMM)
    assert tokens_of(tokenizer, "网易杭研大厦") == ["网易", "杭", "研", "大厦"]


def test_special_ids_are_fixed(tokenizers):
    for tokenizer in tokenizers.values():
        assert tuple(tokenizer.vocab[:5]) == SPECIAL_TOKENS
        assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id) == (
            0, 1, 2, 3, 4)


@pytest.mark.parametrize("kind", KINDS)
def test_ids_round_trip_to_tokens(tokenizers, kind):
    tokenizer = tokenizers[kind]
    for text in TEXTS:
        encoding = tokenizer.encode(text)
        body = encoding.ids[1:-1] if tokenizer.add_special_tokens else encoding.ids
        if text:
            assert [tokenizer.vocab[i] for i in body] == tokens_of(tokenizer, text)
    unseen = tokenizer.encode("鳏寡孤独")  # characters not in the training texts
    assert set(unseen.ids) - {tokenizer.cls_id, tokenizer.sep_id} == {tokenizer.unk_id}


@pytest.mark.parametrize("kind", ["char", "jieba"])
def test_offsets_index_the_original_text(tokenizers, kind):
    tokenizer = tokenizers[kind]
    for text in TEXTS:
        tokens = tokenizer.tokenize(text)
        for token, start, end in tokens:
            assert normalize_chars(text[start:end], lowercase=True) == token
        if text:
            assert tokenizer.encode(text).offsets == [(start, end) for _, start, end in tokens]


def test_wordpiece_offsets_cover_tokens(tokenizers):
    tokenizer = tokenizers["wordpiece"]
    text = "Apple发布iPhone 15：售价5999元 鳏"
    encoding = tokenizer.encode(text)
    assert encoding.offsets[0] == encoding.offsets[-1] == (0, 0)
    for token_id, (start, end) in zip(encoding.ids[1:-1], encoding.offsets[1:-1]):
        token = tokenizer.vocab[token_id]
        if token_id == tokenizer.unk_id:
            assert end > start
        else:
            assert text[start:end].lower() == token.removeprefix("##")


def reconfigured(tokenizer, directory: Path, **changes):
    """``tokenizer`` saved, with ``changes`` written into its spec, and loaded again."""
    tokenizer.save(directory)
    spec = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))
    (directory / "tokenizer.json").write_text(json.dumps({**spec, **changes}), encoding="utf-8")
    return load_tokenizer(directory)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("add_special_tokens", [False, True])
def test_truncation_and_empty_texts(tokenizers, kind, add_special_tokens, tmp_path):
    tokenizer = reconfigured(tokenizers[kind], tmp_path, max_length=5, add_special_tokens=add_special_tokens)
    long_text = "北京" * 50
    encoding = tokenizer.encode(long_text)
    assert len(encoding.ids) == len(encoding.offsets) == 5
    if add_special_tokens:
        assert encoding.ids[0] == tokenizer.cls_id and encoding.ids[-1] == tokenizer.sep_id
        assert tokenizer.encode("").ids == tokenizer.encode(" \u3000\n").ids == [tokenizer.cls_id, tokenizer.sep_id]
    else:
        assert tokenizer.encode("").ids == tokenizer.encode(" \u3000\n").ids == [tokenizer.unk_id]
    texts = ["", long_text, "北京"]
    batch = tokenizer.encode_batch(texts)
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (3, 5)
    assert batch["attention_mask"].sum(dim=1).tolist() == [len(tokenizer.encode(text).ids) for text in texts]
    assert batch["input_ids"][batch["attention_mask"] == 0].eq(tokenizer.pad_id).all()
    assert tokenizer.encode_batch([""])["input_ids"].shape == (1, 2 if add_special_tokens else 1)


def test_max_length_must_leave_room_for_a_token():
    with pytest.raises(UserError, match="max_length"):
        build("char", max_length=2, add_special_tokens=True)


VOCAB_TEXTS = ["甲 甲 甲 乙 乙 丙 丙 丁", "戊 戊 己"]


def test_vocab_size_and_min_freq():
    full = build_tokenizer("char", VOCAB_TEXTS, max_length=8, add_special_tokens=False)
    assert full.vocab[5:] == ["甲", "丙", "乙", "戊", "丁", "己"]  # by count, ties by token string
    frequent = build_tokenizer("char", VOCAB_TEXTS, max_length=8, add_special_tokens=False, min_freq=2)
    assert frequent.vocab[5:] == ["甲", "丙", "乙", "戊"]
    capped = build_tokenizer("char", VOCAB_TEXTS, max_length=8, add_special_tokens=False, vocab_size=7)
    assert capped.vocab[5:] == ["甲", "丙"] and capped.spec["vocab_size"] == 7
    assert capped.encode("乙").ids == [capped.unk_id]


def test_jieba_vocab_size_and_min_freq():
    tokenizer = build_tokenizer("jieba", VOCAB_TEXTS + ["北京 北京 北京 北京"], max_length=8,
                                add_special_tokens=False, vocab_size=8, min_freq=2)
    assert tokenizer.vocab[5:] == ["北京", "甲", "丙"]


def test_wordpiece_vocab_size_is_a_cap():
    tokenizer = build("wordpiece", vocab_size=40)  # smaller than the alphabet of TEXTS
    assert len(tokenizer.vocab) <= 40 and tuple(tokenizer.vocab[:5]) == SPECIAL_TOKENS


@pytest.mark.parametrize("kind", KINDS)
def test_save_then_load_gives_identical_ids_and_spec(tokenizers, kind, tmp_path):
    tokenizer = tokenizers[kind]
    tokenizer.save(tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert loaded.spec == tokenizer.spec == json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8"))
    assert loaded.vocab == tokenizer.vocab == (tmp_path / "vocab.txt").read_text(encoding="utf-8").splitlines()
    texts = TEXTS + ["鳏寡孤独", "x" * 200]
    assert loaded.encode_batch(texts)["input_ids"].equal(tokenizer.encode_batch(texts)["input_ids"])
    assert loaded.encode_batch(texts)["offsets"] == tokenizer.encode_batch(texts)["offsets"]


@pytest.mark.parametrize("kind", KINDS)
def test_pickle_keeps_ids(tokenizers, kind):
    """DataLoader workers started with spawn receive the tokenizer pickled."""
    tokenizer = tokenizers[kind]
    assert pickle.loads(pickle.dumps(tokenizer)).encode(MIXED) == tokenizer.encode(MIXED)


def test_saved_hf_tokenizer_json_gives_the_same_ids(tokenizers, tmp_path):
    tokenizer = tokenizers["wordpiece"]
    tokenizer.save(tmp_path)
    standalone = HFTokenizer.from_file(str(tmp_path / "hf_tokenizer.json"))
    for text in TEXTS[:-1] + ["北京" * 50]:
        assert standalone.encode(text).ids == tokenizer.encode(text).ids


def test_jieba_user_dict_changes_segmentation(tokenizers, tmp_path):
    user_dict = tmp_path / "user.txt"
    user_dict.write_text("小米汽车\n天安门 0\n热卖榜 5 n\n", encoding="utf-8")
    tokenizer = build("jieba", user_dict=user_dict)
    assert tokens_of(tokenizers["jieba"], "小米汽车发布会") == ["小米", "汽车", "发布会"]
    assert tokens_of(tokenizer, "小米汽车发布会") == ["小米汽车", "发布会"]
    assert "天安门" not in tokens_of(tokenizer, "我爱北京天安门")
    assert tokenizer.spec["user_dict"] == "user.txt"
    dictionary = tokenizer.dictionary.decode("utf-8").split("\n")
    assert "热卖榜 5" in dictionary and "天安门 0" in dictionary


def test_jieba_uses_only_the_saved_dictionary(tokenizers, tmp_path):
    tokenizer = tokenizers["jieba"]
    tokenizer.save(tmp_path)
    with open(tmp_path / "jieba_dict.txt", "a", encoding="utf-8") as dictionary:
        dictionary.write("网易杭研 100000\n")
    assert tokens_of(tokenizer, "网易杭研大厦") == ["网易", "杭", "研", "大厦"]
    assert tokens_of(load_tokenizer(tmp_path), "网易杭研大厦") == ["网易杭研", "大厦"]


def test_jieba_hmm_is_recorded(tokenizers, tmp_path):
    plain = tokenizers["jieba"]
    tokenizer = JiebaTokenizer(plain.vocab, dictionary=plain.dictionary, hmm=True, max_length=32,
                               add_special_tokens=False)
    assert tokens_of(tokenizer, "网易杭研大厦") == ["网易", "杭研", "大厦"]
    tokenizer.save(tmp_path)
    assert load_tokenizer(tmp_path).spec["hmm"] is True


def test_jieba_bad_user_dict(tmp_path):
    user_dict = tmp_path / "user.txt"
    user_dict.write_text("好词 3\nNew York 3\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"user.txt:2:"):
        build("jieba", user_dict=user_dict)
    with pytest.raises(UserError, match="not found"):
        build("jieba", user_dict=tmp_path / "missing.txt")


def test_tokenizer_from_bert_vocab_keeps_its_ids(tmp_path):
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(1, 100)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]",
                                                                    "北", "京", "app", "##le", "##s"]
    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = tokenizer_from_vocab(vocab_file, max_length=16)
    assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id) == (
        0, 100, 101, 102, 103)
    assert tokenizer.encode("北京Apples 上海").ids == [101, 104, 105, 106, 107, 108, 100, 100, 102]
    tokenizer.save(tmp_path / "saved")
    assert load_tokenizer(tmp_path / "saved").encode("Apples").ids == tokenizer.encode("Apples").ids


@pytest.mark.parametrize("kind", KINDS)
def test_load_refuses_a_missing_vocab_file(tokenizers, kind, tmp_path):
    tokenizers[kind].save(tmp_path)
    (tmp_path / "vocab.txt").unlink()
    with pytest.raises(UserError, match="vocab.txt: vocabulary file is missing"):
        load_tokenizer(tmp_path)


def test_load_refuses_damaged_directories(tokenizers, tmp_path):
    saved = tmp_path / "saved"
    tokenizers["jieba"].save(saved)

    def damaged(name: str, change) -> Path:
        directory = tmp_path / name
        shutil.copytree(saved, directory)
        change(directory)
        return directory

    cases = {
        "no tokenizer.json": lambda d: (d / "tokenizer.json").unlink(),
        "cannot read the tokenizer spec": lambda d: (d / "tokenizer.json").write_text("{", encoding="utf-8"),
        "tokens where tokenizer.json says": lambda d: (d / "vocab.txt").write_text(
            "".join(token + "\n" for token in SPECIAL_TOKENS), encoding="utf-8"),
        "lacks the special tokens": lambda d: (d / "vocab.txt").write_text(
            (d / "vocab.txt").read_text(encoding="utf-8").replace("[MASK]", "MASK"), encoding="utf-8"),
        "jieba_dict.txt.*cannot read the jieba dictionary": lambda d: (d / "jieba_dict.txt").unlink(),
        "invalid dictionary entry": lambda d: (d / "jieba_dict.txt").write_text("北京 lots\n", encoding="utf-8"),
    }
    for number, (message, change) in enumerate(cases.items()):
        with pytest.raises(UserError, match=message):
            load_tokenizer(damaged(f"case{number}", change))


def test_bad_build_options():
    with pytest.raises(UserError, match="unknown tokenizer"):
        build("bpe")
    with pytest.raises(UserError, match="jieba tokenizer only"):
        build("char", user_dict=Path("user.txt"))


def test_documented_whitespace_is_pythons():
    assert set(WHITESPACE) == {chr(code) for code in range(0x110000) if chr(code).isspace()}
