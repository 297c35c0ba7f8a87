"""The corpus stage: sources -> sharded cleaning -> global dedup -> a Parquet snapshot with its report.

snapshot.py runs the stage (build_snapshot) and config.py is its CorpusConfig. The sources are the
crawl (tasks/crawl/), local files (local_files.py), WARC/WET files (warc_files.py) and Hugging Face
datasets (hf_datasets.py); work_shards.py splits them into input shards, clean_shard.py cleans one shard
with tasks/clean/, dedup.py ranks and deduplicates across shards, write.py writes the snapshot and
cleaning_report.py its report and plots.

Must not import MLflow or Prefect: tasks/stages.py tracks the stage run, flows/ orchestrates it. From
the rest of tasks/ it uses tasks/crawl/, tasks/clean/, tasks.parallel (the shard map), tasks.artifacts,
tasks.pieces (checksums of resumable pieces), and may raise tasks.errors.InputError.
"""
