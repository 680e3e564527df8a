"""Agreement counting and the shipped evaluation text."""

import pytest

from keras_gemma_app.quality_eval import PROMPTS, agreement, default_text


def test_agreement_counts_positions_prefix_and_identical_prompts():
    reference = [(1, 2, 3, 4), (5, 6, 7, 8)]
    result = agreement([(1, 2, 3, 4), (5, 9, 7, 8)], reference)
    assert result.positions == 7 / 8
    assert result.identical == 1
    assert result.prefix == (4 + 1) / 2
    assert result.prompts == 2


def test_a_shorter_sequence_counts_its_missing_tokens_as_different():
    result = agreement([(1, 2)], [(1, 2, 3, 4)])
    assert result.positions == 0.5 and result.identical == 0 and result.prefix == 2


def test_sequence_count_must_match():
    with pytest.raises(ValueError, match="Expected 2 sequences"):
        agreement([(1,)], [(1,), (2,)])


def test_default_text_is_the_shipped_public_domain_chapter():
    text = default_text()
    assert text.lstrip().startswith("CHAPTER I") and "Down the Rabbit-Hole" in text[:200]
    assert 2000 < len(text.split()) < 2500
    assert len(PROMPTS) == 10 and len(set(PROMPTS)) == 10
