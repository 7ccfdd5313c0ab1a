"""Threads: sessions of their own on one shared model give identical results, and the GIL is released
while the library runs."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback

import numpy as np
import pytest

import qarep
from conftest import random_images


def test_two_threads_with_their_own_sessions_on_one_model(model):
    images = np.stack([model.preprocess(im) for im in random_images(4, seed=23)])
    reference = qarep.Session(model, threads=1, max_batch=4, kernel="scalar").run(images)
    results: dict[int, list[np.ndarray]] = {0: [], 1: []}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def work(index: int) -> None:
        try:
            session = qarep.Session(model, threads=1, max_batch=4)
            start.wait()
            for _ in range(5):
                results[index].append(session.run(images))
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for runs in results.values():
        assert len(runs) == 5
        for logits in runs:
            np.testing.assert_array_equal(logits.view(np.uint32), reference.view(np.uint32))


def test_the_gil_is_released_during_run(model):
    # With a switch interval of minutes, the interpreter never takes the GIL from a running thread, so the
    # main thread can execute Python during the worker's run only if the run released the GIL. The worker
    # stamps the time it got back from the library; the main thread stamps when it ran after the worker had
    # entered it. Released: main ran first. Held: main could only run after the run had returned.
    images = np.stack([model.preprocess(im) for im in random_images(8, seed=29)])
    session = qarep.Session(model, threads=1, max_batch=8, kernel="scalar")  # the slowest path: a long call
    entering = threading.Event()
    stamps: dict[str, float] = {}

    def work() -> None:
        entering.set()
        session.run(images)
        stamps["run_returned"] = time.perf_counter()

    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(300.0)
    try:
        worker = threading.Thread(target=work)
        worker.start()
        entering.wait()
        time.sleep(0.05)  # lets the worker reach the call (sleep releases the GIL)
        stamps["main_ran"] = time.perf_counter()
    finally:
        sys.setswitchinterval(old_interval)
    worker.join()
    assert stamps["main_ran"] < stamps["run_returned"]


def test_a_session_used_by_two_threads_at_once_is_refused_not_corrupted(model):
    images = np.stack([model.preprocess(im) for im in random_images(8, seed=31)])
    session = qarep.Session(model, threads=1, max_batch=8, kernel="scalar")
    reference = session.run(images)
    outcomes: list[object] = []
    start = threading.Barrier(2)

    def work() -> None:
        start.wait()
        for _ in range(3):
            try:
                outcomes.append(session.run(images))
            except qarep.InvalidArgumentError as error:
                outcomes.append(error)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for outcome in outcomes:
        if isinstance(outcome, np.ndarray):
            np.testing.assert_array_equal(outcome, reference)
        else:
            assert "already running on another thread" in str(outcome), outcome


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
@pytest.mark.filterwarnings("ignore:.*use of fork\\(\\) may lead to deadlocks:DeprecationWarning")  # Python 3.12+
def test_a_forked_child_runs_the_parents_session_and_its_own(model):
    # multiprocessing's default start method on Linux up to Python 3.13 is fork: a child inherits sessions
    # whose OpenMP team exists only in the parent (rescue mode's threads too, on a loaded machine; the kernel
    # tests force that case). The child must run them, make new ones and exit; a hang is the failure (the
    # parent gives it 60 s).
    images = np.stack([model.preprocess(im) for im in random_images(3, seed=31)])
    session = qarep.Session(model, threads=2, max_batch=3)
    one, three = session.run(images[:1]), session.run(images)
    child = os.fork()
    if child == 0:
        code = 1
        try:
            fresh = qarep.Session(model, threads=2, max_batch=3)
            same = all(np.array_equal(a.view(np.uint32), b.view(np.uint32)) for a, b in
                       [(session.run(images[:1]), one), (session.run(images), three), (fresh.run(images[:1]), one)])
            code = 0 if same else 3
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(child, os.WNOHANG)
        if done == child:
            break
        time.sleep(0.05)
    else:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        pytest.fail("the forked child did not finish within 60 s")
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child status {status} (3: other logits)"
