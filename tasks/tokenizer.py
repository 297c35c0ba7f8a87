"""BERT WordPiece tokenizer: train one with Hugging Face `tokenizers`, save it, load it.

The saved folder is what `transformers.AutoTokenizer.from_pretrained` loads as a `BertTokenizerFast`.
transformers rebuilds a BERT tokenizer from the vocabulary plus `do_lower_case`, `strip_accents` and
`tokenize_chinese_chars` in tokenizer_config.json (and takes the post-processor from tokenizer.json),
so the pipeline built here uses exactly the components and defaults that rebuild produces: the same
text then encodes to the same ids whichever way the folder is loaded.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

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
    limit_alphabet: int,
    length: int | None = None,
) -> Tokenizer:
    """Train a BERT WordPiece tokenizer on texts (or batches of texts); [PAD] gets id 0."""
    # Not byte-reproducible across processes: the trainer numbers "##" pieces in hash-map order and
    # breaks merge-count ties by id (huggingface/tokenizers#1794). Stages save the result and reuse it.
    tokenizer = build_pipeline(lowercase, strip_accents)
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        limit_alphabet=limit_alphabet,
        continuing_subword_prefix=CONTINUING_SUBWORD_PREFIX,
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=length)
    _set_pair_template(tokenizer)
    logger.info("trained WordPiece tokenizer with %d tokens", tokenizer.get_vocab_size())
    return tokenizer


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
    """Everything wrong with a folder that should hold a BERT tokenizer ([] when usable)."""
    return _read_tokenizer_folder(path)[1]


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


def special_token_ids(tokenizer: Tokenizer) -> dict[str, int]:
    """Ids of [PAD] [UNK] [CLS] [SEP] [MASK] by token string."""
    return {token: tokenizer.token_to_id(token) for token in SPECIAL_TOKENS}

