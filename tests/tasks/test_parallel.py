"""tasks/parallel.py: shard maps return results in item order, wherever the items ran."""

from __future__ import annotations

import contextvars
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from tasks.parallel import MIN_SECONDS_PER_WORKER, ParallelConfig, local_map, serial_map, workers_for

REPO = Path(__file__).resolve().parents[2]


def square_with_pid(item: int) -> tuple[int, int]:
    """A shard worker: module-level so it pickles; reports the process it ran in."""
    return item * item, os.getpid()


def square_and_log(item: int) -> int:
    logging.getLogger("tasks.test_shard").info("shard %d done in pid %d", item, os.getpid())
    return item * item


def heavy_modules_and_cpu(item: int) -> tuple[list[str], float]:
    """A shard worker reporting the heavy libraries loaded in its process and the CPU seconds it has used."""
    loaded = sorted({name.split(".")[0] for name in sys.modules} & {"torch", "transformers", "prefect", "mlflow"})
    return loaded, time.process_time()


RUN_ID: contextvars.ContextVar[str] = contextvars.ContextVar("run_id", default="none")


class ContextRecorder(logging.Handler):
    """Keeps each record's message with the context variable seen where it was handled (as Prefect's handler reads
    its run context)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((record.getMessage(), RUN_ID.get()))


def test_serial_map_runs_in_this_process_in_order():
    assert serial_map(square_with_pid, [3, 1, 2]) == [(9, os.getpid()), (1, os.getpid()), (4, os.getpid())]


def test_local_map_runs_items_in_other_processes_and_keeps_item_order():
    items = list(range(12, 0, -1))
    results = local_map(2)(square_with_pid, items)
    assert [square for square, _ in results] == [i * i for i in items]
    pids = {pid for _, pid in results}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2


def test_local_map_relays_worker_records_to_their_logger_in_the_callers_context():
    recorder = ContextRecorder()
    logger, project = logging.getLogger("tasks.test_shard"), logging.getLogger("tasks")
    logger.addHandler(recorder)
    project.setLevel(logging.INFO)  # workers send what the parent's tasks logger lets through
    token = RUN_ID.set("the caller's run")
    try:
        assert local_map(2)(square_and_log, [1, 2, 3]) == [1, 4, 9]
    finally:
        RUN_ID.reset(token)
        logger.removeHandler(recorder)
        project.setLevel(logging.NOTSET)
    assert sorted(message.split(" in pid ")[0] for message, _ in recorder.seen) == [f"shard {i} done" for i in (1, 2, 3)]
    assert {int(message.split(" in pid ")[1]) for message, _ in recorder.seen} - {os.getpid()}  # from the workers
    assert {run for _, run in recorder.seen} == {"the caller's run"}


def test_local_map_with_one_worker_or_one_item_stays_in_process():
    assert local_map(1)(square_with_pid, [2, 3]) == [(4, os.getpid()), (9, os.getpid())]
    assert local_map(4)(square_with_pid, [5]) == [(25, os.getpid())]


@pytest.mark.parametrize("address", ["local", "tcp://127.0.0.1:8786", "127.0.0.1:8786", "tls://[::1]:8786", None])
def test_dask_address_accepts_local_and_scheduler_addresses(address):
    assert ParallelConfig(dask_address=address).dask_address == address


@pytest.mark.parametrize("address", ["lcoal", "http://127.0.0.1:8786", "tcp://two words:1", ""])
def test_dask_address_refuses_anything_else_naming_what_is_valid(address):
    with pytest.raises(ValidationError) as err:
        ParallelConfig(dask_address=address)
    message = str(err.value)
    assert "dask_address" in message and repr(address) in message and "'local'" in message


def test_local_workers_start_light_without_torch_or_orchestration():
    """Workers come from a fork server that imported the shard function's module once: none imports torch,
    transformers, Prefect or MLflow, and none pays for imports again before its shard (CPU seconds at its first
    item). In a fresh interpreter, as a command runs it: a process's fork server keeps what its first map loaded."""
    script = ("import json\n"
              "from tasks.parallel import local_map\n"
              "from tests.tasks.test_parallel import heavy_modules_and_cpu\n"
              "print(json.dumps(local_map(2)(heavy_modules_and_cpu, [0, 1, 2, 3])))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout.splitlines()[-1])
    assert [loaded for loaded, _ in results] == [[]] * 4
    assert max(cpu for _, cpu in results) < 1.0


class Shard:
    """An item that says how much work it is (CPU seconds on one core), as stage shard specs do."""

    def __init__(self, number: int, estimated_seconds: float) -> None:
        self.number, self.estimated_seconds = number, estimated_seconds


def pid_of(item: Shard) -> tuple[int, int]:
    return item.number, os.getpid()


def test_workers_for_pays_one_worker_per_minimum_of_work_up_to_cores_and_items():
    small = [Shard(i, 0.1) for i in range(8)]
    assert workers_for(small, cores=4) == 1  # less work than a worker costs: in this process
    assert workers_for([Shard(i, MIN_SECONDS_PER_WORKER) for i in range(8)], cores=4) == 4
    assert workers_for([Shard(i, MIN_SECONDS_PER_WORKER) for i in range(8)], cores=2) == 2
    assert workers_for([Shard(0, 100.0)], cores=4) == 1  # one shard: one worker
    assert workers_for([Shard(0, MIN_SECONDS_PER_WORKER), Shard(1, MIN_SECONDS_PER_WORKER)], cores=8) == 2
    assert workers_for([Shard(0, 2.5 * MIN_SECONDS_PER_WORKER), Shard(1, 0.0), Shard(2, 0.0)], cores=8) == 2
    assert workers_for([1, 2, 3], cores=2) == 2  # sizes unknown: one per core


def test_local_map_by_default_keeps_small_work_in_this_process():
    assert local_map(0)(pid_of, [Shard(i, 0.01) for i in range(6)]) == [(i, os.getpid()) for i in range(6)]


def test_kept_local_map_starts_its_workers_once_and_sends_later_maps_to_them():
    """Inside a with block the workers of the first map serve the next ones, a one-item map included."""
    with local_map(2) as map_shards:
        first = map_shards(square_with_pid, list(range(8)))
        second = map_shards(square_with_pid, [5])
        third = map_shards(square_with_pid, list(range(8)))
    workers = {pid for _, pid in first}
    assert os.getpid() not in workers
    assert {pid for _, pid in second + third} <= workers
    assert [square for square, _ in third] == [i * i for i in range(8)]
    assert local_map(2)(square_with_pid, [5]) == [(25, os.getpid())]  # not kept: one item stays here


def test_kept_local_map_relays_each_maps_records_in_that_maps_context():
    recorder = ContextRecorder()
    logger, project = logging.getLogger("tasks.test_shard"), logging.getLogger("tasks")
    logger.addHandler(recorder)
    project.setLevel(logging.INFO)
    try:
        with local_map(2) as map_shards:
            for run in ("first run", "second run"):
                token = RUN_ID.set(run)
                try:
                    assert map_shards(square_and_log, [1, 2, 3, 4]) == [1, 4, 9, 16]
                finally:
                    RUN_ID.reset(token)
    finally:
        logger.removeHandler(recorder)
        project.setLevel(logging.NOTSET)
    runs = [run for _, run in recorder.seen]
    assert runs == ["first run"] * 4 + ["second run"] * 4  # every record handled before its map returned
