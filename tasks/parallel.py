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
from concurrent.futures.process import BrokenProcessPool
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
    """Local worker processes for sharded stages; 0 = as many as the work pays for (at most one per core; one
    = in this process), N = up to N (never more than there are shards)."""
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


# Below this much estimated work per worker (CPU seconds on one core) another worker process costs more than
# it saves: a worker's start (a fork, its first shard loading compiled kernels: up to ~0.8 CPU-s for the
# instance kernels) and the fork server's (~0.5 CPU-s of imports) against half the work on 2 cores. Measured
# on a 2-core machine: the instances stage at 1x the Python docs (~1.5 CPU-s of work) took 2.7 CPU-s and 3.9 s
# on one worker, 5.6 CPU-s and 6.7 s on two (bench/instances_bench.py prints the crossover).
MIN_SECONDS_PER_WORKER = 4.0


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask: a container's or taskset's share, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def workers_for(items: Sequence[Any], cores: int) -> int:
    """How many worker processes pay for these items: one per MIN_SECONDS_PER_WORKER of their work, at most
    one per core and one per item; 1 = in this process.

    An item says its work with an `estimated_seconds` attribute (CPU seconds on one core, from its size);
    items that do not are taken to be worth a worker each (one per core), as cleaning shards are.
    """
    estimates = [getattr(item, "estimated_seconds", None) for item in items]
    if any(estimate is None for estimate in estimates):
        return max(1, min(cores, len(items)))
    return max(1, min(cores, len(items), int(sum(estimates) // MIN_SECONDS_PER_WORKER)))


def local_map(workers: int = 0) -> LocalMap:
    """A map over local worker processes: `workers` of them, or 0 = as many as the work pays for (workers_for)."""
    return LocalMap(workers)


class LocalMap:
    """fn over items on local worker processes, results in item order; one worker's worth runs in this process.

    As a context manager (`with local_map(0) as map_shards:`, as a stage run uses it) the workers started by
    the first map that needs them stay for every later map until the block ends: a stage pays for starting
    its workers once, and a later small map (a validation split) goes to the running workers for nothing.
    Called outside a `with` block, each map starts and stops its own workers.

    The workers' log records come back to this process and are handled here by the logger that made
    them, in the context of the code that called the map: they reach this process's terminal and, inside a
    Prefect task run, that run's logs, as the records of in-process work do.
    """

    def __init__(self, workers: int = 0) -> None:
        self.workers = workers
        self._kept = False  # inside a with block: workers outlive a map
        self._pool: ProcessPoolExecutor | None = None
        self._records: Any = None  # the workers' log record queue
        self._relay: threading.Thread | None = None
        self._caller = contextvars.copy_context()  # where relayed records are handled: the latest map's caller

    def __enter__(self) -> LocalMap:
        self._kept = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._kept = False
        self._stop()

    def __call__(self, fn: Callable[[Any], R], items: Sequence[Any], /) -> list[R]:
        if self._pool is None:
            count = min(self.workers, len(items)) if self.workers else workers_for(items, available_cores())
            if count <= 1:
                return serial_map(fn, items)
            self._start(count, fn.__module__)
        self._caller = contextvars.copy_context()
        try:
            return list(self._pool.map(fn, items))
        except BrokenProcessPool:
            self._stop()  # a worker died (killed, out of memory): the next map starts afresh
            raise
        finally:
            if not self._kept:
                self._stop()
            elif self._pool is not None:
                self._wait_for_records()

    def _start(self, count: int, module: str) -> None:
        context = worker_context(module)
        # A SimpleQueue's put writes to the pipe at once (a Queue's feeder thread may still hold a record when the
        # worker's result arrives), so a map's records are all in the pipe before the map returns.
        self._records = context.SimpleQueue()
        self._relayed = threading.Event()
        self._relay = threading.Thread(target=self._relay_records, name="shard-log-relay", daemon=True)
        self._relay.start()
        level = logging.getLogger("tasks").getEffectiveLevel()
        self._pool = ProcessPoolExecutor(max_workers=count, mp_context=context, initializer=_send_records_to,
                                         initargs=(self._records, level))
        logger.info("started %d worker processes", count)

    def _stop(self) -> None:
        if self._pool is None:
            return
        try:
            self._pool.shutdown(wait=True, cancel_futures=True)
        finally:
            self._pool = None
            self._records.put(_RELAY_DONE)
            self._relay.join()
            self._records.close()

    def _wait_for_records(self) -> None:
        """Return once the relay has handled every record the workers sent before now (they are ahead of this
        marker in the pipe), so none lands in the next map's context."""
        self._relayed.clear()
        self._records.put(_RELAYED_SO_FAR)
        self._relayed.wait()

    def _relay_records(self) -> None:
        """In this process: hand each worker record to its logger, in the context of the latest map's caller."""
        while (record := self._records.get()) != _RELAY_DONE:
            if record == _RELAYED_SO_FAR:
                self._relayed.set()
            else:
                self._caller.run(logging.getLogger(record.name).handle, record)


_RELAYED_SO_FAR, _RELAY_DONE = "relayed so far", "relay done"  # markers in the record pipe (records are LogRecords)


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


def _send_records_to(records: Any, level: int) -> None:
    """In a worker: every log record at `level` or above goes to the parent's record pipe (message formatted)."""
    root = logging.getLogger()
    root.handlers[:] = [_PipeHandler(records)]
    root.setLevel(level)


class _PipeHandler(logging.handlers.QueueHandler):
    """A QueueHandler onto a multiprocessing SimpleQueue (which has put, not put_nowait)."""

    def enqueue(self, record: logging.LogRecord) -> None:
        self.queue.put(record)
