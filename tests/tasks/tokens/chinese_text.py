"""Inline Chinese text for the tokenizer tests: short sentences of common characters with full-width punctuation."""

from __future__ import annotations

import random

# ~500 of the most common Chinese characters, in no particular order; each appears once here.
COMMON_CHARACTERS = (
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多"
    "天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但"
    "身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四"
    "第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通"
    "目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物"
    "台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫连远"
    "资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品士转量空甚众技轻程告江"
    "语英基派满式李息写呢识极令黄德收脸钱党倒未持取设始版双历越史商千片容研像找友孩站广改议形委早房音火际则首单据"
    "导影失拿网香似斯专石若兵弟谁校推献您另"
)
INNER_PUNCTUATION = "，，，、：；"
END_PUNCTUATION = "。。。！？"
QUOTES = ("「」", "（）", "《》", "“”")


def chinese_sentences(count: int, seed: int = 0, characters: str = COMMON_CHARACTERS) -> list[str]:
    """count sentences of 2-3 clauses of 3-8 characters each (Zipf-like choice: early characters are common),
    joined by full-width commas and the like, some quoted, each ending in 。！ or ？."""
    rng = random.Random(seed)
    weights = [1 / (rank + 10) for rank in range(len(characters))]
    sentences = []
    for _ in range(count):
        clauses = ["".join(rng.choices(characters, weights, k=rng.randint(3, 8))) for _ in range(rng.randint(2, 3))]
        if rng.random() < 0.2:
            opening, closing = rng.choice(QUOTES)
            clauses[-1] = opening + clauses[-1] + closing
        sentence = clauses[0]
        for clause in clauses[1:]:
            sentence += rng.choice(INNER_PUNCTUATION) + clause
        sentences.append(sentence + rng.choice(END_PUNCTUATION))
    return sentences
