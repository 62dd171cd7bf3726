import pytest

from lstmgen.errors import LstmgenError
from lstmgen.tokenize import EOR, UNK, UnknownTokens, Vocab, build_vocab, detokenize_words, tokenize_words


def test_char_roundtrip_and_eor_first():
    v = build_vocab("char", ["hello world", "!"])
    assert v.itos[0] == EOR and v.eor_id == 0
    assert v.decode(v.encode("hello world!")) == "hello world!"
    assert v.unk_id is None


def test_char_unknown_is_named_or_skipped():
    v = build_vocab("char", ["abc"])
    with pytest.raises(UnknownTokens) as e:
        v.encode("abz!", where="the prompt")
    assert "'z'" in str(e.value) and "'!'" in str(e.value) and "--skip-unknown" in str(e.value)
    assert v.decode(v.encode("abz", skip_unknown=True)) == "ab"
    assert v.unknown("abzz!") == ["z", "!"]


def test_decode_stops_at_end_of_record():
    v = build_vocab("char", ["ab"])
    assert v.decode([v.stoi["a"], v.eor_id, v.stoi["b"]]) == "a"


def test_word_tokenizer_splits_punctuation_not_contractions():
    assert tokenize_words("Hey, don't panic!") == ["Hey", ",", "don't", "panic", "!"]
    assert tokenize_words('He said "hi"... ok') == ["He", "said", '"', "hi", '"', ".", ".", ".", "ok"]


@pytest.mark.parametrize(
    "text",
    [
        "Hey, don't panic!",
        'He said "hi there" to me.',
        "A well-known (and/or famous) fact: 100% true...",
        "Why? Because; it's $5!",
        "She said 'hello' to me at 3:30 for $5.99, all 1,000 of them.",
    ],
)
def test_word_detokenize_gives_readable_text(text):
    assert detokenize_words(tokenize_words(text)) == text


def test_word_detokenize_output_retokenizes_to_the_same_tokens():
    tokens = ["a", "'", "b", "-", "c", '"', "d", ".", "(", "e", ")", "'", "s", "5", ".", "99", "'", "'"]
    assert tokenize_words(detokenize_words(tokens)) == tokens


def test_word_vocab_unk_min_freq_and_cap():
    v = build_vocab("word", ["a a a b b c", "a b"], min_freq=2)
    assert v.itos[:2] == [EOR, UNK]
    assert v.itos[2:] == ["a", "b"]  # most frequent first; c (seen once) is <unk>
    assert v.encode("a c zebra") == [v.stoi["a"], v.unk_id, v.unk_id]
    assert len(build_vocab("word", ["a a a b b c"], max_vocab=3)) == 3


def test_vocab_dict_roundtrip():
    v = build_vocab("word", ["x y z"])
    assert Vocab.from_dict(v.to_dict()).stoi == v.stoi


def test_undecodable_bytes_in_a_prompt_are_named_by_byte_and_offset():
    import os

    from lstmgen.tokenize import check_utf8

    assert check_utf8("Why \u00e9", "the prompt") == "Why \u00e9"
    argv = os.fsdecode(b"Why \xc3\xa9 \xff!")  # how Python hands such bytes over: 'Why \u00e9 \udcff!'
    with pytest.raises(LstmgenError, match=r"^the prompt is not valid UTF-8: byte 0xff at offset 7; convert"):
        check_utf8(argv, "the prompt")
    with pytest.raises(LstmgenError, match="character U\\+D800 at offset 1"):
        check_utf8("a\ud800", "line 2 of stdin")
