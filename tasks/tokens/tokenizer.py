"""BERT WordPiece tokenizer: train one with Hugging Face `tokenizers`, save it, load it.

The saved folder is what `transformers.AutoTokenizer.from_pretrained` loads as a `BertTokenizerFast`.
transformers rebuilds a BERT tokenizer from the vocabulary plus `do_lower_case`, `strip_accents` and
`tokenize_chinese_chars` in tokenizer_config.json (and takes the post-processor from tokenizer.json),
so the pipeline built here uses exactly the components and defaults that rebuild produces: the same
text then encodes to the same ids whichever way the folder is loaded.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
from tokenizers.models import WordPiece

logger = logging.getLogger(__name__)

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
# Order fixes the ids: [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4 for a trained vocabulary.
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, CLS, SEP, MASK)
CONTINUING_SUBWORD_PREFIX = "##"


def build_pipeline(lowercase: bool, strip_accents: bool | None) -> Tokenizer:
    """An untrained BERT WordPiece pipeline: normaliser, pre-tokenizer and decoder."""
    tokenizer = Tokenizer(WordPiece(unk_token=UNK, continuing_subword_prefix=CONTINUING_SUBWORD_PREFIX))
    # handle_chinese_chars puts spaces around CJK ideographs so each becomes its own word, as in BERT.
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=strip_accents, lowercase=lowercase
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix=CONTINUING_SUBWORD_PREFIX)
    return tokenizer


def _set_pair_template(tokenizer: Tokenizer) -> None:
    """Post-processor for [CLS] A [SEP] and [CLS] A [SEP] B [SEP], with B's token type 1."""
    cls_id, sep_id = tokenizer.token_to_id(CLS), tokenizer.token_to_id(SEP)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{CLS}:0 $A:0 {SEP}:0",
        pair=f"{CLS}:0 $A:0 {SEP}:0 $B:1 {SEP}:1",
        special_tokens=[(CLS, cls_id), (SEP, sep_id)],
    )


