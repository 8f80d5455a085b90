"""Lanes: one model's jobs in order on one thread, the lanes side by side, torch's threads shared."""

import threading
import time

import pytest
import torch

from ddpm_lens.util.cpu_threads import lanes


def test_a_lane_runs_its_jobs_in_order_one_at_a_time_and_lanes_run_side_by_side(two_threads):
    log = []  # (lane, job, start, end, thread)

    def job(lane, i):
        start = time.perf_counter()
        time.sleep(0.05)  # releases the GIL, as torch's kernels do
        log.append((lane, i, start, time.perf_counter(), threading.get_ident()))

    with lanes(2) as pools:
        futures = [pools[lane].submit(job, lane, i) for i in range(4) for lane in (0, 1)]
        for f in futures:
            f.result()
    for lane in (0, 1):
        mine = [entry for entry in log if entry[0] == lane]
        assert [e[1] for e in mine] == [0, 1, 2, 3]  # in the order submitted
        assert all(a[3] <= b[2] for a, b in zip(mine, mine[1:]))  # never two at once
        assert len({e[4] for e in mine}) == 1  # one thread per lane
    threads = {e[4] for e in log}
    assert len(threads) == 2 and threading.get_ident() not in threads
    a, b = ([e for e in log if e[0] == lane] for lane in (0, 1))
    overlap = sum(max(0.0, min(x[3], y[3]) - max(x[2], y[2])) for x in a for y in b)
    assert overlap > 0.1  # the two lanes ran at the same time for most of their 0.2 s


def test_lanes_share_the_cores_and_the_caller_gets_its_threads_back(two_threads):
    with lanes(2) as pools:
        inside = [p.submit(torch.get_num_threads).result() for p in pools]
    assert inside == [1, 1]
    assert torch.get_num_threads() == 2


def test_one_lane_disabled_or_one_core_runs_in_the_caller(two_threads):
    main = threading.get_ident()
    for count, enabled in ((1, True), (2, False)):
        with lanes(count, enabled=enabled) as pools:
            assert [p.submit(threading.get_ident).result() for p in pools] == [main] * count
            assert pools[0].submit(torch.get_num_threads).result() == 2  # threads as they are
    torch.set_num_threads(1)
    with lanes(2) as pools:
        assert pools[1].submit(threading.get_ident).result() == main


@pytest.mark.parametrize("enabled", [True, False])
def test_an_error_in_a_job_is_raised_by_its_result(two_threads, enabled):
    def fail():
        raise ValueError("bad weights")

    with lanes(2, enabled=enabled) as pools:
        future = pools[1].submit(fail)
        with pytest.raises(ValueError, match="bad weights"):
            future.result()
