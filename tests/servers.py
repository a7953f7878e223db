"""Tiny purpose-built TCP servers on loopback, for servers Dovecot cannot imitate (silent, hostile)."""

import socket
import threading


class SocketServer:
    """Accepts connections on 127.0.0.1 and runs ``handle(connection, stop)`` for each in a thread.

    `stop` is a threading.Event set when the server closes; handlers should
    return once it is set. Use as a context manager; ``port`` is set on entry.
    """

    def __init__(self, handle):
        self.handle = handle
        self.stop = threading.Event()
        self.connections = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]

    def __enter__(self):
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc_info):
        self.stop.set()
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() below; close() alone does not
        self.listener.close()
        for connection in self.connections:
            connection.close()

    def _accept(self):
        while not self.stop.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(connection)
            threading.Thread(target=self.handle, args=(connection, self.stop), daemon=True).start()


def never_greet(connection, stop):
    """Accept the TCP connection and say nothing, ever."""
    stop.wait()
