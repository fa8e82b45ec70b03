"""Server-side batching: concurrent requests merged along dimension 0, run once, split back.

Follows TensorFlow Serving's BatchingSession over a shared batch scheduler: one queue per
(servable, signature, inputs, outputs, row shapes); a batch closes when it reaches
`max_batch_size` or when `batch_timeout_micros` has passed since its first task; at most
`max_enqueued_batches` wait per queue; `num_batch_threads` batches run at once across all
queues. Merging and splitting copy rows only, so results equal unbatched calls row for row
wherever a signature's rows do not depend on each other (a signature that draws noise for the
whole batch from one seed, as the VAE's `elbo` and `log_prob` do, gives a row other draws in a
merged batch).
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import os
import time

import grpc
import numpy as np

from serving.errors import ServingError, invalid
from serving.metrics import Metrics
from serving.protos import BatchingParameters
from serving.servable import Servable


@dataclasses.dataclass(frozen=True)
class BatchOptions:
    """BatchingParameters with the real server's defaults filled in."""
    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = os.cpu_count() or 1
    thread_pool_name: str = "model_server_batch_threads"
    allowed_batch_sizes: tuple[int, ...] = ()
    enable_large_batch_splitting: bool = False

    @classmethod
    def from_proto(cls, params: BatchingParameters | None) -> "BatchOptions":
        if params is None:
            return cls()
        defaults = cls()
        pick = lambda field, default: getattr(params, field).value if params.HasField(field) else default  # noqa: E731
        options = cls(
            max_batch_size=pick("max_batch_size", defaults.max_batch_size),
            batch_timeout_micros=pick("batch_timeout_micros", defaults.batch_timeout_micros),
            max_enqueued_batches=pick("max_enqueued_batches", defaults.max_enqueued_batches),
            num_batch_threads=pick("num_batch_threads", defaults.num_batch_threads),
            thread_pool_name=pick("thread_pool_name", "batch_threads"),
            allowed_batch_sizes=tuple(params.allowed_batch_sizes),
            enable_large_batch_splitting=pick("enable_large_batch_splitting", False))
        options.check()
        return options

    def check(self) -> None:
        if self.max_batch_size < 1 or self.num_batch_threads < 1 or self.max_enqueued_batches < 1:
            raise ValueError("batching parameters max_batch_size, num_batch_threads and max_enqueued_batches "
                             "must be positive")
        sizes = self.allowed_batch_sizes
        if sizes and (list(sizes) != sorted(set(sizes)) or sizes[-1] != self.max_batch_size):
            raise ValueError(f"allowed_batch_sizes {list(sizes)} must increase and end at max_batch_size "
                             f"{self.max_batch_size}")


@dataclasses.dataclass
class _Task:
    inputs: dict[str, np.ndarray]
    size: int
    enqueued: float
    deadline: float | None
    future: asyncio.Future


class _Queue:
    def __init__(self):
        self.batches: collections.deque[list[_Task]] = collections.deque()
        self.sizes: collections.deque[int] = collections.deque()
        self.wake = asyncio.Event()


