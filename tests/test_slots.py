"""Connection-test slots: per process without Redis; shared by every process with it; per process again,
with a warning, while Redis cannot be reached."""

import logging
import threading
import time

import slots


def test_without_redis_the_slots_are_this_process_own():
    local = slots.make(2)
    assert local.acquire(blocking=False) and local.acquire(blocking=False)
    assert not local.acquire(blocking=False)
    local.release()
    assert local.acquire(blocking=False)


def test_with_redis_two_processes_share_the_limit(redis_server):
    redis_server.flush()
    first, second = (slots.make(2, redis_server.url, name="shared") for _ in range(2))  # as two processes would
    assert first.acquire() and second.acquire()
    assert not first.acquire() and not second.acquire()
    second.release()
    assert first.acquire()


def test_a_slot_held_by_a_process_that_died_expires(redis_server):
    redis_server.flush()
    crashed = slots.make(1, redis_server.url, hold_seconds=0.5, name="expiring")
    assert crashed.acquire()  # and never released
    survivor = slots.make(1, redis_server.url, hold_seconds=0.5, name="expiring")
    assert not survivor.acquire()
    time.sleep(0.6)
    assert survivor.acquire()


def test_while_redis_is_unreachable_slots_are_counted_here_with_one_warning(redis_server, caplog):
    redis_server.flush()
    shared = slots.make(1, redis_server.url, name="outage")
    redis_server.pause()
    try:
        with caplog.at_level(logging.WARNING, logger="slots"):
            assert shared.acquire()  # the process's own slot, after Redis's timeout
            assert not shared.acquire()
            shared.release()
            assert shared.acquire()
            shared.release()
    finally:
        redis_server.resume()
    warnings = [record for record in caplog.records if record.name == "slots"]
    assert len(warnings) == 1 and "counted per process" in warnings[0].getMessage()
    assert shared.acquire()  # Redis again


def test_slots_taken_at_once_by_many_threads_never_exceed_the_limit(redis_server):
    redis_server.flush()
    pool = [slots.make(3, redis_server.url, name="burst") for _ in range(4)]
    taken = []
    threads = [threading.Thread(target=lambda p=p: taken.append(p.acquire())) for p in pool for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert taken.count(True) == 3
