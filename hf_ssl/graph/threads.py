"""Thread counts for the torch and faiss kernels of the graph tools.

Matrix products split over more threads than there are idle CPUs wait at every barrier for the thread that shares
its CPU with another process, so a search of many small blocks can run many times slower than on one thread. The
graph tools therefore run on as many threads as CPUs are free: the CPUs this process may use (its affinity mask,
capped by a cgroup CPU quota), minus the CPU time other processes took on them over a short window (``/proc/stat``;
the 1-minute load average where that is unreadable), and never more than torch's own thread setting
(``torch.set_num_threads``, ``OMP_NUM_THREADS``). An explicit ``n_jobs`` overrides the measurement.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator

import torch

from hf_ssl.utils import import_faiss

__all__ = ["busy_cpus", "compute_threads", "free_cpus", "resolve_n_jobs", "usable_cpus"]

SAMPLE_SECONDS = 0.05
"""Length of the window over which `busy_cpus` measures other processes' CPU time."""


def _cgroup_cpu_limit() -> float | None:
    """CPUs allowed by a cgroup (v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``) CPU quota, None without a quota."""
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="ascii") as handle:
            quota, period = handle.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", encoding="ascii") as handle:
            quota_us = int(handle.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us", encoding="ascii") as handle:
            period_us = int(handle.read())
    except (OSError, ValueError):
        return None
    return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us


def _affinity() -> set[int]:
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup CPU quota (at least 1)."""
    count = len(_affinity())
    limit = _cgroup_cpu_limit()
    if limit is not None:
        count = min(count, math.ceil(limit))
    return max(1, count)


def _cpu_times(cpus: set[int]) -> tuple[int, int] | None:
    """(busy, total) jiffies summed over ``cpus`` from ``/proc/stat``, None where it cannot be read."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            lines = handle.readlines()
    except OSError:
        return None
    busy = total = 0
    for line in lines:
        name, *fields = line.split()
        if not (name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus):
            continue
        # user nice system idle iowait irq softirq steal (guest time is already counted in user)
        values = [int(v) for v in fields[:8]]
        total += sum(values)
        busy += sum(values) - values[3] - values[4]
    return (busy, total) if total else None


def busy_cpus(window: float = SAMPLE_SECONDS) -> float:
    """CPUs' worth of time that other processes (and this one's other threads) are using, from 0 to the number of
    usable CPUs: measured on this process's CPUs over ``window`` seconds while the calling thread sleeps, or the
    1-minute load average where ``/proc/stat`` is unreadable.

    Parameters:
        window (`float`, *optional*, defaults to `0.05`):
            Seconds to measure over.
    """
    cpus = _affinity()
    before = _cpu_times(cpus)
    if before is not None:
        time.sleep(window)
        after = _cpu_times(cpus)
        if after is not None and after[1] > before[1]:
            share = (after[0] - before[0]) / (after[1] - before[1])
            return min(float(usable_cpus()), share * len(cpus))
    try:
        return min(float(usable_cpus()), os.getloadavg()[0])
    except OSError:
        return 0.0


def free_cpus(window: float = SAMPLE_SECONDS) -> int:
    """Usable CPUs minus `busy_cpus`, rounded, at least 1 and at most torch's thread setting.

    Parameters:
        window (`float`, *optional*, defaults to `0.05`):
            Seconds `busy_cpus` measures over.
    """
    free = round(usable_cpus() - busy_cpus(window))
    return max(1, min(free, torch.get_num_threads()))


def resolve_n_jobs(n_jobs: int | None, work: float, small_work: float) -> int:
    """Threads for a computation of size ``work``.

    Parameters:
        n_jobs (`int` or `None`):
            `None`: 1 thread when ``work < small_work``, else `free_cpus`. A positive integer: that many threads.
            A negative one counts back from the usable CPUs as in joblib (-1: all of them, -2: all but one).
        work (`float`):
            Size of the computation, in the unit of ``small_work``.
        small_work (`float`):
            Below this size threads gain less than measuring the load costs.
    """
    if n_jobs is None:
        return 1 if work < small_work else free_cpus()
    if n_jobs > 0:
        return int(n_jobs)
    return max(1, usable_cpus() + 1 + int(n_jobs))


@contextlib.contextmanager
def compute_threads(n: int) -> Iterator[int]:
    """Run torch's and faiss's kernels (and their BLAS) on ``n`` threads inside the block; restore them after.

    Parameters:
        n (`int`):
            Threads (>= 1).
    """
    torch_before = torch.get_num_threads()
    faiss = import_faiss()
    faiss_before = faiss.omp_get_max_threads() if faiss is not None else None
    torch.set_num_threads(n)
    if faiss is not None:
        faiss.omp_set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(torch_before)
        if faiss is not None:
            faiss.omp_set_num_threads(faiss_before)
