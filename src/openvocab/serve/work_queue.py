"""The bounded work queue of ``openvocab serve`` (issue 10 parts 1 and 3): classification runs off the event loop.

``--workers`` threads take jobs from one queue that holds at most ``--queue-size`` waiting jobs; a job that finds it
full is refused at once (:class:`QueueFull`: 503 with ``Retry-After``, estimated from the mean job time), so a burst
of requests never piles up unbounded work or memory. A waiting job can be dropped (:meth:`WorkQueue.cancel`: its
request timed out or its client went away) and then never runs; a running one cannot be interrupted (a thread is
not killable mid-forward), so it is flagged and stops at its next progress report (:class:`JobCancelled`), and its
worker stays busy until then -- honest back-pressure. Each job's stage and fraction (``GET /progress/{id}``) are kept
for recent jobs (the last ``keep``).
"""

from __future__ import annotations

import itertools
import math
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from openvocab.serve.errors import ServeError

STAGES = ("queued", "decoding", "labels", "classifying", "done", "failed")


class QueueFull(ServeError):
    """Every worker is busy and the queue is full: 503 with ``Retry-After`` (seconds)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(503, f"the server is busy (work queue full); retry in about {retry_after} s", headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


class JobCancelled(Exception):
    """Raised inside a job at its next :meth:`Job.report` once its request timed out or its client left."""


class Job:
    """One unit of work: ``fn(job)`` runs on a worker thread; its outcome lands in :attr:`future`."""

    def __init__(self, job_id: str, fn: Callable[[Job], Any]) -> None:
        self.id = job_id
        self.fn = fn
        self.future: Future = Future()
        self.cancelled = threading.Event()
        self.stage = "queued"
        self.fraction = 0.0
        self.submitted = time.monotonic()
        self.updated = self.submitted

    def report(self, stage: str, fraction: float | None = None) -> None:
        """Progress from the worker (``fraction`` 0..1 never goes back); raises :class:`JobCancelled` when dropped."""
        if self.cancelled.is_set():
            raise JobCancelled()
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        self.stage = stage
        if fraction is not None:
            self.fraction = max(self.fraction, min(1.0, max(0.0, float(fraction))))
        self.updated = time.monotonic()

    @property
    def active(self) -> bool:
        return self.stage not in ("done", "failed")


class WorkQueue:
    """``workers`` threads (started on first use) over a queue of at most ``capacity`` waiting jobs."""

    def __init__(self, *, workers: int = 1, capacity: int = 8, keep: int = 1024) -> None:
        if workers < 1 or capacity < 0:
            raise ValueError(f"need workers >= 1 and capacity >= 0, got {workers} and {capacity}")
        self.workers, self.capacity, self.keep = int(workers), int(capacity), int(keep)
        self._cond = threading.Condition()
        self._waiting: deque[Job] = deque()
        self._running: set[Job] = set()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._mean_s = 1.0  # running mean of job times (exponential), for Retry-After
        self._names = itertools.count(1)

    # ------------------------------------------------------------------ the event loop's side
    def submit(self, fn: Callable[[Job], Any], *, job_id: str | None = None) -> Job:
        """Queue ``fn``; :class:`QueueFull` when ``workers + capacity`` jobs are already admitted, 409 when ``job_id``
        belongs to a job still waiting or running."""
        with self._cond:
            if self._closed:
                raise ServeError(503, "the server is shutting down", headers={"Retry-After": "5"})
            if job_id is not None and job_id in self._jobs and self._jobs[job_id].active:
                raise ServeError(409, f"request_id '{job_id}' belongs to a request still in progress")
            if len(self._waiting) + len(self._running) >= self.workers + self.capacity:
                raise QueueFull(self.retry_after())
            job = Job(job_id or uuid.uuid4().hex, fn)
            self._jobs[job.id] = job
            self._jobs.move_to_end(job.id)
            while len(self._jobs) > self.keep:
                oldest = next(iter(self._jobs))
                if self._jobs[oldest].active:  # never forget a live job; the bound is on finished ones
                    break
                self._jobs.pop(oldest)
            self._waiting.append(job)
            if len(self._threads) < self.workers:
                thread = threading.Thread(target=self._work, name=f"openvocab-serve-{next(self._names)}", daemon=True)
                self._threads.append(thread)
                thread.start()
            self._cond.notify()
            return job

    def full(self) -> bool:
        """Whether a job submitted now would be refused (checked before an upload is read: a full queue answers 503
        without taking the body)."""
        with self._cond:
            return self._closed or len(self._waiting) + len(self._running) >= self.workers + self.capacity

    def cancel(self, job: Job) -> bool:
        """Drop ``job``: True when it was still waiting (it never runs); otherwise flag it (it stops at its next
        progress report) and return False."""
        job.cancelled.set()
        with self._cond:
            if job in self._waiting:
                self._waiting.remove(job)
                job.future.cancel()
                job.stage = "failed"
                return True
        return False

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the mean job time x jobs ahead / workers, 1 to 60."""
        ahead = len(self._waiting) + 1
        return int(min(60, max(1, math.ceil(self._mean_s * ahead / self.workers))))

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {"running": len(self._running), "waiting": len(self._waiting), "capacity": self.capacity}

    def progress(self, job_id: str) -> dict:
        """``{request_id, stage, fraction, queue_position}`` (stage ``unknown`` for an id never seen or forgotten)."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None:
                return {"request_id": job_id, "stage": "unknown", "fraction": 0.0, "queue_position": None}
            position = next((i + 1 for i, j in enumerate(self._waiting) if j is job), None)
            return {"request_id": job_id, "stage": job.stage, "fraction": round(job.fraction, 4), "queue_position": position}

    def close(self) -> None:
        """Refuse new jobs and drop the waiting ones; running jobs are flagged (worker threads are daemons)."""
        with self._cond:
            self._closed = True
            for job in list(self._waiting):
                job.cancelled.set()
                job.future.cancel()
                job.stage = "failed"
            self._waiting.clear()
            for job in self._running:
                job.cancelled.set()
            self._cond.notify_all()

    # ------------------------------------------------------------------ the workers' side
    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._closed:
                    self._cond.wait()
                if not self._waiting:
                    return
                job = self._waiting.popleft()
                if not job.future.set_running_or_notify_cancel():
                    continue
                self._running.add(job)
            started = time.monotonic()
            try:
                if job.cancelled.is_set():
                    raise JobCancelled()
                result = job.fn(job)
            except BaseException as exc:  # delivered to the waiting request (or dropped with it)
                job.stage, job.updated = "failed", time.monotonic()
                job.future.set_exception(exc)
            else:
                job.stage, job.fraction, job.updated = "done", 1.0, time.monotonic()
                job.future.set_result(result)
            finally:
                with self._cond:
                    self._running.discard(job)
                    self._mean_s = 0.8 * self._mean_s + 0.2 * (time.monotonic() - started)
