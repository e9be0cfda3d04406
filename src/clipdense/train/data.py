"""From a stream of decoded ``Sample``s to resumable, reproducible batches.

Random augmentation draws from a generator seeded by (seed, global sample index), never from the
global RNG: a resumed run, a run with other worker counts, and an uninterrupted run all see the
same crops for the same sample. The global index is ``position * world_size + rank``, which is the
sample's index in the un-sharded stream when readers shard as ``order[rank::world_size]`` (ours do),
so a 2-rank run augments each sample exactly as a 1-rank run does.
"""
from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence, runtime_checkable

import torch
from ..data.sample import Sample
from ..errors import DataError
from ..objectives.base import SampleTransform, stack_collate

Batch = dict[str, torch.Tensor]
Collate = Callable[[Sequence[dict[str, torch.Tensor]]], Batch]


@runtime_checkable
class ResumableSource(Protocol):
    """A sample iterable that can report and restore where it is (the data readers implement this)."""

    def __iter__(self) -> Iterator[Sample]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def sample_seed(seed: int, index: int) -> int:
    """A well-mixed 63-bit seed for one sample (splitmix64 of the run seed and the global index)."""
    z = (seed * 0x9E3779B97F4A7C15 + index * 0x94D049BB133111EB + 0x2545F4914F6CDD1D) % 2**64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % 2**64
    return (z ^ (z >> 31)) % 2**63


class BatchStream:
    """Infinite iterator of collated batches, with a position that survives a restart.

    Args:
        source: decoded Samples for this rank; infinite (epochs) or finite.
        transform: the objective's per-sample transform ``(sample, generator) -> dict``.
        batch_size: samples per batch on this rank.
        seed, rank, world_size: give every sample's augmentation seed (see module docstring).
        collate: turns a list of sample dicts into a batch (default: stack).
        augment_threads: transform a batch's samples on this many threads (0: in the calling thread).
            PIL and torch release the GIL in their kernels, and every sample has its own generator,
            so the result does not depend on the thread count.
    """

    def __init__(self, source: Iterable[Sample], transform: SampleTransform, batch_size: int,
                 seed: int = 0, rank: int = 0, world_size: int = 1, collate: Collate | None = None,
                 augment_threads: int = 0) -> None:
        self.source, self.transform, self.batch_size = source, transform, batch_size
        self.seed, self.rank, self.world_size, self.collate = seed, rank, world_size, collate or stack_collate
        self._pool = ThreadPoolExecutor(augment_threads) if augment_threads > 0 else None
        self.position = 0          # samples consumed on this rank
        self._skip = 0             # samples to drop on the next iteration (resume without source state)
        self._iterator: Iterator[Sample] | None = None

    def _next_sample(self) -> Sample:
        if self._iterator is None:
            self._iterator = iter(self.source)
            for _ in range(self._skip):
                next(self._iterator)
            self._skip = 0
        try:
            return next(self._iterator)
        except StopIteration:
            self._iterator = iter(self.source)   # a finite source starts a new epoch
            try:
                return next(self._iterator)
            except StopIteration:
                raise DataError("the training data yielded no samples") from None

    def next_batch(self) -> Batch:
        """Read, augment and collate ``batch_size`` samples."""
        jobs = []
        for _ in range(self.batch_size):
            sample = self._next_sample()
            index = self.position * self.world_size + self.rank
            jobs.append((sample, torch.Generator().manual_seed(sample_seed(self.seed, index))))
            self.position += 1
        if self._pool is None:
            return self.collate([self.transform(*job) for job in jobs])
        return self.collate(list(self._pool.map(lambda job: self.transform(*job), jobs)))

    def __iter__(self) -> Iterator[Batch]:
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"position": self.position}
        if isinstance(self.source, ResumableSource):
            state["source"] = self.source.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue after ``state['position']`` samples: via the source's own state, else by skipping."""
        self.position = int(state["position"])
        self._iterator = None
        if "source" in state and isinstance(self.source, ResumableSource):
            self.source.load_state_dict(state["source"])
            self._skip = 0
        else:
            self._skip = self.position


def _pinned(batch: Any) -> Any:
    """``batch`` with every tensor in page-locked memory (dicts, lists and tuples walked)."""
    if isinstance(batch, torch.Tensor):
        return batch.pin_memory()
    if isinstance(batch, dict):
        return {k: _pinned(v) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_pinned(v) for v in batch)
    return batch


def _offer(out: queue.Queue, stop: threading.Event, item: Any) -> None:
    """Put ``item`` on ``out`` unless asked to stop first (never blocks a closing producer forever)."""
    while not stop.is_set():
        try:
            out.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


class PrefetchedBatches:
    """Builds the next ``depth`` batches of a BatchStream on a background thread while the device computes.

    Batches are pinned when ``pin_memory`` (so the engine's ``non_blocking`` copy overlaps the step).
    ``state_dict`` is the stream's state after the last batch *handed out*, not the last one built,
    so a checkpoint resumes exactly where training stopped.
    """

    def __init__(self, stream: BatchStream, depth: int = 2, pin_memory: bool = False) -> None:
        self.stream, self.depth, self.pin_memory = stream, max(1, depth), pin_memory
        self._state = stream.state_dict()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def source(self) -> Iterable[Sample]:
        return self.stream.source

    def _produce(self, out: queue.Queue, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                batch = self.stream.next_batch()
                if self.pin_memory:
                    batch = _pinned(batch)
                _offer(out, stop, (batch, self.stream.state_dict(), None))
        except BaseException as error:   # re-raised in the training thread, with its traceback
            _offer(out, stop, (None, None, error))

    def __iter__(self) -> Iterator[Batch]:
        if self._thread is not None:      # a new pass continues after the last batch handed out
            self.load_state_dict(self._state)
        self._stop, ready = threading.Event(), queue.Queue(maxsize=self.depth)
        self._thread = threading.Thread(target=self._produce, args=(ready, self._stop), daemon=True,
                                        name="clipdense-prefetch")
        self._thread.start()
        while True:
            batch, state, error = ready.get()
            if error is not None:
                raise error
            self._state = state
            yield batch

    def close(self) -> None:
        """Stop the producer thread (batches it built but nobody took are dropped; state is unaffected)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def state_dict(self) -> dict[str, Any]:
        return self._state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.close()
        self.stream.load_state_dict(state)
        self._state = state
