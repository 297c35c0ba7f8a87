"""How a stage's work runs: its main steps one after another, and one function over shards.

A stage names its main steps (read sources, clean shards, deduplicate, ...) with `run_step(name, fn)`:
`fn` takes no arguments (a closure over what it needs) and its result comes back. Plainly (`run_inline`)
a step is a call with its duration logged; flows pass a runner that makes each step a Prefect task run,
so the run graph shows the steps and their durations. `retries` is for steps that read over a network.

Sharded stages express their parallel work as `map_shards(fn, items)`: `fn` is a module-level function
(so it pickles) taking one small picklable item (a shard spec) and returning its result; results come
back in item order, so what a stage writes never depends on which worker finished first. The stage
code does not know where it runs: the CLI passes `local_map`, flows can pass a map that submits the
shards through Prefect's task runner (a Dask cluster). A step that maps shards says so (`sharded=True`):
on Dask its shards are the task runs.
"""

from __future__ import annotations

import contextvars
import logging
import logging.handlers
import multiprocessing
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

T = TypeVar("T")
R = TypeVar("R")
logger = logging.getLogger(__name__)


class StepRunner(Protocol):
    """Runs one named step of a stage and returns its result."""

    def __call__(self, name: str, fn: Callable[[], R], /, *, retries: int = 0, sharded: bool = False) -> R: ...


def run_inline(name: str, fn: Callable[[], R], /, *, retries: int = 0, sharded: bool = False) -> R:
    """A step in this thread, once (retries are for runners that can wait and try again); its duration logged."""
    started = time.monotonic()
    result = fn()
    logger.info("step %s: %.1f s", name, time.monotonic() - started)
    return result


class ShardMap(Protocol):
    """fn applied to every item, results in item order."""

    def __call__(self, fn: Callable[[Any], R], items: Sequence[Any], /) -> list[R]: ...


class ParallelConfig(BaseModel):
    """Where sharded stage work runs; it never changes what a stage writes, so it is not part of any artifact id."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    workers: int = Field(default=0, ge=0)
    """Local worker processes for sharded stages; 0 = one per CPU core, 1 = in this process."""
    nproc_per_node: int = Field(default=1, ge=1)
    """Training processes on this node: above 1 the pretrain stage runs under torchrun (DDP, one per GPU)."""
    dask_address: str | None = None
    """Dask scheduler address ('tcp://host:8786') or 'local' for a LocalCluster of `workers`; unset = local processes."""

    @field_validator("dask_address")
    @classmethod
    def _scheduler_address(cls, address: str | None) -> str | None:
        if address is None or address == "local" or _SCHEDULER_ADDRESS.fullmatch(address):
            return address
        raise ValueError(
            f"{address!r} is not a Dask scheduler address; use 'local' (a LocalCluster on this machine) "
            "or SCHEME://HOST:PORT such as 'tcp://10.0.0.5:8786' (schemes: tcp, tls, ucx, inproc)"
        )


_HOST = r"(\[[0-9a-fA-F:]+\]|[^\s/:\[\]]+)"  # a name, IPv4, or [IPv6]
_SCHEDULER_ADDRESS = re.compile(rf"(tcp|tls|ucx|inproc)://{_HOST}(:\d+)?/?|{_HOST}:\d+")


def serial_map(fn: Callable[[Any], R], items: Sequence[Any], /) -> list[R]:
    """Every item in this process, in order."""
    return [fn(item) for item in items]


def local_map(workers: int = 0) -> ShardMap:
    """A map over `workers` spawned processes (0 = one per core); one worker or one item runs in-process.

    The workers' log records come back to this process and are handled here by the logger that made
    them, in the caller's context: they reach this process's terminal and, inside a Prefect task run,
    that run's logs, as the records of in-process work do.
    """
    workers = workers or os.cpu_count() or 1

    def run(fn: Callable[[Any], R], items: Sequence[Any], /) -> list[R]:
        if workers <= 1 or len(items) <= 1:
            return serial_map(fn, items)
        context = worker_context(fn.__module__)
        records = context.Queue()
        relay = threading.Thread(target=_relay_records, args=(records, contextvars.copy_context()),
                                 name="shard-log-relay", daemon=True)
        relay.start()
        level = logging.getLogger("tasks").getEffectiveLevel()
        try:
            with ProcessPoolExecutor(max_workers=min(workers, len(items)), mp_context=context,
                                     initializer=_send_records_to, initargs=(records, level)) as pool:
                return list(pool.map(fn, items))
        finally:
            records.put(None)
            relay.join()

    return run


def worker_context(module: str) -> multiprocessing.context.BaseContext:
    """Where local workers come from: a fork server that has imported `module` (the shard function's).

    Not fork: the parent may hold threads (Prefect's API server, torch pools) whose locks a forked child
    would inherit held. Not spawn: every spawned worker re-imports the command's entry point and the
    modules its shard needs, ~1-5 CPU-s and a few hundred MB each before any work. The fork server is
    started once per process, single-threaded; it imports the module of the first map's function (later
    maps' workers import theirs), not the entry point, and forks each worker from itself in milliseconds,
    sharing those pages copy-on-write. Spawn where there is no fork server (Windows).
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([module])  # read when the server starts, at the first map of this process
    return context


def _send_records_to(records: multiprocessing.Queue, level: int) -> None:
    """In a worker: every log record at `level` or above goes to the parent's queue (message formatted)."""
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(records)]
    root.setLevel(level)


def _relay_records(records: multiprocessing.Queue, caller: contextvars.Context) -> None:
    """In the parent: hand each worker record to its logger, in the context of the code that started the map."""
    while (record := records.get()) is not None:
        caller.run(logging.getLogger(record.name).handle, record)
