"""The worker's inbox: the newest camera frame, and a bounded queue of requests taken fairly.

Frames are never queued (a newer one replaces an older, which counts as skipped), and
requests are: a flood of prompts is refused once the queue is full, and the worker runs at
most `jobs_per_frame` requests before a waiting frame, so the camera keeps flowing under any
prompt rate. Each request is a `concurrent.futures.Future`: a caller that gives up cancels
it, a cancelled request is never run, and it gives its place in the queue back at once.
Long work (segment everything) is a resumable job: each turn runs one slice, and an unfinished
job goes back to the end of the queue, so camera frames and other requests take turns with it;
a waiting frame goes before a resumed job that has had its turn since the last frame.
A job that needs a camera frame not processed yet (a detector's box for a frame still in the
camera's slot) raises NotYet: it is parked until the next frame is taken, then runs first after
it; one parked longer than its limit is answered Refused. `waiting()` tells the worker, without
blocking, whether anything is due, so it can give the time in between to the text detector.
"""
from __future__ import annotations

import enum
import math
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Callable, Iterator

PARKED_RETRY_S = 0.5  # parked jobs are tried again this often while no camera frame comes


class Refused(Exception):
    """A request the node does not take (queue full, node inactive); the message says why."""


class NotYet(Exception):
    """The job needs a camera frame that has not been processed yet: run it again after the next one."""


class Turn(enum.Enum):
    """What a job's turn on the worker left to do."""

    DONE = "done"  # answered (outcome, error or cancellation)
    AGAIN = "again"  # a resumable job with slices left: queue it again
    PARK = "park"  # waits for the next camera frame


class Job:
    """One request: what to run, and the future its caller waits on.

    `run` returns the outcome, or, for long work, a generator: each `next()` is one slice, and
    the value it returns (StopIteration's) is the outcome.
    """

    def __init__(self, run: Callable[[], object]):
        self.run = run
        self.future: Future = Future()
        self.abandoned = threading.Event()  # the caller stopped waiting: a resumable job ends early
        self._slices: Iterator | None = None
        self._started = False
        self._waiting_since: float | None = None  # time.monotonic() of its first NotYet

    @property
    def resumed(self) -> bool:
        """True once a long job has run a slice and has more to run."""
        return self._slices is not None

    def execute(self, on_error: Callable[[Exception], None], max_wait_s: float = math.inf) -> Turn:
        """Run one turn unless cancelled; the outcome (or the exception) goes to the future.

        A job that raises NotYet is parked (run again from the start later), for `max_wait_s`
        at most; then it is answered Refused.
        """
        if not self._started:
            if not self.future.set_running_or_notify_cancel():
                return Turn.DONE
            self._started = True
        try:
            if self.abandoned.is_set():
                raise Refused("abandoned: the caller stopped waiting (request_timeout_s)")
            if self._slices is None:
                outcome = self.run()
                if not hasattr(outcome, "__next__"):
                    self.future.set_result(outcome)
                    return Turn.DONE
                self._slices = outcome
            next(self._slices)
            return Turn.AGAIN
        except StopIteration as done:
            self.future.set_result(done.value)
        except NotYet as error:
            self._slices = None
            self._waiting_since = self._waiting_since or time.monotonic()
            if time.monotonic() - self._waiting_since <= max_wait_s:
                return Turn.PARK
            refused = Refused(f"{error}; none came within {max_wait_s:g} s (request_timeout_s): not applied")
            on_error(refused)
            self.future.set_exception(refused)
        except Exception as error:
            on_error(error)
            self.future.set_exception(error)
        return Turn.DONE

    def fail(self, error: Exception) -> bool:
        """Answer with `error` unless the job already has an outcome; True when it was answered."""
        if not self._started and not self.future.set_running_or_notify_cancel():
            return False
        if self.future.done():
            return False
        self.future.set_exception(error)
        return True


