"""Forked pools: the same results as one process, in order or as done, errors raised."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from dhsurvey.parallel import forked_map, in_forked_worker

OFFSET = 1000  # set before the pool: a forked worker sees it without pickling


def _square_plus(x: int) -> tuple[int, int]:
    return x * x + OFFSET, os.getpid()


def test_forked_map_gives_what_one_process_gives() -> None:
    items = list(range(7))
    forked = list(forked_map(_square_plus, items, workers=2))
    assert [i for i, _ in forked] == items
    assert [r[0] for _, r in forked] == [x * x + OFFSET for x in items]
    assert {pid for _, (_, pid) in forked} - {os.getpid()}  # worked elsewhere
    done = dict(forked_map(_square_plus, items, workers=2, as_done=True))
    assert sorted(done) == items and all(done[x][0] == x * x + OFFSET for x in items)
    alone = list(forked_map(_square_plus, items, workers=1))
    assert {pid for _, (_, pid) in alone} == {os.getpid()}


def test_the_largest_pieces_start_first_and_results_keep_their_order(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``size``, pieces are handed to the workers largest first, while results still
    come back in the items' order."""
    import dhsurvey.parallel as parallel

    items = [3, 9, 1, 7]
    submitted: list[int] = []
    real = parallel.ProcessPoolExecutor.submit

    def spy(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        submitted.append(args[0])
        return real(self, fn, *args, **kwargs)

    monkeypatch.setattr(parallel.ProcessPoolExecutor, "submit", spy)
    pooled = list(forked_map(_square_plus, items, workers=2, size=float))
    assert [items[i] for i in submitted] == [9, 7, 3, 1]
    assert [i for i, _ in pooled] == items
    assert [r[0] for _, r in pooled] == [x * x + OFFSET for x in items]


def _nested(x: int) -> list[int]:
    return [pid for _, (_, pid) in forked_map(_square_plus, [x, x + 1], workers=2)]


def test_a_pool_inside_a_piece_runs_in_that_piece() -> None:
    for _, pids in forked_map(_nested, [1, 2], workers=2):
        assert len(set(pids)) == 1


def _fails(x: int) -> int:
    if x == 3:
        raise ValueError("piece 3")
    return x


def test_an_error_in_a_piece_is_raised() -> None:
    with pytest.raises(ValueError, match="piece 3"):
        list(forked_map(_fails, range(5), workers=2))


def test_countries_simulated_at_once_write_the_same_files(tmp_path: Path) -> None:
    from dhsurvey.fieldwork.config import load_countries
    from dhsurvey.fieldwork.run import simulate_to
    from dhsurvey.forms.model import load_form

    instruments = Path(__file__).parents[1] / "instruments"
    models = {m.form_id: m for m in (load_form(p) for p in sorted(instruments.glob("*.xlsx")))}
    configs = load_countries(instruments, list(models.values()), ["KEN", "UGA"])

    def digests(folder: Path) -> dict[str, str]:
        return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(folder.rglob("*")) if p.is_file()}

    for workers in (1, 2):
        simulate_to(tmp_path / str(workers), configs, models, seed=3, households=120,
                    formats=("central", "kobo"), workers=workers)
    assert digests(tmp_path / "1") == digests(tmp_path / "2")
    assert any(name.startswith("UGA/") for name in digests(tmp_path / "2"))


def _inside(_: int) -> bool:
    return in_forked_worker()


def test_a_worker_knows_it_is_one() -> None:
    assert not in_forked_worker()
    assert [inside for _, inside in forked_map(_inside, [1, 2], workers=2)] == [True, True]
    assert [inside for _, inside in forked_map(_inside, [1, 2], workers=1)] == [False, False]
    from dhsurvey.ingest.decrypt import PARALLEL_MIN, WORKERS, workers_for

    threads = dict(forked_map(lambda n: workers_for(n), [PARALLEL_MIN], workers=2))
    assert threads == {PARALLEL_MIN: WORKERS}  # one piece: run here, threads allowed
    threads = dict(forked_map(lambda n: workers_for(n), [PARALLEL_MIN, PARALLEL_MIN + 1],
                              workers=2))
    assert set(threads.values()) == {1}


def _in_daemon(_: int) -> list[int]:
    return [pid for _, (_, pid) in forked_map(_square_plus, [1, 2], workers=2)]


def test_a_daemonic_process_runs_its_pieces_itself() -> None:
    """A Celery or multiprocessing worker is daemonic and may not have children."""
    import multiprocessing as mp

    with mp.get_context("fork").Pool(1) as pool:  # its workers are daemonic
        pids = pool.apply(_in_daemon, (0,))
    assert len(set(pids)) == 1 and os.getpid() not in pids


def test_countries_share_the_cores_when_one_more_would_run_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Three countries on two cores run at once (two rounds would leave one alone on a core
    while the other idles); more run one per core; an asked number stands."""
    from dhsurvey.parallel import workers_for_countries

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert [workers_for_countries(n) for n in (1, 2, 3, 4, 13)] == [1, 2, 3, 2, 2]
    assert workers_for_countries(3, 1) == 1 and workers_for_countries(3, 8) == 3
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert workers_for_countries(3) == 1


def test_work_beside_runs_in_its_own_process_while_this_one_pools() -> None:
    """``beside``: the piece runs forked, its nested pools in turn; the block's own pool
    still spreads over other processes; an error in the piece is raised when its result
    is asked; inside a pool's worker the piece runs in that worker."""
    from dhsurvey.parallel import beside

    with beside(lambda: (os.getpid(), _nested(5))) as result:
        here = {pid for _, (_, pid) in forked_map(_square_plus, range(4), workers=2)}
        (pid, nested) = result()
    assert pid != os.getpid() and set(nested) == {pid}
    assert here and os.getpid() not in here and pid not in here
    with beside(lambda: _fails(3)) as failed, pytest.raises(ValueError, match="piece 3"):
        failed()
    inside = dict(forked_map(_beside_in_a_worker, [0, 1], workers=2))
    assert all(worker == piece for worker, piece in inside.values())


def test_work_beside_can_yield_the_cores_to_the_block() -> None:
    """``nice``: the side process runs at that much higher niceness, so the kernel serves the
    block first; this process's own niceness is untouched. Where it runs in place (inside a
    pool's worker) it is not niced at all: that would slow the worker's own work too."""
    from dhsurvey.parallel import beside

    mine = os.nice(0)
    with beside(lambda: os.nice(0), nice=5) as side:
        assert side() == min(mine + 5, 19)
    assert os.nice(0) == mine
    inside = dict(forked_map(_niced_in_a_worker, [0, 1], workers=2))
    assert set(inside.values()) == {mine}


def _niced_in_a_worker(_: int) -> int:
    from dhsurvey.parallel import beside

    with beside(lambda: os.nice(0), nice=5) as result:
        return result()


def _beside_in_a_worker(_: int) -> tuple[int, int]:
    from dhsurvey.parallel import beside

    with beside(os.getpid) as result:
        return os.getpid(), result()


def _frozen_here(_: int) -> int:
    import gc

    return gc.get_freeze_count()


def test_workers_inherit_the_parents_objects_frozen() -> None:
    """What a worker inherits is kept from its garbage collector (so its collections neither
    walk those objects nor copy their pages); here they are collected again afterwards."""
    import gc

    from dhsurvey.parallel import beside

    assert gc.get_freeze_count() == 0
    assert all(n > 1000 for _, n in forked_map(_frozen_here, [0, 1], workers=2))
    with beside(lambda: _frozen_here(0)) as frozen:
        assert frozen() > 1000
    assert gc.get_freeze_count() == 0
