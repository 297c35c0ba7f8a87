"""tasks/evaluate/intrinsic.py: fill-mask examples of a pretrained model on held-out instances."""

import pyarrow as pa
from transformers import AutoTokenizer

from tasks.evaluate.intrinsic import fill_mask_examples
from tests.tasks.eval_fixtures import model_dir, snapshot_dir  # noqa: F401 (fixtures)


def test_fill_mask_examples_mask_a_word_inside_the_shown_text(model_dir, tmp_path):  # noqa: F811
    # The demo once failed here: the longest word sat past the 64 shown tokens, so the example's text
    # had no [MASK] and the fill-mask pipeline raised. Segment A here is 70 short words, then a long one.
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    short = tokenizer("the horse ate flour", add_special_tokens=False)["input_ids"]
    long = tokenizer("butter", add_special_tokens=False)["input_ids"]
    a = (short * 20)[:70] + long
    tokens = [tokenizer.cls_token_id, *a, tokenizer.sep_token_id]
    table = pa.table({"input_ids": [tokens], "masked_lm_positions": [[]], "masked_lm_ids": [[]]})
    examples = fill_mask_examples(model_dir, table, count=1, top_k=3)
    assert len(examples) == 1 and "[MASK]" in examples[0]["text"]
    assert examples[0]["answer"] in {tokenizer.convert_ids_to_tokens(t) for t in short}
