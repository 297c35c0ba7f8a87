"""tasks/evaluate/glue.py: GLUE from a folder of its files, and refused when it is not in the offline cache."""

import pytest
from pydantic import ValidationError
from transformers import AutoTokenizer

from tasks.evaluate.glue import GlueTask, build_glue_task
from tests.tasks.eval_fixtures import model_dir, snapshot_dir  # noqa: F401 (fixtures)


def test_glue_from_a_folder_of_tsv_files(tmp_path, model_dir):  # noqa: F811
    rows = [(f"premise {i} the cat", f"hypothesis {i} a cat" if i % 2 else f"hypothesis {i} the oven",
             "entailment" if i % 2 else "not_entailment") for i in range(40)]
    for split, part in (("train", rows), ("validation", rows[:10])):
        (tmp_path / f"{split}.tsv").write_text(
            "idx\tsentence1\tsentence2\tlabel\n" + "".join(f"{i}\t{a}\t{b}\t{c}\n" for i, (a, b, c) in enumerate(part)))
    data = build_glue_task(GlueTask(task="rte", data_dir=tmp_path, dev_fraction=0.25),
                           AutoTokenizer.from_pretrained(model_dir), 32)
    assert data.name == "rte" and data.metrics == ("accuracy",)
    assert data.info["split_examples"]["test"] == 10  # GLUE validation is the reported split
    assert data.info["split_examples"]["train"] + data.info["split_examples"]["dev"] == 40
    assert data.splits["test"].token_type_ids is not None


def test_glue_missing_from_the_cache_is_refused_with_the_config_saying_how_to_get_it(tmp_path):
    # offline (tests/conftest.py) and with no GLUE in the cache, as on a fresh machine: refused when the task
    # is configured, not in the evaluate stage after a whole pipeline has pretrained
    with pytest.raises(ValidationError, match=r"GLUE 'cola' is not in the local Hugging Face cache .* set data_dir"):
        GlueTask(task="cola")
    assert GlueTask(task="cola", data_dir=tmp_path).data_dir == tmp_path  # local files need no cache
