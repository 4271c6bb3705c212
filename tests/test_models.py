"""The toy tokenizer: one id per character, as its first definition (a regex split into characters and a
word-level vocabulary), which the committed study was tokenised with."""

from __future__ import annotations

from rpo.models import TOY_CHARS, TOY_SPECIALS, build_toy_tokenizer

TEXTS = [
    "",
    "a",
    "The quick brown fox, 42 times!\n\nNext line.",
    "spaces   and\ttabs\rand a form feed\x0c",
    "unknown: héllo wörld ✓ 日本 🙂",
    "specials inline <eos> and <pad><bos><unk>, broken <eo s> and <<eos>>",
    "P: what is 2+2?\nA:" * 40,
]


def _first_definition():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(TOY_SPECIALS + TOY_CHARS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>", unk_token="<unk>"
    )


def test_toy_tokenizer_ids_and_decoding_match_its_first_definition():
    new, old = build_toy_tokenizer(), _first_definition()
    for text in TEXTS:
        assert new(text)["input_ids"] == old(text)["input_ids"], text
        ids = new(text)["input_ids"]
        assert new.decode(ids) == old.decode(ids)
        assert new.decode(ids, skip_special_tokens=True) == old.decode(ids, skip_special_tokens=True)
    batch = new(TEXTS)["input_ids"]
    assert batch == old(TEXTS)["input_ids"]
    assert [len(b) for b in batch[:3]] == [0, 1, len(TEXTS[2])]  # one token per character
    assert new.backend_tokenizer.encode_batch(TEXTS[2:4])[1].ids == old.backend_tokenizer.encode(TEXTS[3]).ids


def test_toy_tokenizer_round_trips_its_characters():
    tok = build_toy_tokenizer()
    text = "".join(TOY_CHARS)
    assert tok.decode(tok(text)["input_ids"]) == text
    assert tok.convert_ids_to_tokens(tok("<eos>")["input_ids"]) == ["<eos>"]
    assert tok.unk_token_id in tok("é")["input_ids"]