def train_wordpiece(
    texts: Iterable[str] | Iterable[list[str]],
    *,
    vocab_size: int,
    min_frequency: int,
    lowercase: bool,
    strip_accents: bool | None,
    alphabet_min_frequency: int = 1,
    limit_alphabet: int | None = None,
    length: int | None = None,
) -> Tokenizer:
    """Train a BERT WordPiece tokenizer on texts (or batches of texts); [PAD] gets id 0.

    Every character of the normalised texts seen at least alphabet_min_frequency times gets a token (at
    most limit_alphabet of them, the most frequent, when given), and so does its "##" piece unless the
    pipeline always makes it a word of its own (punctuation, CJK ideographs); other characters encode as
    [UNK] (choose_alphabet). The same texts give the same tokenizer, byte for byte, in every process.
    Hugging Face's trainer alone does not: it numbers the "##c" pieces in hash-map order and breaks ties
    between merge counts by id, so two runs can learn different merges (huggingface/tokenizers#1794; the
    fix, PR #2066, is unreleased), and it cuts the alphabet at `limit_alphabet` with an unstable sort. So
    the alphabet is chosen here (ties by code point) and, with every "##c" piece, registered in code-point
    order before training; the trainer only adds merges. texts are read twice or more, so they must start
    over when iterated again (a list, or an object whose __iter__ does).
    """
    if iter(texts) is texts:
        raise TypeError("train_wordpiece reads texts more than once: pass a list or a re-iterable object, "
                        "not a generator or iterator")
    pipeline = build_pipeline(lowercase, strip_accents)
    counts = character_counts(texts, pipeline.normalizer)
    alphabet = choose_alphabet(counts, alphabet_min_frequency, limit_alphabet)
    whole_words = _always_whole_words(pipeline, alphabet)
    pieces = [CONTINUING_SUBWORD_PREFIX + char for char in alphabet if char not in whole_words]
    left_out = set(counts) - set(alphabet)
    logger.info("WordPiece alphabet: %d of %d distinct characters (those seen at least %d times%s); %d left out "
                "(%.4f%% of the characters; they encode as [UNK])", len(alphabet), len(counts), alphabet_min_frequency,
                "" if limit_alphabet is None else f", at most {limit_alphabet}", len(left_out),
                100 * sum(counts[char] for char in left_out) / max(sum(counts.values()), 1))
    for _ in range(3):  # a second round only if a character continued a word where _always_whole_words said not
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=[*SPECIAL_TOKENS, *alphabet, *pieces],  # ids in this order, before any merge
            limit_alphabet=0,  # the trainer adds no character of its own: all of them are registered above
            continuing_subword_prefix=CONTINUING_SUBWORD_PREFIX,
            show_progress=False,
        )
        trained = build_pipeline(lowercase, strip_accents)
        trained.train_from_iterator(texts, trainer=trainer, length=length)
        vocab = trained.get_vocab(with_added_tokens=False)
        missed = set(token for token in vocab if _is_piece_of_one_char(token)) - set(pieces)
        if not missed:
            break
        pieces = sorted(set(pieces) | missed, key=lambda piece: ord(piece[-1]))
    else:
        raise RuntimeError(f"WordPiece training kept numbering new pieces after 3 rounds: {sorted(missed)[:10]}")
    # The registered characters and pieces must stay ordinary vocabulary, not special tokens: rebuild
    # the model from the vocabulary and add only the five real special tokens.
    pipeline.model = WordPiece(vocab, unk_token=UNK, continuing_subword_prefix=CONTINUING_SUBWORD_PREFIX)
    pipeline.add_special_tokens(list(SPECIAL_TOKENS))
    _set_pair_template(pipeline)
    logger.info("trained WordPiece tokenizer with %d tokens (alphabet %d)", pipeline.get_vocab_size(), len(alphabet))
    if pipeline.get_vocab_size() > vocab_size:
        # Every kept character and its "##" piece must be in the vocabulary (or encode as [UNK]); the
        # trainer adds merges only while there is room, so it cannot stay under a too-small vocab_size.
        logger.warning("WordPiece vocabulary has %d tokens, more than vocab_size=%d: %d special tokens, %d characters "
                       "and %d '##' character pieces are always kept. Raise vocab_size, or raise "
                       "alphabet_min_frequency or set limit_alphabet (characters left out encode as [UNK])",
                       pipeline.get_vocab_size(), vocab_size, len(SPECIAL_TOKENS), len(alphabet), len(pieces))
    return pipeline


def character_counts(texts: Iterable[str] | Iterable[list[str]],
                     normalizer: normalizers.Normalizer | None) -> dict[str, int]:
    """Occurrences of each non-space character of the normalised texts (or batches of texts).

    Code points of the raw text are counted with numpy, ~1 M characters at a time, and each distinct
    character is then normalised alone: BertNormalizer's cleaning, accent stripping and lowercasing act
    one character at a time.
    """
    raw = np.zeros(sys.maxunicode + 1, np.int64)  # count per code point
    pending: list[str] = []
    pending_chars = 0
    for item in texts:
        for text in ([item] if isinstance(item, str) else item):
            pending.append(text or "")
            pending_chars += len(text or "")
        if pending_chars >= _COUNT_CHUNK_CHARS:
            raw += _code_point_counts(pending)
            pending, pending_chars = [], 0
    raw += _code_point_counts(pending)
    counts: Counter[str] = Counter()
    for code in np.flatnonzero(raw):
        for normalised in (chr(code) if normalizer is None else normalizer.normalize_str(chr(code))):
            if not normalised.isspace():
                counts[normalised] += int(raw[code])
    return dict(counts)


def choose_alphabet(counts: dict[str, int], min_frequency: int, limit: int | None) -> list[str]:
    """The characters seen at least min_frequency times, at most limit of them (the most frequent, ties by
    code point) when limit is given, in code-point order."""
    kept = [char for char, count in counts.items() if count >= min_frequency]
    if limit is not None:
        kept = sorted(kept, key=lambda char: (-counts[char], ord(char)))[:limit]
    return sorted(kept, key=ord)


