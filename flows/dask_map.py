"""Sharded stage work on a Dask cluster, through prefect-dask's task runner, one Prefect task run per shard.

A stage flow picks its shard map from `config.parallel`: without a `dask_address` the shards run in
local processes (`tasks.parallel.local_map`); with one, every shard is submitted as a Prefect task to a
`DaskTaskRunner`, so each shard is a task run of the stage's flow in the UI and runs
on a Dask worker. The runner is chosen from the config a run receives, not from the flow decorator,
so CLI runs, pipeline subflows and deployment runs all honour the same `parallel` section.

Why not `Task.map` on the flow's own task runner: it would need the runner fixed where the flow is
defined (`@flow(task_runner=...)`), before the run's config is known. `DaskTaskRunner` is entered
here instead; its cluster starts lazily on the first shard, so a cache hit starts no cluster.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

from tasks.parallel import ParallelConfig, ShardMap, local_map

if TYPE_CHECKING:  # prefect_dask imports dask.distributed (~0.35 CPU-s): only a run with a dask_address pays it
    from prefect_dask import DaskTaskRunner

R = TypeVar("R")


def dask_task_runner(parallel: ParallelConfig) -> DaskTaskRunner:
    """The runner for `parallel.dask_address`: 'local' = a LocalCluster of `workers` processes on loopback."""
    from prefect_dask import DaskTaskRunner

    if parallel.dask_address == "local":
        return DaskTaskRunner(
            cluster_class="distributed.LocalCluster",
            cluster_kwargs={
                "n_workers": parallel.workers or os.cpu_count() or 1,
                "threads_per_worker": 1,  # shard work is CPU-bound Python: one process per core, not threads
                "processes": True,
                "host": "127.0.0.1",
                "dashboard_address": None,  # no dashboard port to collide with
            },
        )
    return DaskTaskRunner(address=parallel.dask_address)


@contextmanager
def shard_map(parallel: ParallelConfig) -> Iterator[ShardMap]:
    """The shard map a stage run uses: local processes, or Prefect tasks on Dask (cluster lives for the block)."""
    if not parallel.dask_address:
        with local_map(parallel.workers) as map_shards:  # workers, once started, serve every map of the stage
            yield map_shards
        return
    environ = dict(os.environ)
    try:
        with dask_task_runner(parallel) as runner:
            yield partial(prefect_map, runner)
    finally:
        # distributed's nannies set OMP_NUM_THREADS=1 (and similar) in this process's environment for their
        # workers; put it back, or later subprocesses (torchrun training, tests' children) run on one thread
        os.environ.clear()
        os.environ.update(environ)


def prefect_map(runner: DaskTaskRunner, fn: Callable[[Any], R], items: Sequence[Any], /) -> list[R]:
    """fn over items as one Prefect task run per item on the runner; results in item order."""
    # Caching is the artifact store's job (content-addressed ids): no input hashing per shard.
    shard_task = task(fn, name=f"shard-{fn.__name__}", cache_policy=NO_CACHE)
    param = next(iter(inspect.signature(fn).parameters))
    with _api_visible_to_workers():
        futures = [runner.submit(shard_task, {param: item}) for item in items]
        return [future.result() for future in futures]


def _api_visible_to_workers():
    """Pin this process's Prefect API URL into the settings the workers receive with each shard.

    In ephemeral mode (no PREFECT_API_URL) this process runs a temporary API server on loopback; without
    the pin each Dask worker would start its own server on the same database.
    """
    if PREFECT_API_URL.value():
        return nullcontext()
    api_url = str(get_client(sync_client=True).api_url).rstrip("/")  # the running ephemeral server's URL
    return temporary_settings(updates={PREFECT_API_URL: api_url})
