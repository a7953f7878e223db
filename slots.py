"""Connection-test slots: how many connection tests may run at once, in one process or across all of them.

probe.Prober takes any object with ``acquire(blocking=False) -> bool`` and
``release()``. Without Redis that is a semaphore per process; with
``MAILKEEP_REDIS_URL`` the slots are counted in Redis, so the limit holds across
every process and instance. A slot held in Redis expires after the longest a test
can take, so a process that dies mid-test cannot keep it. When Redis cannot be
reached the slots fall back to this process's own count, with a warning at most
once a minute, rather than refusing every test.
"""

import collections
import logging
import threading
import time
import uuid

import redis

log = logging.getLogger(__name__)

# How long (seconds) Mailkeep waits for Redis before counting on its own.
REDIS_TIMEOUT = 0.5
WARNING_INTERVAL = 60.0

# Frees expired slots, then takes one if fewer than the limit are held. Redis's own clock decides expiry,
# so the instances' clocks need not agree. KEYS[1]: the sorted set of held slots (member: slot id, score:
# expiry); ARGV: limit, seconds a slot is held at most, the new slot's id. Answers 1 when taken, else 0.
ACQUIRE = """
local now = redis.call('TIME')
local seconds = tonumber(now[1]) + tonumber(now[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', seconds)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], seconds + tonumber(ARGV[2]), ARGV[3])
  return 1
end
return 0
"""


def make(limit, redis_url=None, hold_seconds=60.0, name="connection-tests"):
    """Slots for `limit` tests at once: shared through Redis at `redis_url` when given, else this process's.

    `hold_seconds` is how long a Redis slot is held at most (the test deadline
    and a margin); `name` keeps different pools apart (hand-started tests and
    scheduled checks do not share slots).
    """
    local = threading.BoundedSemaphore(limit)
    if not redis_url:
        return local
    return RedisSlots(redis_url, limit, hold_seconds, name, local)


class RedisSlots:
    """`limit` slots counted in Redis under ``mailkeep:slots:<name>``, falling back to `local` (a semaphore
    of the same size) while Redis cannot be reached."""

    def __init__(self, url, limit, hold_seconds, name, local):
        self.client = redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT)
        self.key = f"mailkeep:slots:{name}"
        self.limit = limit
        self.hold_seconds = hold_seconds
        self.local = local
        self._acquire = self.client.register_script(ACQUIRE)
        self._held = collections.deque()  # ("redis", slot id) or ("local", None), one per slot held
        self._lock = threading.Lock()
        self._warned_at = 0.0

    def acquire(self, blocking=False):
        """Take a slot if one is free; True when taken. Never waits (`blocking` must be False)."""
        if blocking:
            raise ValueError("connection-test slots are never waited for")
        slot = uuid.uuid4().hex
        try:
            taken = bool(self._acquire(keys=[self.key], args=[self.limit, self.hold_seconds, slot]))
            holder = ("redis", slot)
        except redis.RedisError as error:
            self._warn(error)
            taken, holder = self.local.acquire(blocking=False), ("local", None)
        if taken:
            with self._lock:
                self._held.append(holder)
        return taken

    def release(self):
        """Give back one slot this process holds (any: they are all alike)."""
        with self._lock:
            kind, slot = self._held.popleft()
        if kind == "local":
            self.local.release()
            return
        try:
            self.client.zrem(self.key, slot)
        except redis.RedisError as error:  # it expires on its own
            self._warn(error)

    def _warn(self, error):
        now = time.monotonic()
        if now - self._warned_at >= WARNING_INTERVAL:
            self._warned_at = now
            log.warning("Redis cannot be reached (%s): connection-test slots are counted per process until it "
                        "answers again", error)
