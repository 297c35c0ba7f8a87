"""Cleaning: documents in, documents out, every dropped document counted by step and reason.

steps.py holds the document, the three step signatures (TextFix, DocumentFix, Filter) and the
pipeline that runs them and keeps the account; the steps themselves are extraction (extract.py, with
charset.py), ftfy, Unicode and whitespace normalisation (normalize.py, its config in normalize_config.py),
language id (langid.py), the quality filter families
(quality.py composes gopher.py, c4.py and fineweb.py over the word and line measures of
text_stats.py), exact dedup keys (exact_dedup.py), MinHash near-dedup (minhash.py, its config in
minhash_config.py) and PII redaction (pii.py). The corpus stage (tasks/corpus/) shards and runs them.
A module that holds a config loads with every pipeline config, so it imports its heavy libraries (lxml,
ftfy, numpy, charset_normalizer, trafilatura, py3langid) in the functions that use them.

Must not import MLflow, Prefect, torch, the artifact store or another stage's package: every step is
a plain function of its input, testable on a string. From the rest of tasks/ it imports tasks.text
(script ranges, sentence marks) and the sentence splitter of tasks/tokens/sentences.py, so C4 counts
sentences as the tokenize stage splits them.
"""
