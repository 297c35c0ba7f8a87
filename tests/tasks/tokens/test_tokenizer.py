import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from transformers import AutoTokenizer, BertTokenizerFast

from tasks.tokens.tokenizer import (
    SPECIAL_TOKENS,
    character_coverage,
    copy_tokenizer_folder,
    is_cjk_character,
    is_continuation_table,
    load_tokenizer,
    save_tokenizer,
    tokenizer_folder_problems,
    train_wordpiece,
)
from tests.tasks.tokens.chinese_text import chinese_sentences

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Tokenizers split words into word pieces; unbelievable tokenization happens.",
    "Café, résumé and naïve keep their accents unless stripped.",
    "中文字符被单独切分。日本語も同じです。",
    "Python functions return values, and classes define methods.",
] * 20

TRICKY = [
    "Hello WORLD, this is a Tokenization test!",
    "Café résumé NAÏVE déjà-vu",
    "中文字符被单独切分。",
    "control\x00chars\u200band\ttabs\r\nnewlines",
    "a" * 150 + " supercalifragilisticexpialidocious",
    "unseen ✓ symbols ∑ and emoji 🙂",
    "",
]


def _train(lowercase=True, strip_accents=None):
    return train_wordpiece(
        TEXTS, vocab_size=300, min_frequency=1, lowercase=lowercase, strip_accents=strip_accents, limit_alphabet=500
    )


