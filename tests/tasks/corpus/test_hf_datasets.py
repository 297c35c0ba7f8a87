"""tasks/corpus/hf_datasets.py: Hugging Face datasets read offline, from disk or a local folder."""

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from tasks.corpus.hf_datasets import HuggingFaceSource, read_hf_dataset, read_hf_datasets


def test_hf_dataset_from_disk_streams_rows(tmp_path: Path) -> None:
    from datasets import Dataset, DatasetDict

    rows = {"text": ["first", None, "third"], "link": ["https://example.org/1", None, None],
            "heading": ["One", None, None]}
    DatasetDict({"train": Dataset.from_dict(rows)}).save_to_disk(str(tmp_path / "corpus"))
    source = HuggingFaceSource(from_disk=str(tmp_path / "corpus"), url_column="link", title_column="heading",
                               batch_size=2)
    docs = list(read_hf_datasets([source]))
    assert [(d.url, d.title, d.text, d.source) for d in docs] == [
        ("https://example.org/1", "One", "first", "hf"),
        ("hf://corpus/train/2", None, "third", "hf"),  # row 1 has no text; synthetic urls keep row numbers
    ]
    assert docs[0].fetched_at.tzinfo is not None
    with pytest.raises(ValueError, match=r"'corpus'.*no split 'test' \(splits: train\)"):
        list(read_hf_dataset(source.model_copy(update={"split": "test"})))
    with pytest.raises(ValueError, match=r"no column 'body' \(columns: text, link, heading\)"):
        list(read_hf_dataset(source.model_copy(update={"text_column": "body"})))


def test_hf_load_dataset_json_data_files(tmp_path: Path) -> None:
    lines = [{"text": "alpha", "url": "https://example.org/a"}, {"text": "beta"}, {"text": "gamma"}]
    (tmp_path / "part.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    source = HuggingFaceSource(name="json", data_files=[str(tmp_path / "*.jsonl")], url_column="url", max_rows=2)
    docs = list(read_hf_dataset(source))
    assert [(d.url, d.text) for d in docs] == [("https://example.org/a", "alpha"), ("hf://part.jsonl/train/1", "beta")]


def test_hf_load_dataset_local_folder(tmp_path: Path) -> None:
    (tmp_path / "wiki" / "data").mkdir(parents=True)
    (tmp_path / "wiki" / "data" / "train.jsonl").write_text('{"body": "folder row", "name": "Row"}\n')
    source = HuggingFaceSource(name=str(tmp_path / "wiki"), data_dir="data", text_column="body", title_column="name")
    assert [(d.url, d.title, d.text) for d in read_hf_dataset(source)] == [("hf://wiki/train/0", "Row", "folder row")]


def test_hf_sources_that_cannot_be_found(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="matches no file"):
        HuggingFaceSource(name="json", data_files=[str(tmp_path / "none*.jsonl")])
    with pytest.raises(ValidationError, match="not a folder written by save_to_disk"):
        HuggingFaceSource(from_disk=str(tmp_path / "nowhere"))
    with pytest.raises(ValidationError, match="exactly one of name and from_disk"):
        HuggingFaceSource()
    # offline, a hub id outside the local cache cannot be loaded; if datasets was imported online
    # earlier in this process, a hub id is refused before any request: either way, no download
    with pytest.raises(ValueError, match=r"'someone/no-such-dataset'.*valid: from_disk"):
        list(read_hf_dataset(HuggingFaceSource(name="someone/no-such-dataset")))
    (tmp_path / "part.jsonl").write_text('{"text": "x"}\n')
    with pytest.raises(ValueError, match=r"'part\.jsonl' cannot be loaded \(ValueError: Bad split: test"):
        list(read_hf_dataset(HuggingFaceSource(name="json", data_files=[str(tmp_path / "part.jsonl")], split="test")))
