"""TextTokenizer against transformers' own tokenizer: ids, truncation sides, too-long errors."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from trident.tokenization import InputTooLongError, TextTokenizer


@pytest.fixture(scope="module")
def tokenizers(minilm_dir):
    return TextTokenizer(minilm_dir / "tokenizer.json", max_length=16), AutoTokenizer.from_pretrained(str(minilm_dir))


TEXTS = ["A man is playing a guitar.", "word " * 40, "naïve café 🍕", "x"]


def test_ids_match_transformers(tokenizers):
    ours, reference = tokenizers
    batch = ours.encode(TEXTS)
    for row, text in enumerate(TEXTS):
        expected = reference(text, truncation=True, max_length=16)["input_ids"]
        assert batch.input_ids[row, : batch.lengths[row]].tolist() == expected
        assert batch.lengths[row] == len(expected)


def test_left_truncation_matches_transformers(tokenizers):
    ours, reference = tokenizers
    reference.truncation_side = "left"
    expected = reference(TEXTS[1], truncation=True, max_length=16)["input_ids"]
    reference.truncation_side = "right"
    batch = ours.encode([TEXTS[1]], left=[True])
    assert batch.input_ids[0, : batch.lengths[0]].tolist() == expected


def test_pairs_get_token_types(tokenizers):
    ours, reference = tokenizers
    batch = ours.encode(["query"], pairs=["a document"])
    expected = reference("query", "a document")
    assert batch.input_ids[0, : batch.lengths[0]].tolist() == expected["input_ids"]
    assert batch.token_type_ids[0, : batch.lengths[0]].tolist() == expected["token_type_ids"]


def test_too_long_without_truncation_names_index_and_count(tokenizers):
    ours, reference = tokenizers
    with pytest.raises(InputTooLongError) as error:
        ours.encode(TEXTS, truncate=[True, False, True, True])
    assert error.value.index == 1
    assert error.value.num_tokens == len(reference(TEXTS[1])["input_ids"]) == 42


@pytest.mark.parametrize("side", ["right", "left"])
def test_max_tokens_cuts_like_transformers_at_that_length(tokenizers, side):
    """A per-input cap below the model's maximum: what transformers gives with max_length set to it."""
    ours, reference = tokenizers
    reference.truncation_side = side
    expected = [reference(text, truncation=True, max_length=6)["input_ids"] for text in TEXTS]
    reference.truncation_side = "right"
    batch = ours.encode(TEXTS, left=[side == "left"] * len(TEXTS), max_tokens=[6, 6, 6, 0])
    assert [batch.input_ids[row, : batch.lengths[row]].tolist() for row in range(3)] == expected[:3]
    assert batch.lengths[3] == len(reference(TEXTS[3])["input_ids"])  # 0: the model's maximum
    with pytest.raises(InputTooLongError) as error:
        ours.encode(TEXTS, truncate=[True, False, True, True], max_tokens=[6] * 4)
    assert (error.value.index, error.value.num_tokens, error.value.max_length) == (1, 42, 6)


def test_max_tokens_of_a_pair_caps_its_document(tokenizers):
    ours, reference = tokenizers
    document = "the quick brown fox jumps over the lazy dog"
    capped = ours.encode(["query"], pairs=[document], max_tokens=[3])
    cut = " ".join(document.split()[:3])
    expected = reference("query", cut)
    assert capped.input_ids[0, : capped.lengths[0]].tolist() == expected["input_ids"]
    assert capped.token_type_ids[0, : capped.lengths[0]].tolist() == expected["token_type_ids"]
    long = ours.encode(["query " * 10], pairs=[document], max_tokens=[5])  # then cut to 16 as any pair
    assert long.lengths[0] == 16
    with pytest.raises(InputTooLongError):
        ours.encode(["query " * 10], pairs=[document], truncate=[False], max_tokens=[5])
