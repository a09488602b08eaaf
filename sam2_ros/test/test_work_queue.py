"""The worker's inbox: bounded, fair to the camera, every request answered once."""
import threading
import time

import pytest

from sam2_ros.core.work_queue import PARKED_RETRY_S, Job, NotYet, Refused, Turn, WorkQueue


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
    worker = threading.Thread(target=lambda: taken.append(queue.take()), daemon=True)
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


def long_pass(slices: int):
    """A resumable request of `slices` slices (a generator function, as segment everything's run is)."""
    def run():
        for part in range(slices):
            yield part
        return "whole pass"
    return run


def turn(queue: WorkQueue) -> str:
    """Take one item as the worker does: a frame is named; a job runs a slice ("slice"), back in line if unfinished."""
    item = queue.take()
    if not isinstance(item, Job):
        return item
    if item.execute(lambda error: None) is Turn.AGAIN:
        queue.resume(item)
    return "slice"


def test_a_long_request_runs_a_slice_per_turn_and_the_waiting_frame_goes_between_its_slices():
    queue = WorkQueue(max_jobs=4, jobs_per_frame=1)
    queue.open()
    job = queue.submit_job(long_pass(3))
    order = []
    for frame in ("frame 1", "frame 2", "frame 3"):
        queue.put_frame(frame)
        order.append(turn(queue))
        if order[-1] == "slice":
            order.append(turn(queue))
    while queue.pending():
        turn(queue)
    assert order == ["slice", "frame 1", "slice", "frame 2", "slice", "frame 3"] and job.future.result() == "whole pass"


def test_a_click_sent_during_a_long_request_runs_before_its_next_slice():
    """A resumed slice queues behind what came meanwhile: a click never waits for a whole segment-everything pass."""
    queue = WorkQueue(max_jobs=4, jobs_per_frame=4)
    queue.open()
    ran = []

    def long_pass():
        for part in range(2):
            ran.append(f"slice {part}")
            yield
    job = queue.submit_job(long_pass)
    assert queue.take() is job and job.execute(lambda error: None) is Turn.AGAIN
    queue.submit(lambda: ran.append("click"))
    queue.resume(job)
    while queue.pending():
        item = queue.take()
        if item.execute(lambda error: None) is Turn.AGAIN:
            queue.resume(item)
    assert ran == ["slice 0", "click", "slice 1"] and job.future.done()


def test_an_abandoned_long_request_stops_at_its_next_slice_and_says_why():
    queue = WorkQueue(max_jobs=4, jobs_per_frame=1)
    queue.open()
    slices = []

    def long_pass():
        while True:
            slices.append(1)
            yield
    job = queue.submit_job(long_pass)
    assert queue.take().execute(lambda error: None) is Turn.AGAIN
    job.abandoned.set()
    assert job.execute(lambda error: None) is Turn.DONE
    with pytest.raises(Refused, match="abandoned: the caller stopped waiting"):
        job.future.result()
    assert len(slices) == 1


def test_close_answers_a_long_request_waiting_for_its_next_slice():
    queue = WorkQueue(max_jobs=4, jobs_per_frame=1)
    queue.open()
    job = queue.submit_job(lambda: (yield))
    assert queue.take().execute(lambda error: None) is Turn.AGAIN
    queue.resume(job)
    assert queue.close("node deactivated") == 1
    with pytest.raises(Refused, match="node deactivated"):
        job.future.result()


class Camera:
    """What a job waiting for a frame sees: the stamps processed so far."""

    def __init__(self):
        self.processed: list[int] = []

    def apply(self, stamp: int) -> str:
        if not self.processed or max(self.processed) < stamp:
            raise NotYet(f"frame {stamp} not processed yet")
        return f"applied on {min(s for s in self.processed if s >= stamp)}"


def work(queue: WorkQueue, camera: Camera, turns: int, max_wait_s: float = 10.0) -> list[str]:
    """The worker's loop for `turns` items: frames processed in order, parked jobs parked."""
    order = []
    for _ in range(turns):
        item = queue.take()
        if isinstance(item, Job):
            turn = item.execute(lambda error: None, max_wait_s)
            if turn is Turn.PARK:
                queue.park(item)
            order.append(turn.value if turn is not Turn.DONE else "job")
        else:
            camera.processed.append(item)
            order.append(f"frame {item}")
    return order


def test_a_job_for_a_frame_not_processed_yet_is_parked_and_runs_right_after_that_frame():
    """A detector's box arrives before its frame is processed: it waits, then runs first after the frame."""
    queue, camera = WorkQueue(max_jobs=8, jobs_per_frame=1), Camera()
    queue.open()
    queue.put_frame(10)
    assert work(queue, camera, 1) == ["frame 10"]
    box = queue.submit(lambda: camera.apply(11))
    other = queue.submit(lambda: "another request")
    queue.put_frame(11)
    finished = []
    box.add_done_callback(lambda _: finished.append("box"))
    other.add_done_callback(lambda _: finished.append("other"))
    # the box's turn (jobs_per_frame 1) parks it; frame 11 comes next, then the box, before the other request
    assert work(queue, camera, 4) == ["park", "frame 11", "job", "job"]
    assert box.result(timeout=0) == "applied on 11" and other.result(timeout=0) == "another request"
    assert finished == ["box", "other"]


