"""The offline url-section task: labels from URLs, chunks, stratified split by document."""

from transformers import AutoTokenizer

from tasks.evaluate.url_section import UrlSectionTask, build_url_task, chunk_token_ids
from tests.tasks.eval_fixtures import model_dir, snapshot_dir  # noqa: F401 (fixtures)

TASK = UrlSectionTask(min_documents_per_class=5, chunks_per_document=2)


def test_chunks_spread_through_document_and_drop_short_tail():
    tokens = list(range(100))
    assert chunk_token_ids(tokens, 30, max_chunks=10, min_chunk_tokens=16) == [
        tokens[0:30],
        tokens[30:60],
        tokens[60:90],
    ]  # the 10-token tail is dropped
    spread = chunk_token_ids(tokens, 10, max_chunks=3, min_chunk_tokens=1)
    assert [chunk[0] for chunk in spread] == [0, 40, 90]  # first, middle and last window
    assert chunk_token_ids(tokens[:5], 30, max_chunks=2, min_chunk_tokens=16) == []


def test_labels_come_from_url_section(snapshot_dir, model_dir):  # noqa: F811
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    data = build_url_task(TASK, tokenizer, 32, snapshot_dir)
    assert data.label_names == ["animals", "cooking", "sport"]
    assert data.info["class_documents"] == {"animals": 12, "cooking": 12, "sport": 12}
    assert data.info["dropped_documents"]["url_without_label"] == 1  # http://h/index.html
    assert data.info["dropped_documents"]["class_not_kept"] == 2  # "rare" has 2 < 5 documents
    train = data.splits["train"]
    assert all(row[0] == tokenizer.cls_token_id and row[-1] == tokenizer.sep_token_id for row in train.input_ids)
    assert max(len(row) for row in train.input_ids) <= 32
    assert data.kind == "classification" and data.num_labels == 3


def test_split_is_by_document_stratified_and_stable(snapshot_dir, model_dir):  # noqa: F811
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    data = build_url_task(TASK, tokenizer, 32, snapshot_dir)
    ids = data.split_ids
    assert not set(ids["train"]) & set(ids["dev"])
    assert not set(ids["train"]) & set(ids["test"])
    assert not set(ids["dev"]) & set(ids["test"])
    assert sum(map(len, ids.values())) == 36
    for split in ("train", "dev", "test"):
        assert all(count > 0 for count in data.info["class_examples"][split].values()), split
    assert build_url_task(TASK, tokenizer, 32, snapshot_dir).split_ids == ids


def test_example_cap_keeps_many_documents(snapshot_dir, model_dir):  # noqa: F811
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    task = UrlSectionTask(min_documents_per_class=5, chunks_per_document=4, max_examples_per_class=12)
    data = build_url_task(task, tokenizer, 32, snapshot_dir)
    for label in data.label_names:
        assert sum(data.info["class_examples"][split][label] for split in ("train", "dev", "test")) == 12
    assert sum(map(len, data.split_ids.values())) == 36  # one chunk from each of the 12 documents
