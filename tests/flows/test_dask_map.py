"""flows/dask_map.py: shards as Prefect task runs on a real 2-worker Dask LocalCluster (processes, loopback)."""

from __future__ import annotations

import asyncio
import os

from prefect import flow
from prefect.runtime import flow_run

from flows.dask_map import shard_map
from tasks.parallel import ParallelConfig


def square_with_pid(item: int) -> tuple[int, int]:
    """A shard worker: module-level so it pickles; reports the process it ran in."""
    return item * item, os.getpid()


@flow(name="dask-map-probe")
def mapping_flow(parallel: ParallelConfig, items: list[int]) -> dict:
    with shard_map(parallel) as map_shards:
        results = map_shards(square_with_pid, items)
    return {"flow_run_id": str(flow_run.id), "results": results}


def test_shards_run_as_prefect_tasks_on_dask_workers_and_come_back_in_order(prefect_harness):
    items = list(range(10, 0, -1))
    out = mapping_flow(ParallelConfig(workers=2, dask_address="local"), items)

    results = [tuple(r) for r in out["results"]]
    assert [square for square, _ in results] == [i * i for i in items]
    worker_pids = {pid for _, pid in results}
    assert os.getpid() not in worker_pids and 1 <= len(worker_pids) <= 2

    task_runs = asyncio.run(task_runs_of(out["flow_run_id"]))
    shard_runs = [t for t in task_runs if t.name.startswith("shard-square_with_pid")]
    assert len(shard_runs) == len(items)
    assert {t.state.type.value for t in shard_runs} == {"COMPLETED"}


def test_without_a_dask_address_shards_run_in_local_processes_and_no_task_runs(prefect_harness):
    out = mapping_flow(ParallelConfig(workers=2), [1, 2, 3])
    assert [tuple(r)[0] for r in out["results"]] == [1, 4, 9]
    assert os.getpid() not in {tuple(r)[1] for r in out["results"]}
    assert asyncio.run(task_runs_of(out["flow_run_id"])) == []


async def task_runs_of(flow_run_id: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        return await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
