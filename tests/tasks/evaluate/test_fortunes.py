"""tasks/evaluate/fortunes.py: fortune files -> a labelled train/dev/test task that the files task reads."""

import json
import random
import re
from pathlib import Path

import pytest
from tokenizers import BertWordPieceTokenizer
from transformers import BertTokenizerFast

from tasks.errors import InputError
from tasks.evaluate.file_tasks import FileTask, build_file_task
from tasks.evaluate.fortunes import (
    STATS_FILE,
    FortuneTaskSpec,
    label_texts,
    main,
    parse_fortunes,
    read_categories,
    write_fortune_task,
)

TOPICS = {
    "computers": "the program crashed when the compiler met a pointer to the kernel and its disk",
    "politics": "the senator voted for the tax bill while the president gave the election speech",
    "songs-poems": "the river sings of moonlight and roses as the lonely heart sings along",
}
SHARED = "Computers make very fast, very accurate mistakes."  # filed under computers and cookie: no single label


def _entries(topic: str, n: int) -> list[str]:
    words = TOPICS[topic].split()
    # two wrapped lines and an indented attribution, as the fortune files write them
    return [f"{' '.join(words[i % 5:][:8])} {i}\n{' '.join(words[8:])}\n\t\t-- Author {topic} {i}" for i in range(n)]


def write_tree(root: Path, shuffle_seed: int | None = None) -> Path:
    """A fortune folder: three topics, a catch-all sharing one text, and files a reader must skip."""
    files = {topic: _entries(topic, 20) for topic in TOPICS}
    files["computers"] += [SHARED, files["computers"][0]]  # a text also in cookie, and a repeat within the file
    files["cookie"] = [SHARED, "You will meet a tall dark stranger."]
    root.mkdir(parents=True)
    for name, entries in files.items():
        if shuffle_seed is not None:
            entries = entries[:]
            random.Random(shuffle_seed).shuffle(entries)
        (root / name).write_text("\n%\n".join(entries) + "\n%\n")
    (root / "computers.dat").write_bytes(b"\x00\x00\x00\x02binary strfile index")
    (root / "computers.u8").symlink_to("computers")
    (root / "chinese").write_text("天下大势，分久必合，合久必分。\n%\n")
    (root / "off").mkdir()
    (root / "off" / "politics").write_text("an offensive one\n%\n")
    return root


def test_entries_split_at_percent_lines_and_become_one_line_each():
    text = ("Bell\x07 and ____\b\b\b\bbold t\bth\bhe end.\n%\n\n%\n"  # overstrikes and BEL, then an empty entry
            "A wrapped line\n  that continues\n\t\t-- Mark Twain\n%\nlast entry without a closing percent")
    assert parse_fortunes(text) == ["Bell and bold the end.", "A wrapped line that continues -- Mark Twain",
                                     "last entry without a closing percent"]


def test_texts_in_several_categories_are_dropped_and_repeats_kept_once(tmp_path):
    categories = read_categories(write_tree(tmp_path / "fortunes"))
    assert sorted(categories) == ["computers", "cookie", "politics", "songs-poems"]  # no .dat, .u8, chinese, off/
    by_class, dropped = label_texts(categories, ["computers", "politics"])
    assert SHARED not in by_class["computers"] and len(by_class["computers"]) == 20
    assert len(set(by_class["computers"])) == 20
    assert dropped["texts_in_several_categories"] == 1
    assert dropped["dropped_per_class_as_in_several_categories"] == {"computers": 1, "politics": 0}
    assert dropped["dropped_per_class_as_repeated_in_its_file"] == {"computers": 1, "politics": 0}


def test_the_split_does_not_depend_on_file_order(tmp_path):
    spec = FortuneTaskSpec(categories=["computers", "politics", "songs-poems"], max_per_class=15)
    stats = write_fortune_task(write_tree(tmp_path / "a"), tmp_path / "out-a", spec)
    shuffled = write_fortune_task(write_tree(tmp_path / "b", shuffle_seed=1), tmp_path / "out-b", spec)
    for name in ("train.jsonl", "dev.jsonl", "test.jsonl"):
        assert (tmp_path / "out-a" / name).read_bytes() == (tmp_path / "out-b" / name).read_bytes(), name
    assert {**stats, "sources": None} == {**shuffled, "sources": None}  # only the folder read differs
    # each class is capped to 15, then 3 to test (17%) and 1 to dev (8%): the same mix in every split
    assert stats["examples"] == {"train": dict.fromkeys(spec.categories, 11), "dev": dict.fromkeys(spec.categories, 1),
                                 "test": dict.fromkeys(spec.categories, 3)}
    assert stats["majority_class_rate"]["test"] == pytest.approx(1 / 3, abs=1e-3)
    rows = {s: [json.loads(line) for line in (tmp_path / "out-a" / f"{s}.jsonl").open()] for s in ("train", "test")}
    assert not {r["text"] for r in rows["train"]} & {r["text"] for r in rows["test"]}
    assert sorted(p.name for p in (tmp_path / "out-a").iterdir()) == [
        "dev.jsonl", STATS_FILE, "test.jsonl", "train.jsonl"]  # no partial file left


