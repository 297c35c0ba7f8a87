import json

import numpy as np
import pytest
from transformers import BertTokenizerFast

from model.dynamic_masking import DynamicMasker, MaskingSpec, read_masking_spec

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PIECES = ["play", "##ing", "##ed", "run", "cat", "dog", "sat", "on", "the", "mat"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    out = tmp_path_factory.mktemp("wordpiece")
    BertTokenizerFast(vocab={t: i for i, t in enumerate(SPECIAL + PIECES)}).save_pretrained(str(out))
    return BertTokenizerFast.from_pretrained(str(out))


def ids(tokenizer, tokens):
    return np.array(tokenizer.convert_tokens_to_ids(tokens), dtype=np.uint16)


def test_reads_dynamic_settings_from_the_manifest(tmp_path):
    assert read_masking_spec(tmp_path) is None  # no manifest: masked instances
    config = {"masking": "dynamic", "masked_lm_prob": 0.15, "max_predictions_per_seq": 20, "whole_word_mask": True}
    (tmp_path / "manifest.json").write_text(json.dumps({"config": config}))
    assert read_masking_spec(tmp_path) == MaskingSpec(0.15, 20, True)
    (tmp_path / "manifest.json").write_text(json.dumps({"config": {"masking": "static"}}))
    assert read_masking_spec(tmp_path) is None
    (tmp_path / "manifest.json").write_text(json.dumps({"config": {"masking": "dynamic"}}))
    with pytest.raises(ValueError, match=r"masking='dynamic' with missing fields \['masked_lm_prob'"):
        read_masking_spec(tmp_path)


def test_masks_never_special_tokens_and_count_follows_google(tokenizer):
    masker = DynamicMasker(MaskingSpec(0.15, 5, whole_word_mask=False), tokenizer, seed=0)
    words = ["[CLS]"] + ["cat", "dog", "sat", "on", "the", "mat"] * 6 + ["[SEP]"]
    input_ids = ids(tokenizer, words)
    special = set(tokenizer.all_special_ids)
    for index in range(50):
        masked, positions, labels = masker(input_ids, epoch=0, index=index)
        assert len(positions) == min(5, max(1, round(len(words) * 0.15)))
        assert positions.tolist() == sorted(set(positions.tolist()))
        assert not set(input_ids[positions].tolist()) & special
        assert labels.tolist() == input_ids[positions].tolist()
        unmasked = np.setdiff1d(np.arange(len(words)), positions)
        assert masked[unmasked].tolist() == input_ids[unmasked].tolist()


def test_replacement_mix_is_80_10_10(tokenizer):
    masker = DynamicMasker(MaskingSpec(0.5, 100, whole_word_mask=False), tokenizer, seed=1)
    input_ids = ids(tokenizer, ["[CLS]"] + ["cat", "dog"] * 50 + ["[SEP]"])
    outcome = {"mask": 0, "same": 0, "other": 0}
    for index in range(200):
        masked, positions, labels = masker(input_ids, epoch=0, index=index)
        for new, old in zip(masked[positions].tolist(), labels.tolist(), strict=True):
            key = "mask" if new == tokenizer.mask_token_id else "same" if new == old else "other"
            outcome[key] += 1
    total = sum(outcome.values())
    assert outcome["mask"] / total == pytest.approx(0.8, abs=0.02)
    # A random replacement can draw the original token (1 in 15 here), so "same" is a bit above 10%.
    assert outcome["same"] / total == pytest.approx(0.1 + 0.1 / 15, abs=0.02)
    assert outcome["other"] / total == pytest.approx(0.1 - 0.1 / 15, abs=0.02)


def test_whole_word_groups_are_masked_together(tokenizer):
    masker = DynamicMasker(MaskingSpec(0.3, 20, whole_word_mask=True), tokenizer, seed=2)
    tokens = ["[CLS]", "play", "##ing", "##ed", "cat", "play", "##ing", "dog", "[SEP]"]
    input_ids = ids(tokenizer, tokens)
    assert masker.word_groups(input_ids) == [[1, 2, 3], [4], [5, 6], [7]]
    for index in range(40):
        _, positions, _ = masker(input_ids, epoch=0, index=index)
        chosen = set(positions.tolist())
        for group in masker.word_groups(input_ids):
            assert chosen.isdisjoint(group) or chosen.issuperset(group), (group, chosen)


def test_masks_are_a_function_of_seed_epoch_and_index(tokenizer):
    masker = DynamicMasker(MaskingSpec(0.15, 20, whole_word_mask=False), tokenizer, seed=3)
    input_ids = ids(tokenizer, ["[CLS]"] + ["cat", "dog", "sat", "on", "the", "mat"] * 5 + ["[SEP]"])
    first = masker(input_ids, epoch=0, index=7)
    again = DynamicMasker(masker.spec, tokenizer, seed=3)(input_ids, epoch=0, index=7)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    other_epochs = [masker(input_ids, epoch=e, index=7)[1].tolist() for e in range(1, 6)]
    assert any(p != first[1].tolist() for p in other_epochs)  # a fresh mask each epoch