def character_coverage(tokenizer: Tokenizer, texts: Iterable[str]) -> dict[str, int | float]:
    """How a tokenizer's vocabulary covers the characters of texts (normalised by its normaliser):
    alphabet_seen distinct characters, alphabet_left_out of them without a token of their own (they encode
    as [UNK], and so does a word holding one) and alphabet_left_out_share, their share of all occurrences."""
    counts = character_counts(texts, tokenizer.normalizer)
    vocab = tokenizer.get_vocab(with_added_tokens=False)
    left_out = sorted((char for char in counts if char not in vocab), key=lambda char: (-counts[char], ord(char)))
    total = sum(counts.values())
    if left_out:
        logger.info("characters of the tokenizer's training text without a token, most frequent first: %s",
                    " ".join(f"{char}x{counts[char]}" for char in left_out[:20]))
    return {
        "alphabet_seen": len(counts),
        "alphabet_left_out": len(left_out),
        "alphabet_left_out_share": sum(counts[char] for char in left_out) / total if total else 0.0,
    }


_COUNT_CHUNK_CHARS = 1 << 20


def _code_point_counts(texts: list[str]) -> np.ndarray:
    """(sys.maxunicode + 1,) int64 occurrences of each code point in texts (lone surrogates included)."""
    codes = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), np.uint32)
    return np.bincount(codes, minlength=sys.maxunicode + 1)


def _always_whole_words(pipeline: Tokenizer, alphabet: list[str]) -> set[str]:
    """Characters of the alphabet that the pipeline always makes a word of their own, so no "##" piece of
    them can occur: BertPreTokenizer splits off punctuation (ASCII symbols too) and the normaliser spaces
    out CJK ideographs. Asked of the pipeline itself (each character between two letters), not of a copy of
    its code point ranges: tokenizers' Rust ranges differ from BERT's Python ones (U+2B820-U+2B91F)."""
    whole = set()
    for char in alphabet:
        words = pipeline.pre_tokenizer.pre_tokenize_str(pipeline.normalizer.normalize_str(f"a{char}a"))
        if [word for word, _ in words] == ["a", char, "a"]:
            whole.add(char)
    return whole


def is_cjk_character(character: str) -> bool:
    """True for a CJK ideograph (the code point ranges BERT's tokenizer splits on)."""
    code = ord(character)
    return (0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0x20000 <= code <= 0x2A6DF
            or 0x2A700 <= code <= 0x2B73F or 0x2B740 <= code <= 0x2B81F or 0x2B820 <= code <= 0x2CEAF
            or 0xF900 <= code <= 0xFAFF or 0x2F800 <= code <= 0x2FA1F)


def _is_piece_of_one_char(token: str) -> bool:
    return token.startswith(CONTINUING_SUBWORD_PREFIX) and len(token) == len(CONTINUING_SUBWORD_PREFIX) + 1


def save_tokenizer(
    tokenizer: Tokenizer,
    out_dir: Path,
    *,
    lowercase: bool,
    strip_accents: bool | None,
    model_max_length: int,
) -> None:
    """Save as a Hugging Face tokenizer folder, atomically (written beside, then renamed)."""
    # Imported here: transformers is slow to import and only saving needs it.
    from transformers import BertTokenizerFast

    out_dir = Path(out_dir)
    tmp_dir = out_dir.with_name(out_dir.name + ".tmp")
    if tmp_dir.exists():  # left by a killed attempt
        shutil.rmtree(tmp_dir)
    hf_tokenizer = BertTokenizerFast(
        tokenizer_object=tokenizer,
        do_lower_case=lowercase,
        strip_accents=strip_accents,
        tokenize_chinese_chars=True,
        model_max_length=model_max_length,
    )
    hf_tokenizer.save_pretrained(str(tmp_dir))
    # vocab.txt (one token per line, in id order) is for tools that read Google BERT's format.
    vocab = sorted(tokenizer.get_vocab(with_added_tokens=True).items(), key=lambda item: item[1])
    (tmp_dir / "vocab.txt").write_text("".join(token + "\n" for token, _ in vocab), encoding="utf-8")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp_dir, out_dir)


