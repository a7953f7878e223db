"""Tiny purpose-built TCP servers on loopback, for servers Dovecot cannot imitate: silent, slow, hostile,
scripted; and the helpers the probe tests share to run connection tests against them and Dovecot.

Each handler gets the accepted connection and a threading.Event set when the
server closes; it should return once the event is set.
"""

import base64
import binascii
import contextlib
import re
import socket
import ssl
import threading
import time
from urllib.parse import unquote_plus

import probe
from probe import protocols
from testdata import CANARY, LOOPBACK_POLICY, MAILBOX_USER

GREETING = b"* OK purpose-built server ready\r\n"


class SocketServer:
    """Accepts connections on 127.0.0.1 and runs ``handle(connection, stop)`` for each in a thread.

    With `tls` = (certificate file, key file), or a server SSLContext, each
    connection is TLS from the first byte (implicit TLS). Use as a context
    manager; ``port`` is set on creation, and ``closed_by_client`` is set once a
    client hangs up on a handler.
    """

    def __init__(self, handle, tls=None):
        self.handle = handle
        self.stop = threading.Event()
        self.closed_by_client = threading.Event()
        self.connections = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.context = tls if isinstance(tls, ssl.SSLContext) else None
        if tls and self.context is None:
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

    The greeting carries no capabilities, so the client asks for them. `answer`
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


def close_at_once(connection, stop):
    """Accept the TCP connection and hang up without a word, as an implicit-TLS port does after a while
    when the client waits for a greeting instead of starting TLS."""
    connection.close()


