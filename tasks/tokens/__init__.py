"""The tokenize stage: a corpus snapshot -> a WordPiece tokenizer and Arrow shards of sentences of token ids.

shards.py runs the stage (build_token_shards, TokenizeConfig) and owns the token-shard format that the
instances stage reads; tokenizer.py trains, saves and loads the tokenizer; sentences.py splits
documents into sentences (its splitter also counts sentences for C4's page filter).

Must not import MLflow, Prefect, torch or another stage's package; from the rest of tasks/ it uses
tasks.text (the script ranges and sentence marks cleaning uses too), tasks.parallel (the shard map),
tasks.pieces (checksums of resumable pieces), and may raise tasks.errors.InputError.
"""
