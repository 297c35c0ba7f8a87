"""Google BERT's instance generation in plain Python, as a command: the same-run baseline of instances_bench.py.

    PYTHONPATH=. .venv/bin/python bench/google_reference.py instances --tokens TOKENS_DIR --config CFG --output OUT
    PYTHONPATH=. .venv/bin/python bench/google_reference.py text --snapshot SNAPSHOT_DIR --tokenizer TOKENIZER_DIR \
        --config CFG --output OUT

Both take the instance settings from the `instances:` section of the pipeline YAML that the stage
commands read (validated by the stage's own InstancesConfig, so the defaults are the stage's), and print
one JSON line: instances, documents and tokens per split.

instances: reads the token shards of the tokenize stage (tasks.tokens.shards.read_token_documents: each
document a list of sentences of token ids; empty sentences and documents dropped, as the stage's token
index drops them) and the whole-word flags from the tokenizer (a token continues a word when it is a
"##" piece: MaskingVocabulary.is_continuation, as the stage's index builds them). Then, for each split,
Google's create_instances_from_document in plain Python (tasks/instances/reference.py) over the same
work units and seeds as the stage (tasks.instances.generate.plan_units and unit_seeds), each unit's
instances shuffled with the unit's shuffle seed and written as `<split>/instances-NNNNN.arrow` in the
stage's schema. The reference and the stage's numba kernel draw every random number in the same order,
so both write the same instances (tests/bench/test_instances_bench.py compares the shards).

text: what Google's create_pretraining_data.py does from text, with the tokenize stage's choices:
reads the snapshot's Parquet text (id, content_hash, text), puts each document in the split the stage
would (tasks.tokens.shards.split_of with the config's tokenize.validation_fraction), splits it into
sentences with the project's splitter (tasks.tokens.sentences.split_document: blingfire per line plus a
terminator pass), encodes the sentences of 256 documents at a time with `Tokenizer.encode_batch` of the
tokenizer folder's tokenizer.json (no special tokens added; special-token strings in the text encoded as
text, as the stage and Google's FullTokenizer do), and then makes instances as `instances` does.

Where this differs from Google's script (google-research/bert create_pretraining_data.py):
- Google's script reads text already split one sentence per line; the sentence splitting here is the
  same work our tokenize stage does, so both sides of the benchmark do it.
- Google tokenizes with its pure-Python FullTokenizer; here Hugging Face's Rust tokenizer does it (it may
  use several threads), so this baseline is much faster than Google's script would be.
- Google draws from one random generator over the whole corpus, repeats dupe_factor passes over all
  documents and shuffles all instances at the end; here each work unit has its own seeds and shuffle,
  as in the stage, so that both make identical instances. Google's known bugs are fixed as in the stage
  (tasks/instances/generate.py): the work per instance is the same.
- Output is Arrow IPC shards in the stage's schema, not TFRecord files of tf.train.Example (no TensorFlow).
Like Google's script, it holds a whole split's documents in memory as Python lists, and a unit's instances.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tasks.instances.generate import InstancesConfig, instance_schema, plan_units, unit_seeds
from tasks.instances.masking import MaskingVocabulary, masking_vocabulary
from tasks.instances.reference import ReferenceInstance, ReferenceSettings, packed_instances, pair_instances
from tasks.tokens.sentences import split_document
from tasks.tokens.shards import (
    SPLITS,
    TOKENIZER_DIRNAME,
    TokenizeConfig,
    read_token_documents,
    snapshot_files,
    split_of,
    write_stream_atomically,
)
from tasks.tokens.tokenizer import CLS, SEP, load_tokenizer, special_token_ids

ENCODE_BATCH_DOCUMENTS = 256  # documents read and encoded together (the tokenize stage's default batch_size)

Document = list[list[int]]  # sentences of token ids


def read_settings(config: Path) -> tuple[InstancesConfig, float]:
    """The instances section of a pipeline YAML (the stage's class and defaults) and tokenize.validation_fraction."""
    sections = yaml.safe_load(config.read_text()) or {}
    cfg = InstancesConfig.model_validate(sections.get("instances") or {})
    if cfg.chinese_word_segmentation:
        raise SystemExit("the plain-Python reference has no Chinese word segmentation: "
                         "set instances.chinese_word_segmentation=false")
    tokenize = sections.get("tokenize") or {}
    # only this field: validating tokenizer_path would import transformers, work the reference does not need
    fraction = TokenizeConfig.model_validate({k: v for k, v in tokenize.items() if k == "validation_fraction"})
    return cfg, fraction.validation_fraction


def nonempty(documents: list[Document]) -> list[Document]:
    """Documents without their empty sentences, and without the documents left empty."""
    kept = ([sentence for sentence in document if sentence] for document in documents)
    return [document for document in kept if document]


def split_instances(documents: list[Document], split: str, cfg: InstancesConfig, vocab: MaskingVocabulary,
                    settings: ReferenceSettings, out_dir: Path) -> int:
    """Make and write one split's instances, unit by unit as the stage cuts them; how many were made."""
    is_continuation = vocab.is_continuation.tolist()
    # (token id, continues the word before) per token: the reference's input
    paired = [[[(token, is_continuation[token]) for token in sentence] for sentence in document]
              for document in documents]
    document_tokens = np.array([sum(map(len, document)) for document in documents], np.int64)
    schema = instance_schema(len(vocab.is_special))
    made = 0
    for unit, (first, last) in enumerate(plan_units(document_tokens, cfg)):
        seeds = unit_seeds(cfg.seed, split, unit, cfg.dupe_factor)
        instances: list[ReferenceInstance] = []
        for pass_seed in seeds[:-1]:
            rng = np.random.default_rng(pass_seed)
            if cfg.objective == "mlm":
                instances += packed_instances(paired, first, last, settings, vocab, rng)
            else:
                for index in range(first, last):
                    instances += pair_instances(paired, index, settings, vocab, rng)
        order = np.random.default_rng(seeds[-1]).permutation(len(instances))
        write_stream_atomically(instances_table([instances[k] for k in order.tolist()], schema),
                                out_dir / split / f"instances-{unit:05d}.arrow")
        made += len(instances)
    return made


def instances_table(instances: list[ReferenceInstance], schema: pa.Schema) -> pa.Table:
    """Unpadded instances as a table of the stage's schema."""
    return pa.Table.from_arrays([
        pa.array([x.input_ids for x in instances], schema.field("input_ids").type),
        pa.array([[0] * x.type_zero_length + [1] * (len(x.input_ids) - x.type_zero_length) for x in instances],
                 schema.field("token_type_ids").type),
        pa.array([x.masked_lm_positions for x in instances], schema.field("masked_lm_positions").type),
        pa.array([x.masked_lm_ids for x in instances], schema.field("masked_lm_ids").type),
        pa.array([x.next_sentence_label for x in instances], schema.field("next_sentence_label").type),
    ], schema=schema)


def make_instances(documents: dict[str, list[Document]], tokenizer_dir: Path, cfg: InstancesConfig,
                   out_dir: Path) -> dict[str, int]:
    """Instances of every split into out_dir; counts per split."""
    vocab = masking_vocabulary(tokenizer_dir)
    special = special_token_ids(load_tokenizer(tokenizer_dir))
    settings = ReferenceSettings(cfg.objective, cfg.masking == "static", cfg.max_seq_length, cfg.short_seq_prob,
                                 cfg.random_next_prob, cfg.masked_lm_prob, cfg.max_predictions_per_seq,
                                 cfg.whole_word_mask, special[CLS], special[SEP])
    counts: dict[str, int] = {}
    for split in SPLITS:
        kept = nonempty(documents[split])
        counts[f"{split}_documents"] = len(kept)
        counts[f"{split}_tokens"] = sum(len(sentence) for document in kept for sentence in document)
        counts[f"{split}_instances"] = split_instances(kept, split, cfg, vocab, settings, out_dir)
    counts["instances"] = sum(counts[f"{split}_instances"] for split in SPLITS)
    return counts


def encode_snapshot(snapshot_dir: Path, tokenizer_dir: Path, validation_fraction: float) -> dict[str, list[Document]]:
    """Every snapshot document as sentences of token ids, by split (see the module docstring)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    tokenizer.encode_special_tokens = True  # "[MASK]" written in the text is text, as for the stage
    documents: dict[str, list[Document]] = {split: [] for split in SPLITS}
    for path in snapshot_files(snapshot_dir):
        batches = pq.ParquetFile(path).iter_batches(batch_size=ENCODE_BATCH_DOCUMENTS, columns=["content_hash", "text"])
        for batch in batches:
            columns = batch.to_pydict()
            per_document = [split_document(text or "") for text in columns["text"]]
            encodings = tokenizer.encode_batch([s for sentences in per_document for s in sentences],
                                               add_special_tokens=False)
            position = 0
            for content_hash, sentences in zip(columns["content_hash"], per_document):
                ids = [encoding.ids for encoding in encodings[position : position + len(sentences)]]
                position += len(sentences)
                documents[split_of(content_hash, validation_fraction)].append(ids)
    return documents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    from_tokens = commands.add_parser("instances", help="token shards -> instance shards")
    from_tokens.add_argument("--tokens", type=Path, required=True, help="output folder of the tokenize stage")
    from_text = commands.add_parser("text", help="snapshot text -> sentences -> token ids -> instance shards")
    from_text.add_argument("--snapshot", type=Path, required=True, help="corpus snapshot folder (documents-*.parquet)")
    from_text.add_argument("--tokenizer", type=Path, required=True, help="tokenizer folder (tokenizer.json)")
    for command in (from_tokens, from_text):
        command.add_argument("--config", type=Path, required=True,
                             help="pipeline YAML: its instances section and tokenize.validation_fraction")
        command.add_argument("--output", type=Path, required=True, help="folder for <split>/instances-NNNNN.arrow")
    args = parser.parse_args()
    cfg, validation_fraction = read_settings(args.config)
    if args.command == "instances":
        documents = {split: list(read_token_documents(args.tokens, split)) for split in SPLITS}
        tokenizer_dir = args.tokens / TOKENIZER_DIRNAME
    else:
        documents = encode_snapshot(args.snapshot, args.tokenizer, validation_fraction)
        tokenizer_dir = args.tokenizer
    print(json.dumps(make_instances(documents, tokenizer_dir, cfg, args.output)))


if __name__ == "__main__":
    main()
