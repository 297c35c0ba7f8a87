"""The instances stage: token shards -> BERT pretraining instances (Google's create_pretraining_data).

generate.py runs the stage (build_instances, InstancesConfig); kernels.py is the compiled (numba)
algorithm and reference.py the same algorithm in plain Python that the tests hold it to, side by
side; masking.py masks one instance (80/10/10, whole words); token_index.py maps a split's token shards
for every worker; chinese_words.py groups CJK characters into words for whole-word masking.

Reads the token-shard format of tasks/tokens/. Must not import MLflow, Prefect or torch; from the rest of
tasks/ it uses tasks/tokens/, tasks.parallel (the shard map), tasks.artifacts, tasks.pieces (checksums of
resumable pieces), and may raise tasks.errors.InputError.
"""
