"""tasks/evaluate/file_tasks.py: reading local task files, label checks, pair encoding, and errors naming file,
column and value."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError
from transformers import AutoTokenizer

from tasks.evaluate.file_tasks import FileTask, build_file_task
from tasks.evaluate.glue import GlueTask
from tests.tasks.eval_fixtures import model_dir, snapshot_dir  # noqa: F401 (fixtures)

PAIRS = [("the cat sat", "a cat sat", "same"), ("dogs bark loud", "the oven is hot", "different"),
         ("fry the fish", "fry the fish now", "same"), ("goal by the team", "a cow in a field", "different")]


def _csv(path: Path, rows: list[tuple], header: str = "sentence1,sentence2,label") -> Path:
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


def test_pair_task_from_csv_files(tmp_path, model_dir):  # noqa: F811
    task = FileTask(name="pairs", train=[_csv(tmp_path / "train.csv", PAIRS * 3)], dev=[_csv(tmp_path / "dev.csv", PAIRS)],
                    test=[_csv(tmp_path / "test.csv", PAIRS)], text_column="sentence1", pair_column="sentence2")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    data = build_file_task(task, tokenizer, 32)
    assert data.label_names == ["different", "same"]
    assert list(data.splits["test"].labels) == [1, 0, 1, 0]
    row, types = data.splits["train"].input_ids[0], data.splits["train"].token_type_ids[0]
    assert row == tokenizer("the cat sat", "a cat sat")["input_ids"]
    assert types.count(1) == len(tokenizer("a cat sat", add_special_tokens=False)["input_ids"]) + 1  # B [SEP]
    assert data.metrics == ("accuracy", "macro_f1")
    assert data.info["split_examples"] == {"train": 12, "dev": 4, "test": 4}


def test_regression_from_parquet_with_dev_carved_from_train(tmp_path, model_dir):  # noqa: F811
    texts = [f"sentence number {i} about cats" for i in range(200)]
    table = pa.table({"text": texts, "score": [float(i % 5) for i in range(200)]})
    pq.write_table(table, tmp_path / "all.parquet")
    task = FileTask(name="scores", train=[tmp_path / "all.parquet"], test=[tmp_path / "all.parquet"],
                    label_column="score", kind="regression", dev_fraction=0.2)
    data = build_file_task(task, AutoTokenizer.from_pretrained(model_dir), 32)
    sizes = data.info["split_examples"]
    assert sizes["train"] + sizes["dev"] == 200 and 20 < sizes["dev"] < 60  # ~20%, by text hash
    assert data.num_labels == 1 and data.label_names is None
    assert data.metrics == ("pearson", "spearman")
    assert all(isinstance(v, float) for v in data.splits["dev"].labels)


def test_every_bad_input_is_named_before_training(tmp_path, model_dir):  # noqa: F811
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"text": f"t {i}", "label": ["pos", "neg"][i % 2]}) + "\n" for i in range(10)))
    test = tmp_path / "test.jsonl"
    test.write_text(json.dumps({"text": "t", "label": "maybe"}) + "\n" + json.dumps({"text": "u", "label": None}) + "\n")
    no_label = _csv(tmp_path / "dev.csv", [("a", "b")], header="text,other")
    task = FileTask(name="sentiment", train=[train], dev=[no_label], test=[test])
    with pytest.raises(ValueError) as error:
        build_file_task(task, tokenizer, 32)
    message = str(error.value)
    assert f"{no_label}: no column 'label'; its columns are ['text', 'other']" in message
    assert "the dev split is empty" in message
    assert f"{test}: column 'label' row 0 holds label 'maybe', which the training files never use; " \
           "training labels: ['neg', 'pos']" in message
    assert f"{test}: column 'label' row 1 has no label" in message

    scores = _csv(tmp_path / "scores.csv", [("a", "1.5"), ("b", "high")], header="text,label")
    with pytest.raises(ValueError, match=r"scores.csv: column 'label' row 1 holds 'high', not a number"):
        build_file_task(FileTask(name="s", train=[scores], test=[scores], kind="regression"), tokenizer, 32)


def test_config_errors_name_the_value(tmp_path):
    with pytest.raises(ValidationError, match="missing.csv does not exist"):
        FileTask(name="x", train=[tmp_path / "missing.csv"], test=[tmp_path / "missing.csv"])
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ValidationError, match=r"a.txt has suffix '.txt'; valid: .csv, .tsv"):
        FileTask(name="x", train=[tmp_path / "a.txt"], test=[tmp_path / "a.txt"])
    (tmp_path / "a.csv").write_text("text,label\n")
    with pytest.raises(ValidationError, match=r"metrics \['pearson'\] do not apply to a classification task"):
        FileTask(name="x", train=[tmp_path / "a.csv"], test=[tmp_path / "a.csv"], metrics=["pearson"])
    with pytest.raises(ValidationError, match="'wnli'"):
        GlueTask(task="wnli")