class WorkQueue:
    """Newest frame plus bounded jobs; `take()` blocks until there is work or the queue closes."""

    def __init__(self, max_jobs: int, jobs_per_frame: int):
        self.max_jobs = max_jobs
        self.jobs_per_frame = jobs_per_frame
        self._cond = threading.Condition()
        self._jobs: deque[Job] = deque()
        self._parked: list[Job] = []  # jobs waiting for the next camera frame
        self._parked_since: float | None = None  # time.monotonic() when the oldest parked job was parked
        self._frame: object | None = None
        self._open = False
        self._jobs_since_frame = 0
        self._resumed_since_frame = False  # a resumed long job has had a turn since the last frame

    def open(self) -> None:
        with self._cond:
            self._open, self._jobs_since_frame = True, 0

    def put_frame(self, frame: object) -> bool:
        """Offer the newest frame; return True when it replaced one the worker never took."""
        with self._cond:
            if not self._open:
                return False
            replaced = self._frame is not None
            self._frame = frame
            self._cond.notify()
            return replaced

    def submit(self, run: Callable[[], object]) -> Future:
        """Queue a request, or raise Refused at once when the queue is full or closed."""
        return self.submit_job(run).future

    def submit_job(self, run: Callable[[], object]) -> Job:
        """As `submit`, returning the job itself (its caller may abandon a long one)."""
        with self._cond:
            if not self._open:
                raise Refused("node is not active: request not applied")
            if len(self._jobs) >= self.max_jobs:
                raise Refused(f"request queue full ({len(self._jobs)} waiting, max_queued_requests "
                              f"{self.max_jobs}): request not applied, try again")
            job = Job(run)
            self._jobs.append(job)
            self._cond.notify()
        job.future.add_done_callback(lambda future: future.cancelled() and self._forget(job))
        return job

    def set_limits(self, max_jobs: int, jobs_per_frame: int) -> None:
        """Take new limits (a run-time parameter change) under the queue's own lock."""
        with self._cond:
            self.max_jobs, self.jobs_per_frame = max_jobs, jobs_per_frame

    def resume(self, job: Job) -> None:
        """Queue an unfinished resumable job again, behind what waits now (it keeps its place)."""
        with self._cond:
            if self._open:
                self._jobs.append(job)
                self._cond.notify()
                return
        job.fail(Refused("node stopped before the request finished"))

    def park(self, job: Job) -> None:
        """Hold a job that waits for a camera frame; it runs first after the next frame is taken."""
        with self._cond:
            if self._open:
                if not self._parked:
                    self._parked_since = time.monotonic()
                self._parked.append(job)
                return
        job.fail(Refused("node stopped before the frame the request waits for came"))

    def _forget(self, job: Job) -> None:
        with self._cond:
            if job in self._jobs:
                self._jobs.remove(job)
            if job in self._parked:
                self._parked.remove(job)

    def take(self) -> Job | object | None:
        """Return the next job or frame (None once closed).

        Jobs come first (they refer to frames already seen), but at most `jobs_per_frame` of
        them while a frame waits. Parked jobs join the front of the queue when a frame is taken
        (they run as soon as it is processed), or after PARKED_RETRY_S without one (to give up
        in time).
        """
        with self._cond:
            while self._open and not self._jobs and self._frame is None:
                if not self._parked:
                    self._cond.wait()
                elif not self._cond.wait(self._retry_in()):  # no frame came: try them again
                    self._jobs.extend(self._parked)
                    self._parked = []
            if not self._open:
                return None
            frame_due = self._frame is not None and (not self._jobs
                                                     or self._jobs_since_frame >= self.jobs_per_frame
                                                     or self._jobs[0].resumed and self._resumed_since_frame)
            if frame_due:
                # the parked jobs run right after this frame, over and above jobs_per_frame
                frame, self._frame, self._jobs_since_frame = self._frame, None, -len(self._parked)
                self._resumed_since_frame = False
                self._jobs.extendleft(reversed(self._parked))
                self._parked = []
                return frame
            self._jobs_since_frame += 1
            job = self._jobs.popleft()
            self._resumed_since_frame |= job.resumed
            return job

    def frame_waiting(self) -> bool:
        """Return True when a camera frame waits for the worker (the camera outpaces the model)."""
        with self._cond:
            return self._frame is not None

    def waiting(self) -> bool:
        """Return True when `take()` has something now: a frame, a request, parked jobs to retry, or the close."""
        with self._cond:
            return self._waiting()

    def wait(self, timeout_s: float) -> None:
        """Block until `waiting()` or for `timeout_s`, whichever comes first."""
        with self._cond:
            self._cond.wait_for(self._waiting, timeout_s)

    def _waiting(self) -> bool:
        return (not self._open or self._frame is not None or bool(self._jobs)
                or bool(self._parked) and self._retry_in() == 0.0)

    def _retry_in(self) -> float:
        """Seconds until parked jobs are tried again without a frame (0: now); the lock is held."""
        return max(0.0, self._parked_since + PARKED_RETRY_S - time.monotonic())

    def close(self, reason: str) -> int:
        """Stop taking work; every queued or parked request is answered with Refused(reason). Returns how many."""
        with self._cond:
            self._open = False
            jobs, self._jobs, self._frame = [*self._jobs, *self._parked], deque(), None
            self._parked = []
            self._cond.notify_all()
        return sum(job.fail(Refused(reason)) for job in jobs)

    def pending(self) -> int:
        """Return how many requests wait: queued, and parked until a frame comes."""
        with self._cond:
            return len(self._jobs) + len(self._parked)