def tls_server_context(certificates, alpn=None):
    """A server SSLContext for `certificates` (CA file, certificate, key), offering `alpn` protocols if given."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificates[1:])
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


class _Lines:
    """Reads CRLF or LF lines from a socket that may be replaced (STARTTLS) without losing or mixing data."""

    def __init__(self, connection):
        self.connection = connection
        self.buffer = b""

    def readline(self):
        while b"\n" not in self.buffer:
            data = self.connection.recv(65536)
            if not data:
                return b""
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"


class ImapScript:
    """A scripted IMAP server (a SocketServer handler) that records each command line it hears in ``heard``.

    It greets with ``[CAPABILITY <capabilities>]`` unless `greeting_capabilities`
    is False, answers CAPABILITY, STARTTLS (upgrading with the server SSLContext
    `starttls`, saying `starttls_ok` first; then `capabilities_after_tls`
    apply), LOGIN and AUTHENTICATE
    (accepted), EXAMINE (2 messages, `folders` exist), LIST (`folders`,
    delimiter `delimiter`), NAMESPACE (`namespace`, a personal prefix, when
    given) and LOGOUT. ``answers`` maps an upper-case command name to
    ``answer(tag, line) -> bytes or None`` (None hangs up), replacing the
    default; every line ends with `line_end`. After STARTTLS the negotiated
    ALPN protocol is kept in ``alpn`` (None when the client offered none).
    """

    def __init__(self, capabilities=b"IMAP4rev1 AUTH=PLAIN", *, greeting_capabilities=True, starttls=None,
                 capabilities_after_tls=None, starttls_ok=b"OK Begin TLS negotiation now", folders=("INBOX", "Archive"),
                 delimiter=b"/", namespace=None, answers=None, line_end=b"\r\n"):
        self.capabilities = capabilities
        self.starttls_ok = starttls_ok
        self.greeting_capabilities = greeting_capabilities
        self.starttls = starttls
        self.capabilities_after_tls = capabilities_after_tls or capabilities
        self.folders = folders
        self.delimiter = delimiter
        self.namespace = namespace
        self.answers = answers or {}
        self.line_end = line_end
        self.heard = []
        self.alpn = "not negotiated"

    def __call__(self, connection, stop):
        if isinstance(connection, ssl.SSLSocket):
            self.alpn = connection.selected_alpn_protocol()
        code = b"[CAPABILITY " + self.capabilities + b"] " if self.greeting_capabilities else b""
        self._send(connection, b"* OK " + code + b"scripted server ready")
        lines = _Lines(connection)
        try:
            while True:
                line = lines.readline()
                if not line:
                    return
                tag, _, command = line.rstrip(b"\r\n").partition(b" ")
                name = command.split(b" ")[0].upper().decode()
                self.heard.append(command)
                if name in self.answers:
                    reply = self.answers[name](tag, command)
                    if reply is None:
                        return
                    connection.sendall(reply)
                    continue
                if name == "STARTTLS" and self.starttls is not None:
                    self._send(connection, tag + b" " + self.starttls_ok)
                    connection = lines.connection = self.starttls.wrap_socket(connection, server_side=True)
                    self.alpn = connection.selected_alpn_protocol()
                    self.capabilities = self.capabilities_after_tls
                    lines.buffer = b""  # anything sent before TLS was injected: drop it, as a server must
                    continue
                if name == "AUTHENTICATE":
                    self._send(connection, b"+ ")
                    lines.readline()
                for reply in self._replies(tag, name):
                    self._send(connection, reply)
                if name == "LOGOUT":
                    return
        finally:
            connection.close()

    def _replies(self, tag, name):
        done = tag + b" OK " + name.encode() + b" done"
        if name == "CAPABILITY":
            return [b"* CAPABILITY " + self.capabilities, done]
        if name in ("LOGIN", "AUTHENTICATE"):
            return [done]
        if name == "EXAMINE":
            return [b"* FLAGS ()", b"* 2 EXISTS", b"* 0 RECENT", tag + b" OK [READ-ONLY] EXAMINE done"]
        if name == "LIST":
            listed = [b'* LIST () "' + self.delimiter + b'" "' + folder.encode() + b'"' for folder in self.folders]
            return [*listed, done]
        if name == "NAMESPACE" and self.namespace is not None:
            return [b'* NAMESPACE (("' + self.namespace.encode() + b'" "' + self.delimiter + b'")) NIL NIL', done]
        if name == "LOGOUT":
            return [b"* BYE see you", done]
        return [tag + b" BAD not scripted"]

    def _send(self, connection, line):
        connection.sendall(line + self.line_end)

    def sent(self, name):
        """How many command lines named `name` (bytes, upper case) the server heard."""
        return sum(1 for command in self.heard if command.split(b" ")[0].upper() == name)


def pop3_server(answers, capabilities=b"USER\r\nSASL PLAIN\r\n", line_end=b"\r\n", heard=None):
    """A POP3 handler: greet, answer CAPA with `capabilities` (CRLF-terminated lines), then each command
    with `answers` ({command: bytes, or None to hang up}; -ERR for the rest), lines ending in `line_end`.
    Each command line is appended to `heard` (a list) when given."""
    def handle(connection, stop):
        send = lambda data: connection.sendall(data.replace(b"\r\n", line_end))  # noqa: E731
        send(b"+OK purpose-built POP3 ready\r\n")
        for line in connection.makefile("rb"):
            if heard is not None:
                heard.append(line.rstrip(b"\r\n"))
            command = line.split(b" ")[0].upper().strip()
            if command == b"CAPA":
                send(b"+OK\r\n" + capabilities + b".\r\n")
                continue
            answer = answers.get(command, b"-ERR unknown\r\n")
            if answer is None:
                connection.close()
                return
            send(answer)
    return handle


def http_answer(status_line, body=b"", content_type=b"application/json", pause=0.0):
    """A handler that reads a request, waits `pause` seconds, and answers `status_line` with `body`
    (bytes, or a callable from the request bytes to the body)."""
    def handle(connection, stop):
        request = connection.recv(65536)
        if stop.wait(pause):
            return
        content = body(request) if callable(body) else body
        connection.sendall(b"HTTP/1.1 " + status_line + b"\r\nContent-Type: " + content_type +
                           b"\r\nContent-Length: " + str(len(content)).encode() +
                           b"\r\nConnection: close\r\n\r\n" + content)
        stop.wait()
    return handle


def http_drip(connection, stop):
    """Read a request, then answer one byte every 0.3 s, forever."""
    connection.recv(65536)
    while not stop.wait(0.3):
        connection.send(b"H")


def http_huge(connection, stop):
    """Read a request, then announce 400 MB and send it."""
    connection.recv(65536)
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400000000\r\n\r\n")
    chunk = b" " * 65536
    while not stop.is_set():
        connection.sendall(chunk)


# Running connection tests against these servers and Dovecot.

# Every test must end within this many seconds (plus the promise's one second); short, so hostile servers are quick.
DEADLINE = 2.0
TEST_POLICY = probe.Policy.parse(LOOPBACK_POLICY["ports"], LOOPBACK_POLICY["networks"])
PLAINTEXT_POLICY = probe.Policy.parse(LOOPBACK_POLICY["ports"], LOOPBACK_POLICY["networks"], plaintext=True)
# What the application calls its settings, as it passes them to probe.
SETTING_NAMES = probe.SettingNames(
    ca_file="MAILKEEP_CA_FILE", allowed_networks="MAILKEEP_ALLOWED_NETWORKS",
    allowed_ports="MAILKEEP_ALLOWED_PORTS", allow_insecure="MAILKEEP_ALLOW_INSECURE",
)


def run(settings, ca_file=None, policy=TEST_POLICY, list_folders=False, deadline=DEADLINE, **prober_options):
    """Run a test and check the promise every test makes: done within the deadline plus one second.

    Done means the worker too: its slot must be free again by then, not only the answer given.
    `prober_options` go to probe.Prober (greeting_timeout, advice, setting_names).
    """
    slots = threading.BoundedSemaphore(1)
    started = time.monotonic()
    prober = probe.Prober(deadline=deadline, ca_file=ca_file and str(ca_file), policy=policy,
                          **{"setting_names": SETTING_NAMES, **prober_options})
    result = prober.run(settings, slots=slots, list_folders=list_folders)
    while not slots.acquire(timeout=0.05):
        assert time.monotonic() - started <= deadline + 1, "the worker still ran a second after the deadline"
    assert time.monotonic() - started <= deadline + 1
    return result


def settings_for(server, protocol="IMAP", security="ssl_tls", host="localhost", port=None, **values):
    """Settings for the test Dovecot (or a purpose-built server's `port`), the canary as password."""
    if port is None:
        port = {
            ("IMAP", "ssl_tls"): server.imaps_port, ("IMAP", "starttls"): server.imap_port,
            ("POP3", "ssl_tls"): server.pop3s_port, ("POP3", "starttls"): server.pop3_port,
        }[(protocol, security)]
    values = {"username": MAILBOX_USER, "password": CANARY, **values}
    return probe.Settings(protocol=protocol, host=host, port=port, security=security, **values)


def local(port, protocol="IMAP", security="ssl_tls", host="127.0.0.1", **values):
    """Settings for a purpose-built server at `host`:`port`, the canary as password."""
    values = {"username": MAILBOX_USER, "password": CANARY, **values}
    return probe.Settings(protocol, host, port, security, **values)


def oauth2(token_server, client_id, client_secret):
    """The OAuth2 part of Settings for the test token endpoint."""
    return {"auth": protocols.OAUTH2, "password": "", "client_id": client_id, "client_secret": client_secret,
            "token_url": token_server.token_url}


def outcomes(result):
    """{step name: outcome} of a Result."""
    return {step.name: step.outcome for step in result.steps}


@contextlib.contextmanager
def purpose_built(handle, tls=None):
    """A SocketServer for `handle` (implicit TLS with `tls` = (certificate, key)); yields its port."""
    with SocketServer(handle, tls=tls) as server:
        yield server.port


def shown_text(result):
    """Everything a Result shows: its dict (steps, cause, folders, certificate) and its summary, as text."""
    return f"{result.as_dict()}\n{result.summary}"


def leaked_runs(text, secret, run_length=4):
    """The runs of `run_length` characters of `secret` that can be read in `text`: as they are, once
    URL-decoded or backslash-unescaped, or in any base64 run decoded at any alignment. [] when none."""
    readings = [text, unquote_plus(text), re.sub(r"\\+(.)", r"\1", text)]
    for token in re.findall(r"[A-Za-z0-9+/_=-]{6,}", text):
        for start in range(4):
            chunk = token[start:]
            chunk = chunk[:len(chunk) - len(chunk) % 4]
            for decode in (base64.b64decode, base64.urlsafe_b64decode):
                try:
                    readings.append(decode(chunk).decode("latin-1"))
                except (binascii.Error, ValueError):
                    pass
    runs = {secret[start:start + run_length] for start in range(len(secret) - run_length + 1)}
    return sorted(run for run in runs if any(run in reading for reading in readings))
