import numpy as np
import pyarrow as pa
import pytest

from tasks.instances.chinese_words import jieba_segmenter
from tasks.instances.generate import InstancesConfig, build_instances
from tasks.instances.masking import MaskingVocabulary, mask_tokens, word_continuation, word_groups
from tasks.tokens.shards import read_stream, token_shard_schema, write_stream_atomically
from tasks.tokens.tokenizer import save_tokenizer, train_wordpiece

# ids 0-4 special, 5-49 word starts, 50-99 "##" pieces
VOCAB = MaskingVocabulary(
    mask_id=4,
    is_special=np.arange(100) < 5,
    is_continuation=np.arange(100) >= 50,
    replacement_ids=np.arange(5, 100),
)


def test_word_groups_join_pieces_but_never_across_special_tokens():
    ids = np.array([2, 50, 10, 51, 52, 3, 53, 11, 3])
    assert word_groups(ids, word_continuation(ids, VOCAB), VOCAB) == [(1, 2), (2, 5), (6, 7), (7, 8)]
    assert word_groups(ids, None, VOCAB) == [(1, 2), (2, 3), (3, 4), (4, 5), (6, 7), (7, 8)]


def test_masking_statistics_and_rules():
    rng = np.random.default_rng(0)
    counts = {"masked": 0, "tokens": 0, "mask": 0, "kept": 0, "random": 0}
    for _ in range(3000):
        ids = np.concatenate([[2], rng.integers(5, 50, 60), [3], rng.integers(5, 50, 60), [3]])
        masked, positions, labels = mask_tokens(ids, rng, VOCAB, masked_lm_prob=0.15, max_predictions_per_seq=30)
        assert len(positions) == round(len(ids) * 0.15) and np.all(np.diff(positions) > 0)
        assert not VOCAB.is_special[ids[positions]].any() and np.array_equal(labels, ids[positions])
        unchanged = np.ones(len(ids), bool)
        unchanged[positions] = False
        assert np.array_equal(masked[unchanged], ids[unchanged])
        shown = masked[positions]
        counts["masked"] += len(positions)
        counts["mask"] += np.count_nonzero(shown == 4)
        counts["kept"] += np.count_nonzero(shown == labels)
        counts["random"] += np.count_nonzero((shown != 4) & (shown != labels))
    assert counts["mask"] / counts["masked"] == pytest.approx(0.8, abs=0.01)
    assert counts["kept"] / counts["masked"] == pytest.approx(0.1 + 0.1 / 95, abs=0.01)
    assert counts["random"] / counts["masked"] == pytest.approx(0.1 * 94 / 95, abs=0.01)


def test_whole_words_are_masked_together_and_the_cap_holds():
    rng = np.random.default_rng(1)
    ids = np.array([2, *[10, 50, 51] * 20, 3])  # twenty three-piece words
    for _ in range(200):
        _, positions, _ = mask_tokens(ids, rng, VOCAB, masked_lm_prob=0.15, max_predictions_per_seq=7,
                                      continues_word=word_continuation(ids, VOCAB))
        assert len(positions) == 6  # budget 7 (cap) fits two whole words of three, never a partial one
        assert all(p % 3 == 1 for p in positions[::3]) and np.array_equal(positions[1::3], positions[::3] + 1)


def test_same_generator_state_gives_the_same_masks():
    ids = np.arange(5, 60)
    first = mask_tokens(ids, np.random.default_rng(7), VOCAB, masked_lm_prob=0.2, max_predictions_per_seq=20)
    again = mask_tokens(ids, np.random.default_rng(7), VOCAB, masked_lm_prob=0.2, max_predictions_per_seq=20)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))


@pytest.fixture(scope="module")
def chinese_tokenizer_dir(tmp_path_factory):
    text = "我爱北京天安门。今天天气很好，我们去公园散步。机器学习模型需要大量数据。中华人民共和国成立了。"
    tokenizer = train_wordpiece([text] * 5, vocab_size=200, min_frequency=1, lowercase=True, strip_accents=None,
                                limit_alphabet=200)
    path = tmp_path_factory.mktemp("zh") / "tokenizer"
    save_tokenizer(tokenizer, path, lowercase=True, strip_accents=None, model_max_length=512)
    return path


def test_jieba_marks_characters_inside_a_word(chinese_tokenizer_dir):
    from tasks.tokens.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(chinese_tokenizer_dir)
    ids = np.array(tokenizer.encode("我爱北京天安门", add_special_tokens=False).ids)
    assert len(ids) == 7  # one token per character
    continues = jieba_segmenter(chinese_tokenizer_dir)(ids)
    assert continues.tolist() == [False, False, False, True, False, True, True]  # 我 / 爱 / 北京 / 天安门


def test_chinese_whole_word_masking_masks_whole_jieba_words(chinese_tokenizer_dir, tmp_path):
    from tasks.tokens.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(chinese_tokenizer_dir)
    sentences = ["我爱北京天安门。", "今天天气很好，我们去公园散步。", "机器学习模型需要大量数据。", "中华人民共和国成立了。"]
    documents = [[tokenizer.encode(s, add_special_tokens=False).ids for s in sentences] for _ in range(30)]
    (tmp_path / "tokens" / "tokenizer").mkdir(parents=True)
    for path in chinese_tokenizer_dir.iterdir():
        (tmp_path / "tokens" / "tokenizer" / path.name).write_bytes(path.read_bytes())
    table = pa.Table.from_pylist([{"doc_id": str(i), "sentences": d} for i, d in enumerate(documents)],
                                 schema=token_shard_schema(200))
    write_stream_atomically(table, tmp_path / "tokens" / "train" / "tokens-00000.arrow")
    write_stream_atomically(table.slice(0, 0), tmp_path / "tokens" / "validation" / "tokens-00000.arrow")
    cfg = InstancesConfig(chinese_word_segmentation=True, max_seq_length=32, dupe_factor=3)
    build_instances(cfg, tmp_path / "tokens", tmp_path / "out")
    segment = jieba_segmenter(chinese_tokenizer_dir)
    words_masked = 0
    for row in read_stream(tmp_path / "out" / "train" / "instances-00000.arrow").to_pylist():
        original = list(row["input_ids"])
        for position, label in zip(row["masked_lm_positions"], row["masked_lm_ids"]):
            original[position] = label
        continues = segment(np.array(original))
        masked = set(row["masked_lm_positions"])
        for p in range(1, len(original)):
            if continues[p]:
                assert (p in masked) == (p - 1 in masked)
                words_masked += p in masked
    assert words_masked > 20
