"""Shared inputs of the evaluation tests: a labelled synthetic snapshot and a tiny BERT with its tokenizer."""

import random
from datetime import datetime, timezone
from hashlib import sha256
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from tokenizers import BertWordPieceTokenizer
from transformers import BertConfig, BertForPreTraining, BertTokenizerFast

from tasks.evaluate.evaluation import EvaluateConfig
from tasks.evaluate.url_section import UrlSectionTask

TOPICS = {
    "animals": "cat dog horse cow sheep goat duck goose fox wolf bear deer rabbit mouse owl",
    "cooking": "bake boil fry roast salt pepper flour butter sugar oven pan knife spoon recipe dough",
    "sport": "ball goal team match score referee player coach league stadium race sprint tennis golf",
}
FILLER = "the a of and to in is it that with on for as was at by this from or"


def synthetic_document(topic: str, rng: random.Random) -> str:
    """Paragraphs of topic words mixed with shared filler, ~100-200 words."""
    words = TOPICS[topic].split() + FILLER.split()
    paragraphs = [" ".join(rng.choice(words) for _ in range(rng.randint(20, 40))) for _ in range(rng.randint(4, 6))]
    return "\n".join(paragraphs)


def write_snapshot(path: Path, documents: list[tuple[str, str]]) -> None:
    """A corpus snapshot shard per the data contract from (url, text) pairs."""
    ids = [sha256(text.encode()).hexdigest() for _, text in documents]
    table = pa.table(
        {
            "id": ids,
            "url": [url for url, _ in documents],
            "source": ["crawl"] * len(documents),
            "title": pa.array([None] * len(documents), pa.string()),
            "text": [text for _, text in documents],
            "fetched_at": pa.array([datetime(2024, 1, 1, tzinfo=timezone.utc)] * len(documents), pa.timestamp("us", "UTC")),
            "content_hash": ids,
        }
    )
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path / "documents-00000.parquet")


@pytest.fixture(scope="module")
def snapshot_dir(tmp_path_factory) -> Path:
    rng = random.Random(0)
    documents = [
        (f"http://h/{topic}/page-{i}.html", synthetic_document(topic, rng)) for topic in TOPICS for i in range(12)
    ]
    documents += [(f"http://h/rare/page-{i}.html", synthetic_document("sport", rng)) for i in range(2)]
    documents += [("http://h/index.html", synthetic_document("animals", rng))]  # no section: no label
    path = tmp_path_factory.mktemp("snapshot")
    write_snapshot(path, documents)
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, snapshot_dir) -> Path:
    """A tiny BertForPreTraining plus a WordPiece tokenizer trained on the snapshot, in one folder."""
    path = tmp_path_factory.mktemp("model")
    texts = pq.read_table(snapshot_dir / "documents-00000.parquet")["text"].to_pylist()
    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(texts, vocab_size=150, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    # transformers 5 takes `vocab=` (a dict or path); the old `vocab_file=` is silently ignored
    BertTokenizerFast(vocab=wordpiece.get_vocab()).save_pretrained(path)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=wordpiece.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertForPreTraining(config).save_pretrained(path)
    return path


def tiny_config(**overrides) -> EvaluateConfig:
    settings = dict(
        tasks=[UrlSectionTask(min_documents_per_class=5, chunks_per_document=2)],
        max_seq_length=32,
        learning_rates=[3e-3, 1e-2],
        seeds=[0, 1],
        max_grid_extensions=0,  # the grid extension has its own test (test_evaluation.py)
        finetune={"max_steps": 40, "batch_size": 16, "device": "cpu"},
        intrinsic={"enabled": False},
    )
    return EvaluateConfig(**{**settings, **overrides})


