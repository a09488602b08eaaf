"""The worker's inbox: bounded, fair to the camera, every request answered once."""
import threading

import pytest

from sam2_ros.core.work_queue import Job, Refused, WorkQueue


def drain(queue: WorkQueue, count: int) -> list:
    """Take `count` items as the worker would, running jobs; return what was taken, in order."""
    taken = []
    for _ in range(count):
        item = queue.take()
        if isinstance(item, Job):
            item.execute(lambda error: None)
            taken.append("cancelled" if item.future.cancelled() else item.future.result())
        else:
            taken.append(item)
    return taken


def test_a_full_queue_refuses_at_once_and_keeps_what_it_accepted():
    queue = WorkQueue(max_jobs=2, jobs_per_frame=5)
    queue.open()
    accepted = [queue.submit(lambda n=n: f"job {n}") for n in range(2)]
    with pytest.raises(Refused, match=r"request queue full \(2 waiting, max_queued_requests 2\)"):
        queue.submit(lambda: "job 2")
    assert drain(queue, 2) == ["job 0", "job 1"] and all(f.done() for f in accepted)


def test_a_waiting_frame_gets_its_turn_after_at_most_jobs_per_frame_jobs():
    queue = WorkQueue(max_jobs=10, jobs_per_frame=2)
    queue.open()
    for n in range(5):
        queue.submit(lambda n=n: f"job {n}")
    queue.put_frame("frame A")
    assert drain(queue, 3) == ["job 0", "job 1", "frame A"]
    assert queue.put_frame("frame B") is False
    assert queue.put_frame("frame C") is True  # B was never taken: skipped
    assert drain(queue, 4) == ["job 2", "job 3", "frame C", "job 4"]


def test_a_cancelled_request_is_never_run():
    queue = WorkQueue(max_jobs=4, jobs_per_frame=1)
    queue.open()
    ran = []
    future = queue.submit(lambda: ran.append("applied"))
    assert future.cancel()  # the caller gave up before the worker took it
    queue.submit(lambda: "next")
    assert drain(queue, 1) == ["next"] and ran == [] and queue.pending() == 0


def test_closing_answers_every_queued_request_and_wakes_the_worker():
    queue = WorkQueue(max_jobs=4, jobs_per_frame=1)
    queue.open()
    futures = [queue.submit(lambda: "never") for _ in range(3)]
    assert queue.close("node deactivated") == 3
    for future in futures:
        with pytest.raises(Refused, match="node deactivated"):
            future.result(timeout=1)
    assert queue.take() is None
    with pytest.raises(Refused, match="node is not active"):
        queue.submit(lambda: "late")


def test_a_blocked_worker_is_released_by_close():
    queue = WorkQueue(max_jobs=1, jobs_per_frame=1)
    queue.open()
    taken = []
    worker = threading.Thread(target=lambda: taken.append(queue.take()))
    worker.start()
    queue.close("node shutting down")
    worker.join(timeout=5)
    assert not worker.is_alive() and taken == [None]


def test_a_cancelled_request_gives_its_place_in_the_queue_back_at_once():
    """Four callers time out and cancel: a fifth request is taken, and only it is waiting."""
    queue = WorkQueue(max_jobs=4, jobs_per_frame=1)
    queue.open()
    gave_up = [queue.submit(lambda: "never") for _ in range(4)]
    assert all(future.cancel() for future in gave_up)
    fifth = queue.submit(lambda: "fifth")
    assert queue.pending() == 1
    assert drain(queue, 1) == ["fifth"] and fifth.result() == "fifth"


def test_a_long_request_runs_a_slice_per_turn_and_the_waiting_frame_goes_between_its_slices():
    queue = WorkQueue(max_jobs=4, jobs_per_frame=1)
    queue.open()

    def long_pass():
        for part in range(3):
            yield part
        return "whole pass"
    job = queue.submit_job(long_pass)
    order = []
    for frame in ("frame 1", "frame 2", "frame 3"):
        queue.put_frame(frame)
        item = queue.take()
        if isinstance(item, Job):
            order.append("slice")
            if item.execute(lambda error: None):
                queue.resume(item)
            item = queue.take()
        order.append(item)
    while (item := queue.take()) is job and job.execute(lambda error: None):
        queue.resume(job)
    assert order == ["slice", "frame 1", "slice", "frame 2", "slice", "frame 3"] and job.future.result() == "whole pass"


def test_an_abandoned_long_request_stops_at_its_next_slice_and_says_why():
    queue = WorkQueue(max_jobs=4, jobs_per_frame=1)
    queue.open()
    slices = []

    def long_pass():
        while True:
            slices.append(1)
            yield
    job = queue.submit_job(long_pass)
    assert queue.take().execute(lambda error: None)
    job.abandoned.set()
    assert not job.execute(lambda error: None)
    with pytest.raises(Refused, match="abandoned: the caller stopped waiting"):
        job.future.result()
    assert len(slices) == 1


def test_close_answers_a_long_request_waiting_for_its_next_slice():
    queue = WorkQueue(max_jobs=4, jobs_per_frame=1)
    queue.open()
    job = queue.submit_job(lambda: (yield))
    assert queue.take().execute(lambda error: None)
    queue.resume(job)
    assert queue.close("node deactivated") == 1
    with pytest.raises(Refused, match="node deactivated"):
        job.future.result()
