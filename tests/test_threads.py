"""The study's CPU threads: one per core that other processes leave free, at least one; OMP_NUM_THREADS decides
when it is set.

    python -m pytest tests/test_threads.py -q
"""
import os
from pathlib import Path

import pytest
import torch

import bookkeeping


@pytest.fixture(autouse=True)
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("busy, expected", [(0.0, 2), (0.4, 2), (0.6, 1), (1.0, 1), (2.0, 1), (3.5, 1)])
def test_one_thread_per_free_core(monkeypatch, busy, expected):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(bookkeeping, "TORCH_THREADS", 2)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(bookkeeping, "busy_cores", lambda: busy)
    assert bookkeeping.use_free_cores() == expected == torch.get_num_threads()


def test_never_more_than_torch_would_use(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(bookkeeping, "TORCH_THREADS", 1)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(bookkeeping, "busy_cores", lambda: 0.0)
    assert bookkeeping.use_free_cores() == 1


def test_omp_num_threads_decides(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    monkeypatch.setattr(bookkeeping, "busy_cores", lambda: pytest.fail("the load was measured"))
    assert bookkeeping.use_free_cores() == 1


def test_busy_cores_is_a_share_of_the_machine():
    busy = bookkeeping.busy_cores(0.05)
    assert 0.0 <= busy <= os.cpu_count() + 0.5


def test_the_benchmarks_busy_processes_run_while_held_and_stop_after(monkeypatch):
    """benchmarks/busy.py, the load beside which --busy K times: K live processes inside the block, none after."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from busy import busy
    with busy(2) as procs:
        assert len(procs) == 2 and all(p.poll() is None for p in procs)
    assert all(p.poll() is not None for p in procs)
