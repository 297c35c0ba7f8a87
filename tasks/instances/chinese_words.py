"""Chinese whole-word masking: word boundaries from the jieba segmenter (optional dependency).

BERT's tokenizer makes every CJK character its own token, so "##" pieces never group Chinese words.
As in Chinese-BERT-wwm, runs of CJK character tokens are decoded, segmented into words by jieba, and
each character after the first of a word is marked as continuing it, so masking takes whole words.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from tasks.instances.token_index import WordSegmenter
from tasks.tokens.tokenizer import is_cjk_character, load_tokenizer


def jieba_segmenter(tokenizer_dir: Path) -> WordSegmenter:
    """(sentence ids,) -> (sentence ids,) bool: True for a CJK character continuing a jieba word."""
    try:
        import jieba
    except ImportError as error:
        raise ImportError("chinese_word_segmentation=true needs jieba: pip install 'pretrainflow[chinese]'") from error
    jieba.setLogLevel(logging.WARNING)
    tokenizer = load_tokenizer(tokenizer_dir)
    characters = [""] * tokenizer.get_vocab_size(with_added_tokens=True)  # per id: its CJK character or ""
    for token, index in tokenizer.get_vocab(with_added_tokens=True).items():
        if len(token) == 1 and is_cjk_character(token):
            characters[index] = token
    is_cjk = np.array([bool(c) for c in characters])

    def segment(ids: np.ndarray) -> np.ndarray:
        continues = np.zeros(len(ids), bool)
        cjk = is_cjk[ids]
        if not cjk.any():
            return continues
        # [start, end) runs of consecutive CJK character tokens
        edges = np.flatnonzero(np.diff(np.concatenate([[0], cjk.astype(np.int8), [0]])))
        for start, end in zip(edges[0::2].tolist(), edges[1::2].tolist()):
            text = "".join(characters[i] for i in ids[start:end].tolist())
            position = start
            for word in jieba.cut(text, HMM=True):
                continues[position + 1 : position + len(word)] = True
                position += len(word)
        return continues

    return segment