def test_the_written_files_load_as_a_files_task(tmp_path):
    spec = FortuneTaskSpec(categories=["computers", "politics", "songs-poems"])
    out = tmp_path / "task"
    stats = write_fortune_task(write_tree(tmp_path / "fortunes"), out, spec)
    texts = [json.loads(line)["text"] for line in (out / "train.jsonl").open()]
    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(texts, vocab_size=120, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tokenizer = BertTokenizerFast(vocab=wordpiece.get_vocab())
    task = FileTask(name="fortunes", train=[out / "train.jsonl"], dev=[out / "dev.jsonl"], test=[out / "test.jsonl"])
    data = build_file_task(task, tokenizer, 32)
    assert data.label_names == ["computers", "politics", "songs-poems"]
    assert data.info["split_examples"] == {s: sum(c.values()) for s, c in stats["examples"].items()}
    first = json.loads((out / "test.jsonl").open().readline())
    assert data.splits["test"].input_ids[0] == tokenizer(first["text"], truncation=True, max_length=32)["input_ids"]
    assert data.label_names[data.splits["test"].labels[0]] == first["label"]


def test_a_missing_category_is_refused_naming_the_ones_there(tmp_path, capsys):
    folder = write_tree(tmp_path / "fortunes")
    found = r"computers \(22\), politics \(20\), songs-poems \(20\), cookie \(2\)$"  # most entries first
    with pytest.raises(InputError, match=r"no fortune category \['sports'\]; the categories found, with their "
                                         r"entries, are: " + found):
        write_fortune_task(folder, tmp_path / "out", FortuneTaskSpec(categories=["computers", "sports"]))
    assert not (tmp_path / "out").exists()
    assert main([str(tmp_path / "out"), "--from", str(folder), "--categories", "computers", "sports"]) == 2
    assert "no fortune category ['sports']" in capsys.readouterr().err
    assert main([str(tmp_path / "out"), "--from", str(folder), "--categories", "computers", "computers"]) == 2
    assert "categories ['computers'] are named more than once" in capsys.readouterr().err


def test_the_command_prints_counts_per_split_and_class(tmp_path, capsys):
    folder = write_tree(tmp_path / "fortunes")
    assert main([str(tmp_path / "out"), "--from", str(folder), "--categories", "politics", "songs-poems"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"^class +train +dev +test$", printed, re.M)
    assert re.search(r"^politics +15 +2 +3$", printed, re.M)  # 20 texts: 17% to test, 8% to dev
    assert re.search(r"^majority rate +0\.500 +0\.500 +0\.500$", printed, re.M)
    assert json.loads((tmp_path / "out" / STATS_FILE).read_text())["sources"] == {"folder": str(folder)}


def test_the_fortunes_task_type_makes_its_files_once_and_reads_them_as_a_files_task(tmp_path):
    from tasks.evaluate.evaluation import EvaluateConfig
    from tasks.evaluate.fortunes import build_fortunes_task

    source = write_tree(tmp_path / "fortunes")
    cfg = EvaluateConfig(tasks=[{"type": "fortunes", "categories": ["computers", "politics", "songs-poems"],
                                 "source": str(source)}])
    (task,) = cfg.tasks
    texts = [t for topic in TOPICS for t in _entries(topic, 20)]
    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(texts, vocab_size=120, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tokenizer = BertTokenizerFast(vocab=wordpiece.get_vocab())
    data = build_fortunes_task(task, tokenizer, 32, tmp_path / "task-files")
    assert data.name == "fortunes" and data.label_names == ["computers", "politics", "songs-poems"]
    assert data.info["source"] == "fortunes" and data.info["dropped"]["texts_in_several_categories"] == 1
    (folder,) = (tmp_path / "task-files").iterdir()
    written = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    again = build_fortunes_task(task, tokenizer, 32, tmp_path / "task-files")  # reused, not written again
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == written
    assert again.splits["test"].input_ids == data.splits["test"].input_ids
    fewer = task.model_copy(update={"categories": ["computers", "politics"]})
    build_fortunes_task(fewer, tokenizer, 32, tmp_path / "task-files")
    assert len(list((tmp_path / "task-files").iterdir())) == 2  # other settings: other files