def _read_tokenizer_folder(path: Path) -> tuple[Tokenizer | None, list[str]]:
    """(the folder's tokenizer or None, everything wrong with it); [] problems when usable."""
    path = Path(path)
    if not path.is_dir():
        return None, [f"tokenizer folder {str(path)!r} does not exist or is not a directory"]
    if not (path / "tokenizer.json").is_file():
        return None, [f"tokenizer folder {str(path)!r} has no tokenizer.json (save it with save_pretrained)"]
    try:
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    except Exception as error:  # the Rust side raises a bare Exception for bad JSON
        return None, [f"{str(path / 'tokenizer.json')!r} cannot be read: {error}"]
    problems = []
    missing = [token for token in SPECIAL_TOKENS if tokenizer.token_to_id(token) is None]
    if missing:
        problems.append(f"tokenizer {str(path)!r} lacks special tokens {missing}; needs all of {list(SPECIAL_TOKENS)}")
    if tokenizer.token_to_id(PAD) not in (None, 0):
        problems.append(f"tokenizer {str(path)!r} has {PAD}={tokenizer.token_to_id(PAD)}; it must be 0")
    return tokenizer, problems


def tokenizer_folder_problems(path: Path) -> list[str]:
    """Everything wrong with a folder that should hold a BERT tokenizer ([] when usable).

    Beyond tokenizer.json (what the shards are encoded with), transformers' AutoTokenizer must read the
    folder the same way, since pretraining and evaluation load it that way. That check imports transformers
    (~3 CPU-s), which every command naming `tokenize.tokenizer_path` would pay at config validation; so a
    folder that passed is remembered by the digest of its files and the transformers version
    (_passed_check_marker), and checked again only when one of them changes.
    """
    tokenizer, problems = _read_tokenizer_folder(path)
    if tokenizer is None or problems:
        return problems
    marker = _passed_check_marker(Path(path))
    if marker is not None and marker.exists():
        return []
    problems = _transformers_problems(Path(path), tokenizer)
    if not problems and marker is not None:
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        except OSError:  # a read-only cache: check again next time
            pass
    return problems


