"""Independent pieces of work spread over the machine's cores in forked processes.

Why forked: the pieces (one country's simulation, one country's run) need the parsed forms,
the country files and often a closure over them. A forked worker inherits all of that from
the parent as it stands, so nothing but an index goes to the worker and only the piece's
result comes back (pickled). Where fork is unavailable, in a daemonic process (a Celery
worker), or for a single piece or a single core, the pieces run one after the other in this
process, with the same results.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from functools import partial
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: The work of the pool being run: inherited by its forked workers, never pickled.
_WORK: tuple[Callable[[Any], Any], list[Any]] | None = None


def workers_for(pieces: int, workers: int | None = None) -> int:
    """How many processes ``pieces`` pieces use: ``workers`` (default one per core), at most
    one per piece."""
    return max(1, min(pieces, workers or os.cpu_count() or 1))


def workers_for_countries(countries: int, workers: int | None = None) -> int:
    """How many countries are simulated or run at once: ``workers`` when asked, else all of
    them when they outnumber the cores by at most one, else one per core.

    A country keeps one core busy from start to end (pools inside it run their pieces in
    turn), and countries are much of a size. Three on two cores one per core take two rounds,
    the second with one country alone and a core idle; side by side the kernel shares the
    two cores among the three and they end together, in about three quarters of the time."""
    if workers:
        return workers_for(countries, workers)
    cores = os.cpu_count() or 1
    return max(1, countries if countries <= cores + 1 else cores)


def proc_bytes(path: str, names: tuple[str, ...]) -> int | None:
    """The sum in bytes of the ``names`` lines (``Name:  123 kB``) of a Linux /proc file such
    as /proc/meminfo, or None where the system does not have it."""
    try:
        with open(path, encoding="ascii") as lines:
            return sum(int(line.split()[1]) * 1024 for line in lines if line.startswith(names))
    except (OSError, ValueError, IndexError):
        return None


def available_memory() -> int:
    """Bytes of memory the system can give new work now without swapping (Linux's
    MemAvailable), or 0 when it does not say: work that may run side by side only when
    memory allows then runs in turn."""
    return proc_bytes("/proc/meminfo", ("MemAvailable:",)) or 0


def can_fork() -> bool:
    """Whether this process may start forked workers: ``fork`` exists here and the process
    is not daemonic (a Celery or multiprocessing worker may not have children)."""
    return "fork" in mp.get_all_start_methods() and not mp.current_process().daemon


def forked_map(fn: Callable[[T], R], items: Iterable[T], *, workers: int | None = None,
               as_done: bool = False, size: Callable[[T], float] | None = None
               ) -> Iterator[tuple[T, R]]:
    """(item, ``fn(item)``) for every item, computed in up to ``workers`` forked processes:
    in the order of ``items``, or as each finishes (``as_done``). An exception in a piece is
    raised here. A pool inside a piece runs its own pieces one after the other.

    ``size``: the pieces' expected cost. The largest start first, so that a large piece
    does not begin last and leave the other cores idle while it runs (three countries on
    two cores: the largest beside the two others in turn)."""
    items = list(items)
    global _WORK
    # One process: one piece or core; a pool already running; no fork; or a daemonic
    # process (a Celery or multiprocessing worker), which may not have children.
    if workers_for(len(items), workers) <= 1 or _WORK is not None or not can_fork():
        for item in items:
            yield item, fn(item)
        return
    _WORK = (fn, items)
    try:
        with ProcessPoolExecutor(workers_for(len(items), workers),
                                 mp_context=mp.get_context("fork")) as pool:
            order = sorted(range(len(items)), key=lambda i: -size(items[i])) if size \
                else range(len(items))
            with _frozen():  # the workers are forked at the first submit
                futures = {pool.submit(_piece, i): i for i in order}
            done = as_completed(futures) if as_done else sorted(futures, key=lambda f: futures[f])
            for future in done:
                yield items[futures[future]], future.result()
    finally:
        _WORK = None


@contextmanager
def beside(fn: Callable[[], R], *, nice: int = 0) -> Iterator[Callable[[], R]]:
    """``fn()`` in a forked process while the block runs here; the function yielded gives its
    result (or raises what it raised), waiting for it if need be.

    For a small piece of work beside a large one: the large one stays in this process, where
    its own pools still spread over every core, and the small one takes its share of them
    (two pieces of one pool would each run their pools' pieces in turn). Inside a pool's
    worker, or where this process may not fork, ``fn`` runs here when its result is asked.

    ``nice``: raised niceness of the forked process, for work nothing in the block waits on.
    The kernel then gives the block's own processes the cores first and the side work what
    they leave idle, so the block ends as soon as it would alone (its pool's last piece
    does not share a core with the side work), and the side work fills the gaps.
    """
    global _WORK
    if _WORK is not None or not can_fork() or (os.cpu_count() or 1) <= 1:
        done: list[R] = []

        def here() -> R:
            if not done:
                done.append(fn())
            return done[0]

        yield here
        return
    pool = ProcessPoolExecutor(1, mp_context=mp.get_context("fork"))
    _WORK = (partial(_niced, fn, nice), [None])
    try:  # the worker is forked within submit, inheriting _WORK: nothing is pickled to it
        with _frozen():
            future = pool.submit(_piece, 0)
    finally:
        _WORK = None
    try:
        yield future.result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _niced(fn: Callable[[], R], nice: int, _: Any) -> R:
    if nice:
        os.nice(nice)
    return fn()


@contextmanager
def _frozen() -> Iterator[None]:
    """The objects alive here kept from the cyclic garbage collector while workers are forked.

    A forked worker inherits them frozen: its collections (each explicit one, and the
    automatic ones of a long piece) walk only what the worker made, and never write to the
    inherited objects' headers, so their pages stay shared with this process instead of
    being copied. Here they are collected again once the workers exist."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


#: Whether this process is a forked worker of a pool (set in the worker only).
_IN_WORKER = False


def in_forked_worker() -> bool:
    """Whether this process is one of a pool's workers: the machine's cores are already
    shared out, so work inside should not spread over them again."""
    return _IN_WORKER


def _piece(index: int) -> Any:
    global _IN_WORKER
    assert _WORK is not None, "set before the workers were forked"
    _IN_WORKER = True
    fn, items = _WORK
    return fn(items[index])
