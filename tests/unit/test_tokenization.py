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
