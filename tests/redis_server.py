"""A throwaway Redis server on loopback, from Debian's redis-server package, for tests and benchmarks.

Plain Python (no pytest)::

    with RedisServer() as server:
        url = server.url   # redis://127.0.0.1:<port>/0

Nothing is persisted; ``pause()`` and ``resume()`` (SIGSTOP, SIGCONT) make it
unreachable and back, for tests of what Mailkeep does when Redis is down.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from components import stop_process

BINARY = "/usr/bin/redis-server"
STARTUP_TIMEOUT = 10.0
"""Seconds start() waits for the server to answer PING."""


class RedisServer:
    """A Redis server on 127.0.0.1 at a free port. Use as a context manager or call start()/stop().

    Raises RuntimeError when it does not start, with the end of its log.
    """

    def __init__(self, binary=BINARY):
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="mailkeep-redis-"))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        """Start redis-server and wait until it answers PING."""
        log = self.root / "redis.log"
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.root), "--logfile", str(log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            try:
                redis.Redis.from_url(self.url, socket_timeout=1).ping()
                return
            except redis.RedisError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    text = log.read_text()[-2000:] if log.exists() else ""
                    raise RuntimeError(f"redis-server did not start: {text}") from None
                time.sleep(0.05)

    def flush(self):
        """Forget every key (between tests)."""
        redis.Redis.from_url(self.url).flushall()

    def pause(self):
        """Stop the server answering (SIGSTOP): connections hang until ``resume``."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self):
        """Let a paused server answer again (SIGCONT)."""
        self.process.send_signal(signal.SIGCONT)

    def stop(self):
        """Stop the server and remove its directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a paused server cannot hear SIGTERM
        stop_process(self.process, STARTUP_TIMEOUT)
        shutil.rmtree(self.root, ignore_errors=True)