def test_special_tokens_have_fixed_ids_and_pair_template():
    tokenizer = _train()
    assert [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    pair = tokenizer.encode("the fox", "the dog")
    assert pair.ids[0] == 2 and pair.ids.count(3) == 2 and pair.ids[-1] == 3
    first_sep = pair.ids.index(3)
    assert pair.type_ids == [0] * (first_sep + 1) + [1] * (len(pair.ids) - first_sep - 1)
    assert tokenizer.encode("the fox", add_special_tokens=False).ids == pair.ids[1:first_sep]


def test_round_trip_decodes_lowercased_text():
    tokenizer = _train()
    ids = tokenizer.encode("The quick brown fox, unbelievable.", add_special_tokens=False).ids
    assert tokenizer.decode(ids) == "the quick brown fox, unbelievable."
    assert any(tokenizer.id_to_token(i).startswith("##") for i in tokenizer.encode("quickfox").ids)


@pytest.mark.parametrize("lowercase,strip_accents", [(True, None), (False, None), (False, True), (True, False)])
def test_auto_tokenizer_encodes_exactly_like_the_pipeline(tmp_path, lowercase, strip_accents):
    tokenizer = _train(lowercase, strip_accents)
    save_tokenizer(tokenizer, tmp_path / "tok", lowercase=lowercase, strip_accents=strip_accents, model_max_length=128)
    loaded = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert isinstance(loaded, BertTokenizerFast)
    assert (loaded.pad_token_id, loaded.unk_token_id, loaded.cls_token_id) == (0, 1, 2)
    assert (loaded.sep_token_id, loaded.mask_token_id, loaded.model_max_length) == (3, 4, 128)
    from_file = load_tokenizer(tmp_path / "tok")
    for text in TRICKY:
        expected = tokenizer.encode(text)
        assert loaded(text)["input_ids"] == expected.ids == from_file.encode(text).ids
        pair = tokenizer.encode(text, "second segment")
        hf_pair = loaded(text, "second segment")
        assert hf_pair["input_ids"] == pair.ids
        assert hf_pair["token_type_ids"] == pair.type_ids
        assert loaded(text, add_special_tokens=False)["input_ids"] == expected.ids[1:-1]


def test_saved_folder_has_vocab_in_id_order(tmp_path):
    tokenizer = _train()
    save_tokenizer(tokenizer, tmp_path / "tok", lowercase=True, strip_accents=None, model_max_length=512)
    vocab = (tmp_path / "tok" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert vocab[:5] == list(SPECIAL_TOKENS)
    assert [tokenizer.token_to_id(token) for token in vocab] == list(range(len(vocab)))
    assert json.loads((tmp_path / "tok" / "tokenizer_config.json").read_text())["do_lower_case"] is True
    assert not (tmp_path / "tok.tmp").exists()


def test_continuation_table_marks_double_hash_pieces():
    tokenizer = _train()
    table = is_continuation_table(tokenizer)
    assert len(table) == tokenizer.get_vocab_size()
    for token, index in tokenizer.get_vocab().items():
        assert table[index] == (token.startswith("##") and token != "##")


def test_load_reports_missing_or_unusable_folders(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_tokenizer(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no tokenizer.json"):
        load_tokenizer(tmp_path / "empty")
    (tmp_path / "wordlevel").mkdir()
    Tokenizer(WordLevel({"[UNK]": 0, "hello": 1}, unk_token="[UNK]")).save(str(tmp_path / "wordlevel" / "tokenizer.json"))
    problems = tokenizer_folder_problems(tmp_path / "wordlevel")
    assert any("lacks special tokens" in p for p in problems) and any("[PAD]" in p for p in problems)


def test_load_switches_off_truncation_and_padding(tmp_path):
    tokenizer = _train()
    tokenizer.enable_truncation(4)
    tokenizer.enable_padding(length=4)
    save_tokenizer(tokenizer, tmp_path / "tok", lowercase=True, strip_accents=None, model_max_length=512)
    loaded = load_tokenizer(tmp_path / "tok")
    assert len(loaded.encode("the quick brown fox jumps over the lazy dog", add_special_tokens=False).ids) > 4


def test_copy_tokenizer_folder(tmp_path):
    save_tokenizer(_train(), tmp_path / "src", lowercase=True, strip_accents=None, model_max_length=512)
    copy_tokenizer_folder(tmp_path / "src", tmp_path / "dst")
    assert sorted(p.name for p in (tmp_path / "dst").iterdir()) == sorted(p.name for p in (tmp_path / "src").iterdir())
    with pytest.raises(ValueError, match="does not exist"):
        copy_tokenizer_folder(tmp_path / "nowhere", tmp_path / "dst2")


_TRAIN_IN_A_FRESH_PROCESS = """
import hashlib, random
from tasks.tokens.tokenizer import train_wordpiece
rng = random.Random(0)
syllables = ["ka", "to", "ri", "ne", "su", "ma", "lo", "pi", "de", "gu"]
words = ["".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(400)]
rare = [chr(c) for c in range(0x3B1, 0x3C9)]  # 24 Greek letters, twice each: the alphabet limit cuts among ties
texts = [" ".join(rng.choices(words, k=30)) for _ in range(300)] + [" ".join(rare * 2)]
tokenizer = train_wordpiece(texts, vocab_size=600, min_frequency=1, lowercase=True, strip_accents=None,
                            alphabet_min_frequency=2, limit_alphabet=22)
print(hashlib.sha256(tokenizer.to_str().encode()).hexdigest())
"""


def test_training_gives_the_same_tokenizer_in_every_process():
    """Hugging Face's trainer alone numbers "##" pieces in hash-map order (tokenizers#1794): processes differ."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    digests = {
        subprocess.run([sys.executable, "-c", _TRAIN_IN_A_FRESH_PROCESS], cwd=root, capture_output=True, text=True,
                       check=True, env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout
        for seed in range(4)
    }
    assert len(digests) == 1, digests


def test_registered_characters_stay_ordinary_vocabulary():
    tokenizer = _train()
    assert sorted(tokenizer.get_added_tokens_decoder()) == [0, 1, 2, 3, 4]  # only the real special tokens
    # an added token would be matched in the raw text; "#" is not in the training texts, so it is [UNK]
    assert tokenizer.encode("quick ##q", add_special_tokens=False).tokens == ["quick", "[UNK]", "[UNK]", "q"]
    vocab = tokenizer.get_vocab()
    assert all(f"##{c}" in vocab for c in "quickbrown") and "##." not in vocab and "##中" not in vocab


def test_training_refuses_a_one_pass_iterator():
    with pytest.raises(TypeError, match="reads texts more than once"):
        train_wordpiece(iter(TEXTS), vocab_size=300, min_frequency=1, lowercase=True, strip_accents=None,
                        limit_alphabet=500)


def test_pieces_the_trainer_had_to_number_are_registered_in_a_second_round(monkeypatch):
    import tasks.tokens.tokenizer as tokenizer_module

    # registers no "##" piece
    monkeypatch.setattr(tokenizer_module, "_always_whole_words", lambda pipeline, alphabet: set(alphabet))
    rounds = []
    real_trainer = tokenizer_module.trainers.WordPieceTrainer
    monkeypatch.setattr(tokenizer_module.trainers, "WordPieceTrainer",
                        lambda **kwargs: rounds.append(kwargs["special_tokens"]) or real_trainer(**kwargs))
    tokenizer = _train()
    assert len(rounds) == 2
    vocab = tokenizer.get_vocab()
    pieces = sorted((token for token in vocab if token.startswith("##") and len(token) == 3), key=lambda t: ord(t[2]))
    assert pieces == rounds[1][len(rounds[0]):]  # numbered by the second round, in code-point order ...
    assert [vocab[p] for p in pieces] == list(range(len(rounds[0]), len(rounds[1])))  # ... before any merge


def test_folder_with_only_tokenizer_json_is_rejected_because_transformers_lacks_special_ids(tmp_path):
    (tmp_path / "only_json").mkdir()
    _train().save(str(tmp_path / "only_json" / "tokenizer.json"))
    assert load_tokenizer(tmp_path / "only_json").token_to_id("[MASK]") == 4  # tokenizer.json alone is fine
    problems = tokenizer_folder_problems(tmp_path / "only_json")
    assert len(problems) == 1 and "AutoTokenizer loads" in problems[0] and "[MASK]=None (tokenizer.json: 4)" in problems[0]
    assert "save_pretrained" in problems[0]
    with pytest.raises(ValueError, match="special token ids"):
        copy_tokenizer_folder(tmp_path / "only_json", tmp_path / "dst")


def test_folder_whose_config_disagrees_on_lowercasing_is_rejected(tmp_path):
    save_tokenizer(_train(lowercase=False), tmp_path / "cased", lowercase=False, strip_accents=None, model_max_length=512)
    assert tokenizer_folder_problems(tmp_path / "cased") == []
    config = json.loads((tmp_path / "cased" / "tokenizer_config.json").read_text())
    del config["do_lower_case"]  # transformers then rebuilds BERT's normaliser with its default, lowercase
    (tmp_path / "cased" / "tokenizer_config.json").write_text(json.dumps(config))
    problems = tokenizer_folder_problems(tmp_path / "cased")
    assert len(problems) == 1 and "encodes text differently from tokenizer.json" in problems[0]
    assert "do_lower_case" in problems[0]


def test_vocabulary_larger_than_vocab_size_is_warned_about_and_counted(caplog):
    import string

    from tasks.tokens.tokenizer import character_token_count

    texts = [" ".join(string.ascii_letters[i:] + string.digits for i in range(20))] * 5  # 62 characters, cased
    small = train_wordpiece(texts, vocab_size=64, min_frequency=1, lowercase=False, strip_accents=None,
                            limit_alphabet=1000)
    assert small.get_vocab_size() == 5 + 62 + 62 > 64  # every character and its ## piece kept
    assert character_token_count(small) == 124
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "129 tokens, more than vocab_size=64" in warnings[0]
    assert "62 characters" in warnings[0] and "limit_alphabet" in warnings[0]
    caplog.clear()
    large = train_wordpiece(texts, vocab_size=300, min_frequency=1, lowercase=False, strip_accents=None,
                            limit_alphabet=1000)
    assert large.get_vocab_size() <= 300 and not [r for r in caplog.records if r.levelname == "WARNING"]


def test_a_folder_that_passed_is_not_checked_with_transformers_again_until_it_changes(tmp_path):
    """A command naming tokenize.tokenizer_path validates it at every start: once the folder has passed, a fresh
    process answers from the remembered digest without importing transformers (~3 CPU-s)."""
    folder = tmp_path / "cased"
    save_tokenizer(_train(lowercase=False), folder, lowercase=False, strip_accents=None, model_max_length=512)
    script = ("import json, sys\n"
              "from tasks.tokens.tokenizer import tokenizer_folder_problems\n"
              f"problems = tokenizer_folder_problems({str(folder)!r})\n"
              "print(json.dumps([problems, 'transformers' in sys.modules]))\n")
    env = {**os.environ, "PRETRAINFLOW_CACHE_DIR": str(tmp_path / "cache")}

    def check() -> list:
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120,
                              cwd=Path(__file__).resolve().parents[3])
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.splitlines()[-1])

    assert check() == [[], True]  # checked with transformers
    assert check() == [[], False]  # remembered
    config = json.loads((folder / "tokenizer_config.json").read_text())
    del config["do_lower_case"]
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    problems, imported = check()
    assert imported and "do_lower_case" in problems[0]  # changed content: checked again


CHINESE = chinese_sentences(300)


def _train_chinese(**alphabet):
    return train_wordpiece(CHINESE, vocab_size=2000, min_frequency=2, lowercase=True, strip_accents=None, **alphabet)


def test_every_chinese_character_seen_twice_gets_a_token_of_its_own():
    tokenizer = _train_chinese(alphabet_min_frequency=2)
    counts = Counter("".join(CHINESE))
    vocab = tokenizer.get_vocab()
    assert len(counts) > 400
    assert {char for char, count in counts.items() if count >= 2} <= set(vocab)
    seen_once = {char for char, count in counts.items() if count == 1}
    assert seen_once and not seen_once & set(vocab)
    # an ideograph is always a word of its own: no "##" piece of one, no token of two
    assert not [token for token in vocab if any(is_cjk_character(char) for char in token) and len(token) > 1]
    for sentence in CHINESE:
        tokens = tokenizer.encode(sentence, add_special_tokens=False).tokens
        assert tokens == [char if counts[char] >= 2 else "[UNK]" for char in sentence]
    coverage = character_coverage(tokenizer, CHINESE)
    assert coverage["alphabet_seen"] == len(counts) and coverage["alphabet_left_out"] == len(seen_once)
    assert coverage["alphabet_left_out_share"] == pytest.approx(len(seen_once) / sum(counts.values()))
    assert set(counts) <= set(_train_chinese(alphabet_min_frequency=1).get_vocab())  # the rarest too


def test_whole_word_characters_are_asked_of_the_pipeline():
    from tasks.tokens.tokenizer import _always_whole_words, build_pipeline

    # U+2B820: CJK Extension E, which BERT's Python code spaces out but tokenizers' normaliser does not
    alphabet = ["!", "a", "é", "中", "，", "」", "\U0002b820", "\U0002b920", "＋"]
    assert is_cjk_character("\U0002b820")
    assert _always_whole_words(build_pipeline(True, None), alphabet) == {"!", "中", "，", "」", "\U0002b920"}


def test_limit_alphabet_caps_the_characters_at_the_most_frequent(caplog):
    caplog.set_level("INFO", logger="tasks.tokens.tokenizer")
    counts = Counter("".join(CHINESE))
    capped = _train_chinese(alphabet_min_frequency=2, limit_alphabet=50)
    by_frequency = sorted(counts, key=lambda char: (-counts[char], ord(char)))
    assert {token for token in capped.get_vocab() if len(token) == 1} == set(by_frequency[:50])
    tokens = [token for sentence in CHINESE for token in capped.encode(sentence, add_special_tokens=False).tokens]
    unk_rate = np.mean([token == "[UNK]" for token in tokens])
    assert unk_rate > 0.2  # the old fixed cut (limit_alphabet: 1000) did this to a whole script
    alphabet_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("WordPiece alphabet")]
    assert len(alphabet_lines) == 1 and f"50 of {len(counts)} distinct characters" in alphabet_lines[0]
    assert f"{len(counts) - 50} left out" in alphabet_lines[0] and "at most 50" in alphabet_lines[0]


def test_full_width_punctuation_is_split_off_and_gets_tokens_of_its_own():
    tokenizer = _train_chinese(alphabet_min_frequency=2)
    punctuation = "，！？：；（）、。「」《》“”"
    words = [word for word, _ in tokenizer.pre_tokenizer.pre_tokenize_str(
        tokenizer.normalizer.normalize_str("真的？是：对；（括号）、顿号。「引号」你好，世界！"))]
    assert words == list("真的？是：对；（括号）、顿号。「引号」你好，世界！")
    vocab = tokenizer.get_vocab()
    assert set(punctuation) <= set(vocab) and not {"##" + char for char in punctuation} & set(vocab)
    assert tokenizer.encode("你好，世界！", add_special_tokens=False).tokens == list("你好，世界！")
    assert tokenizer.encode("ok，fine！", add_special_tokens=False).tokens[1] == "，"  # after a Latin word too


def test_english_alphabet_follows_the_frequency_floor():
    tokenizer = train_wordpiece(TEXTS + ["a lone ✓ here"], vocab_size=300, min_frequency=1, lowercase=True,
                                strip_accents=None, alphabet_min_frequency=2)
    vocab = tokenizer.get_vocab()
    assert "✓" not in vocab and "##✓" not in vocab  # seen once
    assert all(char in vocab and "##" + char in vocab for char in "quickbrownfox")
    assert tokenizer.encode("a lone ✓ here", add_special_tokens=False).tokens == ["a", "lone", "[UNK]", "here"]
