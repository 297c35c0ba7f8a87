"""End to end in Chinese: the zh-tiny preset on Debian's Chinese man pages in Google BERT's text format.

Checks what a Chinese user would notice: no document lost to the file format or to word counting, the
tokenizer covers the script ([UNK] under 1%), full-width punctuation kept, masked spans on jieba word
boundaries, a model that answers a Chinese fill-mask query, and an evaluation table.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.artifacts import ArtifactStore
from tasks.config import load_config

ZH_DOCS = Path("data/samples/manpages-zh")  # written by `make zh-docs` (tasks/corpus/zh_manpages.py)
SECTIONS = ("man1", "man3", "man5", "man7", "man8")
DOCUMENTS_PER_SECTION = 30
CJK = "\u4e00-\u9fff"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (ZH_DOCS / "man1.txt").is_file(), reason="needs the Chinese man pages (make zh-docs)"),
]


def bert_documents(path: Path) -> list[list[str]]:
    """Google BERT's format: a sentence per line, a blank line between documents."""
    blocks = path.read_text(encoding="utf-8").split("\n\n")
    return [[line for line in block.splitlines() if line.strip()] for block in blocks if block.strip()]


@pytest.fixture(scope="module")
def zh_run(tmp_path_factory, prefect_harness):
    """The first documents of five manual sections, through the whole pipeline under Prefect."""
    from flows.pipeline import pipeline_flow

    root = tmp_path_factory.mktemp("zh")
    sample = root / "manpages-zh"  # the evaluate task's labels come from this folder and file name
    sample.mkdir()
    source: dict[str, list[list[str]]] = {}
    for section in SECTIONS:
        documents = bert_documents(ZH_DOCS / f"{section}.txt")[:DOCUMENTS_PER_SECTION]
        (sample / f"{section}.txt").write_text("\n\n".join("\n".join(d) for d in documents) + "\n", encoding="utf-8")
        for number, document in enumerate(documents, start=1):
            source[f"{(sample / f'{section}.txt').resolve().as_uri()}#doc={number}"] = document
    cfg = load_config("zh-tiny", [f"corpus.local_files=[{sample}/man*.txt]", f"data_root={root / 'data'}",
                                  f"tracking.tracking_uri=sqlite:///{root / 'mlflow.db'}",
                                  "evaluate.finetune.max_steps=40", "evaluate.learning_rates=[0.001]"])
    result = pipeline_flow(cfg)
    return cfg, result, source


def test_no_document_is_lost_to_the_format_or_to_word_counting(zh_run):
    cfg, result, source = zh_run
    stats = result["stages"]["corpus"]["stats"]
    assert cfg.corpus.local_text_format == "bert"
    assert stats["documents_in"] == len(source)  # one document per blank-line block, not one per file
    assert stats["dropped_gopher_too_many_words"] == stats["dropped_too_few_words"] == 0
    assert stats["documents"] >= 0.6 * len(source)  # the rest: duplicates, code-heavy pages, English pages
    # words are counted as the filters count them: one per CJK character
    assert stats["words"] > stats["characters"] / 3


def test_full_width_punctuation_is_kept(zh_run):
    cfg, result, source = zh_run
    corpus = ArtifactStore(cfg.data_root).path("corpus", result["stages"]["corpus"]["artifact_id"])
    documents = pq.read_table(sorted(corpus.glob("documents-*.parquet")), columns=["url", "text"]).to_pylist()
    kept = "\n".join(d["text"] for d in documents)
    original = "\n".join("\n".join(source[d["url"]]) for d in documents)
    assert kept.count("，") > 1000 and kept.count("，") >= 0.8 * original.count("，")
    ascii_between_cjk = re.compile(f"[{CJK}][,:;!?()][{CJK}]")
    assert len(ascii_between_cjk.findall(kept)) <= len(ascii_between_cjk.findall(original))


def test_the_tokenizer_covers_the_script(zh_run):
    _, result, _ = zh_run
    stats = result["stages"]["tokenize"]["stats"]
    assert stats["validation_tokens"] > 10_000
    assert stats["unk_rate"] < 0.01


def test_masked_spans_lie_on_jieba_word_boundaries(zh_run):
    import jieba
    from transformers import AutoTokenizer

    cfg, result, _ = zh_run
    store = ArtifactStore(cfg.data_root)
    tokenizer = AutoTokenizer.from_pretrained(store.path("tokenize", result["stages"]["tokenize"]["artifact_id"])
                                              / "tokenizer")
    instances = store.path("instances", result["stages"]["instances"]["artifact_id"])
    with pa.memory_map(str(instances / "train" / "instances-00000.arrow")) as shard:
        table = pa.ipc.open_stream(shard).read_all()
    whole = partial = 0
    for row in table.slice(0, 400).to_pylist():
        ids = list(row["input_ids"])
        for position, original in zip(row["masked_lm_positions"], row["masked_lm_ids"]):
            ids[position] = original
        masked = set(row["masked_lm_positions"])
        tokens = tokenizer.convert_ids_to_tokens(ids)
        # runs of single CJK character tokens, segmented by jieba; the first and last word of a run may have
        # been cut by a sentence or segment edge, so only the words inside a run are judged
        start = 0
        while start < len(tokens):
            end = start
            while end < len(tokens) and re.fullmatch(f"[{CJK}]", tokens[end]):
                end += 1
            if end - start >= 3:
                words, position = [], start
                for word in jieba.cut("".join(tokens[start:end]), HMM=True):
                    words.append(range(position, position + len(word)))
                    position += len(word)
                for span in words[1:-1]:
                    hits = sum(p in masked for p in span)
                    if len(span) > 1 and hits:
                        whole += hits == len(span)
                        partial += hits < len(span)
            start = max(end, start + 1)
    # character-level masking would leave most touched two-character words half masked
    assert whole >= 30 and partial <= 0.05 * (whole + partial), (whole, partial)


def test_the_model_answers_a_chinese_fill_mask_query_and_the_table_is_written(zh_run):
    cfg, result, _ = zh_run
    evaluate = ArtifactStore(cfg.data_root).path("evaluate", result["stages"]["evaluate"]["artifact_id"])
    results = json.loads((evaluate / "results.json").read_text(encoding="utf-8"))
    examples = results["intrinsic"]["pretrained"]["fill_mask"]
    assert examples, "no fill-mask example"
    chinese = [e for e in examples if re.fullmatch(f"[{CJK}]", e["answer"])]  # a masked Chinese character
    assert len(chinese) >= len(examples) / 2, examples
    for example in chinese:
        assert "[MASK]" in example["text"] and example["predictions"]
        assert any(re.fullmatch(f"[{CJK}]", p["token"]) for p in example["predictions"]), example
    table = (evaluate / "results.md").read_text(encoding="utf-8")
    assert "| url-section | pretrained |" in table and "| url-section | scratch |" in table
    assert set(results["tasks"]["url-section"]["labels"]) <= set(SECTIONS)
    assert len(results["tasks"]["url-section"]["labels"]) >= 3
