"""How well a tokenizer covers its text: the stage's [UNK] warning, with the likely cause and its fix."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class AlphabetSettings(Protocol):
    """The TokenizeConfig fields the warning names (a Protocol: shards.py imports this module)."""

    tokenizer_path: Path | str | None
    alphabet_min_frequency: int
    limit_alphabet: int | None

# Share of a split's tokens that may be [UNK] before the stage warns. Measured on held-out text with a
# vocabulary of 16 k: a 1,000-character alphabet left 11.5% of Chinese poetry (fortunes-zh) [UNK], characters
# seen twice or more 0.8%; 0.04% of Chinese man pages (manpages-zh) and 0.02% of the Python docs.
UNK_RATE_WARNING = 0.01


def unk_rate_warning(stats: dict[str, int | float], cfg: AlphabetSettings) -> str | None:
    """What to say when [UNK] is more than UNK_RATE_WARNING of a split's tokens: the rate, the likely cause
    and its fix; None when no split is above it."""
    high = {key.removesuffix("_unk_rate"): rate for key, rate in stats.items()  # per split: <split>_unk_rate
            if key.endswith("_unk_rate") and rate > UNK_RATE_WARNING}
    if not high:
        return None
    rates = " and ".join(f"{rate:.2%} of the {split} split's tokens" for split, rate in high.items())
    left_out = (f"{stats['alphabet_left_out']:,} of the {stats['alphabet_seen']:,} distinct characters of the "
                f"tokenizer's training text ({stats['alphabet_left_out_share']:.2%} of its characters) have no token")
    lower = ([f"lower tokenize.alphabet_min_frequency ({cfg.alphabet_min_frequency})"]
             if cfg.alphabet_min_frequency > 1 else [])
    if cfg.tokenizer_path is not None:
        cause = (f"{left_out} in the tokenizer given in tokenize.tokenizer_path: give one made for this text's "
                 "script, or leave tokenize.tokenizer_path unset to train one")
    elif "train" not in high:
        more_text = "train the tokenizer on more of the corpus (tokenize.max_training_bytes, max_training_documents)"
        cause = (f"the validation text holds characters that the training text lacks or has fewer than "
                 f"alphabet_min_frequency times ({left_out}): {' or '.join([*lower, more_text])}")
    elif stats["alphabet_left_out_share"] >= high["train"] / 10:  # a left-out character makes its word [UNK]
        cap = [] if cfg.limit_alphabet is None else [f"raise or remove tokenize.limit_alphabet ({cfg.limit_alphabet})"]
        cause = f"{left_out}: {' or '.join([*cap, *lower]) or 'check the corpus text'}"
    else:
        cause = ("words longer than 100 characters (WordPiece's limit: URLs, hashes, encoded data) encode as one "
                 "[UNK] each: check the corpus text")
    return f"[UNK] is {rates}, above {UNK_RATE_WARNING:.0%}: the model never sees that text. Likely cause: {cause}"
