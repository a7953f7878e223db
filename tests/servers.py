"""Tiny purpose-built TCP servers on loopback, for servers Dovecot cannot imitate: silent, slow, hostile.

Each handler gets the accepted connection and a threading.Event set when the
server closes; it should return once the event is set.
"""

import contextlib
import socket
import ssl
import threading

GREETING = b"* OK purpose-built server ready\r\n"


class SocketServer:
    """Accepts connections on 127.0.0.1 and runs ``handle(connection, stop)`` for each in a thread.

    With `tls` = (certificate file, key file) each connection is TLS from the
    first byte (implicit TLS). Use as a context manager; ``port`` is set on
    creation, and ``closed_by_client`` is set once a client hangs up on a handler.
    """

    def __init__(self, handle, tls=None):
        self.handle = handle
        self.stop = threading.Event()
        self.closed_by_client = threading.Event()
        self.connections = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.context = None
        if tls:
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.context.load_cert_chain(*tls)

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
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection):
        try:
            if self.context is not None:
                connection = self.context.wrap_socket(connection, server_side=True)
                self.connections.append(connection)
            self.handle(connection, self.stop)
        except OSError:  # the client gave up or was cut off: what these servers exist to cause
            self.closed_by_client.set()


@contextlib.contextmanager
def unanswered_port():
    """A loopback port whose connection attempts are never answered: they time out rather than fail.

    A listener whose accept queue is full (backlog 0, one connection waiting)
    drops further SYNs, so the client's connect() waits, as it would for a
    firewall that drops packets. Yields the port number.
    """
    with socket.create_server(("127.0.0.1", 0), backlog=0) as listener, socket.socket() as queued:
        queued.connect(listener.getsockname())
        yield listener.getsockname()[1]


def never_greet(connection, stop):
    """Accept the TCP connection and say nothing, ever."""
    stop.wait()


def drip(connection, stop):
    """Greet one byte at a time, three a second, forever: no single read ever times out."""
    while not stop.wait(0.3):
        connection.send(b"*")


def converse(connection, capabilities, answer=None):
    """Greet, answer CAPABILITY with `capabilities` (bytes), and each other command with ``answer(tag, line)``.

    Python's imaplib always asks for CAPABILITY after the greeting. `answer`
    returns the bytes to send, or None to hang up; by default every other
    command is refused with NO. Returns when the client hangs up.
    """
    connection.sendall(GREETING)
    for line in connection.makefile("rb"):
        tag, _, command = line.strip().partition(b" ")
        if command.upper() == b"CAPABILITY":
            reply = b"* CAPABILITY IMAP4rev1 " + capabilities + b"\r\n" + tag + b" OK done\r\n"
        else:
            reply = (answer or _refuse)(tag, command)
        if reply is None:
            connection.close()
            return
        connection.sendall(reply)


def _refuse(tag, command):
    return tag + b" NO not on this server\r\n"


def greet_with(capabilities):
    """A handler that greets, offers `capabilities` (bytes, e.g. b"LOGINDISABLED") and refuses every command."""
    return lambda connection, stop: converse(connection, capabilities)


def greet_then_stall(connection, stop):
    """Greet and tell the capabilities (STARTTLS among them), then never answer another command."""
    converse(connection, b"STARTTLS AUTH=PLAIN", lambda tag, command: stop.wait() and None)


def close_mid_command(connection, stop):
    """Greet and tell the capabilities, then hang up when the next command arrives."""
    converse(connection, b"STARTTLS AUTH=PLAIN", lambda tag, command: None)


def echo_secrets(connection, stop):
    """Answer every command with the command itself, secrets and all, then say BYE with it too."""
    def answer(tag, command):
        return b"* BYE you said " + command + b"\r\n" + tag + b" NO you said " + command + b"\r\n"
    converse(connection, b"AUTH=PLAIN", answer)


def oversized_line(connection, stop):
    """A greeting line of more than a megabyte."""
    connection.sendall(b"* OK " + b"x" * (1024 * 1024 + 10) + b"\r\n")
    stop.wait()


def huge_literal(connection, stop):
    """Greet, then answer CAPABILITY with a literal announced at five gigabytes."""
    connection.sendall(GREETING)
    connection.makefile("rb").readline()
    connection.sendall(b"* CAPABILITY {5000000000}\r\n")
    stop.wait()


def flood(connection, stop):
    """Greet, then answer CAPABILITY with endless untagged lines."""
    connection.sendall(GREETING)
    connection.makefile("rb").readline()
    line = b"* OK " + b"x" * 1000 + b"\r\n"
    while not stop.is_set():
        connection.sendall(line * 64)


def speak_http(connection, stop):
    """Behave like a web server giving up on a client that says nothing: after a moment, answer 408
    Request Timeout (as Apache's RequestReadTimeout does) and hang up."""
    if not stop.wait(0.3):
        connection.sendall(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        connection.close()