class Batcher:
    """Merges tasks per queue; `run` is awaited by each request and returns its own rows."""

    def __init__(self, options: BatchOptions, run, metrics: Metrics):
        """`run(servable, signature, inputs, aliases, deadline)` is awaited to run one merged batch."""
        self.options = options
        self.run_batch = run
        self.metrics = metrics
        self.queues: dict[tuple, _Queue] = {}
        self.threads = asyncio.Semaphore(options.num_batch_threads)

    @staticmethod
    def task_size(inputs: dict[str, np.ndarray]) -> int:
        sizes = set()
        for value in inputs.values():
            if value.ndim == 0:
                raise invalid("Batching session Run() requires all input tensors to have at least one dimension")
            sizes.add(value.shape[0])
        if len(sizes) != 1:
            raise invalid("Batching session Run() input tensors must have equal 0th-dimension size")
        return sizes.pop()

    async def run(self, servable: Servable, signature_name: str, signature, inputs: dict[str, np.ndarray],
                  aliases: list[str], deadline: float | None) -> dict[str, np.ndarray]:
        size = self.task_size(inputs)
        limit = self.options.max_batch_size
        if size > limit:
            raise invalid(f"Task size {size} is larger than maximum input batch size {limit}")
        key = (id(servable), signature_name, tuple(aliases),
               tuple((a, v.dtype.str, v.shape[1:]) for a, v in sorted(inputs.items())))
        queue = self.queues.get(key)
        if queue is None:
            queue = self.queues[key] = _Queue()
            asyncio.get_running_loop().create_task(self._schedule(key, queue, servable, signature, aliases))
        if not queue.batches or queue.sizes[-1] + size > limit:
            if len(queue.batches) >= self.options.max_enqueued_batches:
                raise ServingError(grpc.StatusCode.UNAVAILABLE,
                                   "The batch scheduling queue to which this task was submitted is full")
            queue.batches.append([])
            queue.sizes.append(0)
        task = _Task(inputs, size, time.perf_counter(), deadline, asyncio.get_running_loop().create_future())
        queue.batches[-1].append(task)
        queue.sizes[-1] += size
        self.metrics.input_batch_size.observe(size)
        queue.wake.set()
        return await task.future

    async def _schedule(self, key, queue: _Queue, servable: Servable, signature, aliases: list[str]) -> None:
        timeout = self.options.batch_timeout_micros / 1e6
        idle_since = time.perf_counter()
        while True:
            if not queue.batches:
                queue.wake.clear()
                try:
                    await asyncio.wait_for(queue.wake.wait(), timeout=30)
                except asyncio.TimeoutError:
                    if not queue.batches and time.perf_counter() - idle_since > 30:
                        del self.queues[key]  # the servable may be gone; a new request makes a new queue
                        return
                continue
            first = queue.batches[0][0].enqueued
            while (len(queue.batches) == 1 and queue.sizes[0] < self.options.max_batch_size
                   and time.perf_counter() - first < timeout):
                queue.wake.clear()
                try:
                    await asyncio.wait_for(queue.wake.wait(), timeout - (time.perf_counter() - first))
                except asyncio.TimeoutError:
                    break
            await self.threads.acquire()
            tasks = queue.batches.popleft()
            queue.sizes.popleft()
            idle_since = time.perf_counter()
            asyncio.get_running_loop().create_task(self._process(servable, signature, aliases, tasks))

    async def _process(self, servable: Servable, signature, aliases: list[str], tasks: list[_Task]) -> None:
        try:
            now = time.perf_counter()
            live = []
            for task in tasks:
                self.metrics.queuing_latency.observe((now - task.enqueued) * 1e6, self.options.thread_pool_name)
                if task.deadline is not None and task.deadline <= now:
                    task.future.set_exception(ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))
                elif not task.future.done():
                    live.append(task)
            if not live:
                return
            total = sum(t.size for t in live)
            padded = next((s for s in self.options.allowed_batch_sizes if s >= total), total)
            merged = {}
            for alias in live[0].inputs:
                parts = [t.inputs[alias] for t in live]
                if padded > total:  # pad with copies of the first row, as BatchingSession does
                    parts.append(np.repeat(parts[0][:1], padded - total, axis=0))
                merged[alias] = np.concatenate(parts) if len(parts) > 1 else parts[0]
            self.metrics.processed_batch_size.observe(padded)
            self.metrics.wrapped_run_count.inc()
            deadlines = [t.deadline for t in live]
            outputs = await self.run_batch(servable, signature, merged, aliases,
                                           None if None in deadlines else max(deadlines))
            for alias, value in outputs.items():
                if value.ndim == 0 or value.shape[0] != padded:
                    raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                                       "Batched output tensor's 0th dimension does not equal the sum of the 0th "
                                       "dimension sizes of the input tensors")
            start = 0
            for task in live:
                if not task.future.done():
                    task.future.set_result({a: v[start:start + task.size] for a, v in outputs.items()})
                start += task.size
        except Exception as error:  # one failed run fails every task in it
            for task in tasks:
                if not task.future.done():
                    task.future.set_exception(error)
        finally:
            self.threads.release()