def _passed_check_marker(path: Path) -> Path | None:
    """$PRETRAINFLOW_CACHE_DIR (else ~/.cache/pretrainflow)/tokenizer-checks/<sha256 of the folder's files and
    transformers' version>:
    an empty file whose presence says this exact folder content passed _transformers_problems; None when
    transformers is not installed (then the check reports that)."""
    import hashlib
    from importlib import metadata

    try:
        digest = hashlib.sha256(f"transformers {metadata.version('transformers')}".encode())
    except metadata.PackageNotFoundError:
        return None
    for file in sorted(p for p in path.iterdir() if p.is_file()):
        digest.update(f"\0{file.name}\0{file.stat().st_size}\0".encode())
        digest.update(file.read_bytes())
    cache = os.environ.get("PRETRAINFLOW_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pretrainflow"
    return Path(cache) / "tokenizer-checks" / digest.hexdigest()


# A pair with mixed case, accents, CJK and full-width characters: a tokenizer_config.json that disagrees
# with tokenizer.json on lowercasing, accent stripping or Chinese characters encodes it differently.
_PROBE = ("Héllo WORLD, Ünïcödé café NAÏVE Straße", "中文字符 日本語のテキスト ＡＢＣ İstanbul")
_SPECIAL_TOKEN_ATTRIBUTES = {PAD: "pad_token_id", UNK: "unk_token_id", CLS: "cls_token_id", SEP: "sep_token_id",
                             MASK: "mask_token_id"}
_FIX_FOLDER = ("; fix the folder by loading it in transformers with the settings its tokenizer.json uses and saving it "
               "again, e.g. BertTokenizerFast(tokenizer_file=<folder>/tokenizer.json, do_lower_case=..., "
               "strip_accents=..., tokenize_chinese_chars=True).save_pretrained(<folder>)")


def _transformers_problems(path: Path, tokenizer: Tokenizer) -> list[str]:
    """Where transformers' AutoTokenizer reads the folder differently from its tokenizer.json ([] if nowhere)."""
    from transformers import AutoTokenizer  # slow to import (~3 s) when nothing has imported it yet

    try:
        hf_tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as error:  # anything transformers raises means the folder is not loadable
        return [f"transformers' AutoTokenizer cannot load tokenizer folder {str(path)!r} "
                f"({type(error).__name__}: {error})" + _FIX_FOLDER]
    wrong = [f"{token}={getattr(hf_tokenizer, attribute, None)} (tokenizer.json: {tokenizer.token_to_id(token)})"
             for token, attribute in _SPECIAL_TOKEN_ATTRIBUTES.items()
             if getattr(hf_tokenizer, attribute, None) != tokenizer.token_to_id(token)]
    if wrong:
        return [f"transformers' AutoTokenizer loads tokenizer folder {str(path)!r} with special token ids "
                f"{', '.join(wrong)}; tokenizer_config.json / special_tokens_map.json must name {list(SPECIAL_TOKENS)} "
                "as pad, unk, cls, sep and mask tokens" + _FIX_FOLDER]
    tokenizer.no_truncation()  # padding or truncation saved in tokenizer.json is not what is compared
    tokenizer.no_padding()
    expected = tokenizer.encode(*_PROBE).ids
    actual = list(hf_tokenizer(*_PROBE)["input_ids"])
    if actual != expected:
        first = next(i for i, (a, b) in enumerate(itertools.zip_longest(actual, expected)) if a != b)
        return [f"transformers' AutoTokenizer encodes text differently from tokenizer.json in tokenizer folder "
                f"{str(path)!r}: from token {first} of {_PROBE!r} it gives "
                f"{hf_tokenizer.convert_ids_to_tokens(actual[first : first + 6])}, tokenizer.json gives "
                f"{[tokenizer.id_to_token(i) for i in expected[first : first + 6]]} (tokenizer_config.json's "
                "do_lower_case, strip_accents or tokenize_chinese_chars disagree with tokenizer.json's normalizer)"
                + _FIX_FOLDER]
    return []


def load_tokenizer(path: Path) -> Tokenizer:
    """Load a tokenizer folder's tokenizer.json with padding and truncation switched off."""
    tokenizer, problems = _read_tokenizer_folder(path)
    if problems:
        raise ValueError("; ".join(problems))
    # Shards hold whole sentences; truncation or padding baked into a loaded file would corrupt them.
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def copy_tokenizer_folder(source: Path, out_dir: Path) -> None:
    """Copy an existing tokenizer folder into out_dir atomically (validated first)."""
    problems = tokenizer_folder_problems(source)
    if problems:
        raise ValueError("; ".join(problems))
    out_dir = Path(out_dir)
    tmp_dir = out_dir.with_name(out_dir.name + ".tmp")
    if tmp_dir.exists():
        shutil.rmtree(tmp_dir)
    shutil.copytree(source, tmp_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp_dir, out_dir)


def is_continuation_table(tokenizer: Tokenizer) -> list[bool]:
    """Per id: True when the WordPiece token continues a word (starts with ##)."""
    table = [False] * tokenizer.get_vocab_size(with_added_tokens=True)
    for token, index in tokenizer.get_vocab(with_added_tokens=True).items():
        table[index] = token.startswith(CONTINUING_SUBWORD_PREFIX) and len(token) > len(CONTINUING_SUBWORD_PREFIX)
    return table


def character_token_count(tokenizer: Tokenizer) -> int:
    """Tokens of the vocabulary that are one character or a "##" piece of one character (the alphabet's)."""
    return sum(len(token) == 1 or _is_piece_of_one_char(token) for token in tokenizer.get_vocab(with_added_tokens=False))


def special_token_ids(tokenizer: Tokenizer) -> dict[str, int]:
    """Ids of [PAD] [UNK] [CLS] [SEP] [MASK] by token string."""
    return {token: tokenizer.token_to_id(token) for token in SPECIAL_TOKENS}