def test_parked_jobs_run_after_their_frame_even_past_jobs_per_frame():
    queue, camera = WorkQueue(max_jobs=8, jobs_per_frame=1), Camera()
    queue.open()
    queue.put_frame(1)
    work(queue, camera, 1)
    boxes = [queue.submit(lambda: camera.apply(2)) for _ in range(3)]
    assert work(queue, camera, 3) == ["park"] * 3
    queue.put_frame(2)
    queue.submit(lambda: "late")
    queue.put_frame(3)  # replaces nothing yet: frame 2 was taken first below
    assert work(queue, camera, 1) == ["frame 3"]  # the slot holds the newest frame: 2 was skipped
    queue.put_frame(4)  # waiting already: with jobs_per_frame 1 only the late request would go before it
    assert work(queue, camera, 5) == ["job"] * 4 + ["frame 4"]
    assert [b.result(timeout=0) for b in boxes] == ["applied on 3"] * 3


def test_a_job_whose_frame_never_comes_is_refused_after_its_limit():
    queue, camera = WorkQueue(max_jobs=8, jobs_per_frame=1), Camera()
    queue.open()
    queue.put_frame(1)
    work(queue, camera, 1)
    future = queue.submit(lambda: camera.apply(99))
    done = threading.Event()

    def worker():  # no frame comes: the parked job is tried again every PARKED_RETRY_S until its 1.2 s are over
        while not future.done():
            work(queue, camera, 1, max_wait_s=1.2)
        done.set()
    threading.Thread(target=worker, daemon=True).start()
    assert done.wait(10)
    with pytest.raises(Refused, match=r"frame 99 not processed yet; none came within 1.2 s \(request_timeout_s\)"):
        future.result()


def test_close_answers_parked_jobs_and_pending_counts_them():
    queue, camera = WorkQueue(max_jobs=8, jobs_per_frame=1), Camera()
    queue.open()
    future = queue.submit(lambda: camera.apply(5))
    assert work(queue, camera, 1) == ["park"] and queue.pending() == 1
    assert queue.close("node deactivated") == 1
    with pytest.raises(Refused, match="node deactivated"):
        future.result()


def test_close_wakes_a_worker_waiting_with_parked_jobs():
    """close() empties the parked list while take() waits for their retry: take must still return None."""
    queue, camera = WorkQueue(max_jobs=8, jobs_per_frame=1), Camera()
    queue.open()
    queue.submit(lambda: camera.apply(5))
    assert work(queue, camera, 1) == ["park"]
    taken = []
    worker = threading.Thread(target=lambda: taken.append(queue.take()), daemon=True)
    worker.start()
    time.sleep(0.2)  # the worker is inside take(), waiting for the parked job's retry (every 0.5 s)
    queue.close("node deactivated")
    worker.join(timeout=5)
    assert not worker.is_alive() and taken == [None]


def test_waiting_says_without_blocking_whether_take_has_something_parked_jobs_once_their_retry_is_due():
    """The worker gives the time in between to the text detector: it must know, without taking, when work came."""
    queue, camera = WorkQueue(max_jobs=8, jobs_per_frame=1), Camera()
    queue.open()
    assert not queue.waiting()
    queue.put_frame(1)
    assert queue.waiting()
    work(queue, camera, 1)
    assert not queue.waiting()
    queue.submit(lambda: camera.apply(2))
    assert queue.waiting()
    assert work(queue, camera, 1) == ["park"]
    assert not queue.waiting(), "a parked job is tried again only after PARKED_RETRY_S"
    time.sleep(PARKED_RETRY_S + 0.05)
    assert queue.waiting()
    queue.close("node deactivated")
    assert queue.waiting() and queue.take() is None


def test_a_waiting_frame_goes_before_a_long_request_that_had_its_turn_since_the_last_frame():
    """In the camera's gaps a long request takes turn after turn; once a frame waits it gets one turn per frame."""
    queue = WorkQueue(max_jobs=4, jobs_per_frame=4)
    queue.open()
    queue.submit_job(long_pass(4))
    order = [turn(queue), turn(queue)]  # no frame waits: the pass goes on
    queue.put_frame("frame 1")
    order.append(turn(queue))  # not after requests_per_frame (4) turns: the pass had its turn since the last frame
    queue.put_frame("frame 2")  # a frame waits as one ends: the pass still gets a turn per frame
    order += [turn(queue), turn(queue), turn(queue)]
    assert order == ["slice", "slice", "frame 1", "slice", "frame 2", "slice"]
