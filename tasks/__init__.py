"""The work of every stage as plain, typed functions that run without a Prefect server or MLflow.

One package per stage or concern, in pipeline order: crawl/ (fetching pages), clean/ (documents in,
documents out), corpus/ (the corpus stage), tokens/ (the tokenize stage), instances/ (the instances
stage), pretrain/ (launching model/ under torchrun), evaluate/ (the evaluate stage). The few seams every
stage shares sit at the top: config.py (the pipeline config), stages.py (the stage table and one stage
run), artifacts.py (the on-disk layout), tracking.py (the only module that imports MLflow) and
parallel.py (how a stage's steps and shards run). Beside them: text.py (script ranges and sentence marks
that cleaning and tokenizing share), errors.py (InputError: failures users cause, which every package
may raise), presets.py (where the config presets are), pieces.py (the size and sha256 of a stage's
resumable pieces, checked before a rerun reuses one), output_checks.py (what makes a stage's output
unusable, checked before it is committed), and what runs record of themselves: summary.py (names,
summary lines and tables), lineage.py (a stage run's reports, datasets and registered model versions in
MLflow) and liveness.py (which process a run belongs to, for runs left running by a dead one). Nothing in tasks/ imports Prefect: flows/ wraps these functions.
"""
