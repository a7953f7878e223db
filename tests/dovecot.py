"""A throwaway Dovecot IMAP/POP3 server on loopback for tests and demos.

Plain Python (no pytest), so a pytest fixture and a demo script can share it::

    with Dovecot(tmp_path / "dovecot") as server:
        client = IMAPClient(server.host, port=server.imaps_port,
                            ssl_context=ssl.create_default_context(cafile=server.ca_file))
        client.login(DEFAULT_USER.username, DEFAULT_USER.password)

Every user gets the folders ``INBOX`` (holding ``INBOX_MESSAGE_COUNT`` messages),
``Archive`` and ``Team Inbox`` (both empty).
"""

from __future__ import annotations

import contextlib
import datetime
import email.message
import email.utils
import grp
import ipaddress
import mailbox
import math
import os
import pathlib
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

INBOX_MESSAGE_COUNT = 3
"""Number of messages in every user's INBOX after start()."""

FOLDERS = ("INBOX", "Archive", "Team Inbox")
"""Folder names every user has, exactly as IMAP LIST reports them."""

STARTUP_TIMEOUT = 10.0
"""Seconds start() waits for all greetings, and stop() waits for processes to exit."""


@dataclass
class MailUser:
    """A mail account; ``username`` is the full IMAP/POP3 login, e.g. ``alice@example.test``."""

    username: str
    password: str


DEFAULT_USER = MailUser("alice@example.test", "correct horse battery staple")


class Dovecot:
    """A throwaway Dovecot IMAP/POP3 server on loopback. Use as a context manager or call start()/stop().

    Attributes (ports are set by start()):
        host: the listen address, e.g. "127.0.0.1".
        imaps_port, pop3s_port: implicit TLS (RFC 8314); None when ``ssl=False``.
        imap_port, pop3_port: plain, offering STARTTLS/STLS when ``ssl=True``.
        ca_file: PEM of the CA that signed the server certificate (written when ``ssl=True``).
        log_file: dovecot.log, including the master's stderr.
        users: the accounts, each with the folders in FOLDERS.

    ``workdir`` receives dovecot.conf, dovecot.log, ca.pem and server.pem/server.key (0600).
    Sockets, the passwd file and mail homes live in a fresh short directory under the
    system temp dir (removed by stop()): unix socket paths are limited to 108 bytes, and
    as root the processes that drop to ``nobody`` must be able to reach them, which
    pytest's ``/tmp/pytest-of-root`` (mode 0700) would forbid. As root the master (and
    config/log) run as root, login/auth/mail processes as ``nobody``/``nogroup`` (Dovecot
    refuses root for those); otherwise everything runs as the current user.

    The default ``cert_names`` do not cover other listen addresses such as 127.0.0.2;
    pass them explicitly if clients there verify the hostname.

    A wrong password fails with AUTHENTICATIONFAILED after ~0.5 s, not at once: even with
    ``auth_failure_delay = 0`` and the auth penalty off, Dovecot 2.3 flushes failure
    replies on a fixed 500 ms timer.

    ``disable_plaintext_auth = yes`` is kept, but Dovecot treats a connection as secure
    when its remote IP equals its local IP. Linux sends from 127.0.0.1 to any 127/8
    address, so a local client is "secure" only on 127.0.0.1. Observed CAPABILITY on the
    plain IMAP port:

    - 127.0.0.1, ssl=True: ``IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+
      STARTTLS AUTH=PLAIN AUTH=LOGIN`` (plaintext login allowed before STARTTLS).
    - 127.0.0.1, ssl=False: as above without STARTTLS.
    - 127.0.0.2, ssl=True: ``... LITERAL+ STARTTLS LOGINDISABLED`` (no AUTH= until STARTTLS).
    - 127.0.0.2, ssl=False: ``IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+
      LOGINDISABLED``; LOGIN answers ``NO [PRIVACYREQUIRED]``. POP3 CAPA likewise lacks
      STLS and USER.

    With ``oauth2_introspection_url`` (an ``http://IP:port/path`` such as
    ``TokenServer.introspection_url``) bearer tokens are checked by a second passdb
    (``driver = oauth2``), which POSTs ``token=<t>&client_id=&client_secret=`` and accepts
    ``{"active": true, "username": <the login>}``; a token reported for another user fails.
    CAPABILITY gains ``AUTH=XOAUTH2 AUTH=OAUTHBEARER``, POP3 CAPA ``SASL PLAIN LOGIN XOAUTH2
    OAUTHBEARER``; password logins are unchanged. A rejected token is answered (after ~0.5 s)
    with a continuation ``+ <base64 JSON>`` (XOAUTH2 ``{"status":"401","schemes":"bearer",
    "scope":"mail"}``, OAUTHBEARER ``{"status":"invalid_token"}``); whatever line the client
    sends next (an empty one per XOAUTH2, ``AQ==`` per RFC 7628) draws
    ``<tag> NO [AUTHENTICATIONFAILED] Authentication failed.`` in IMAP and
    ``-ERR [AUTH] Authentication failed.`` in POP3.
    """

    def __init__(
        self,
        workdir: pathlib.Path,
        *,
        listen: str = "127.0.0.1",
        users: list[MailUser] | None = None,
        ssl: bool = True,
        cert_names: tuple[str, ...] = ("localhost", "127.0.0.1"),
        cert_expired: bool = False,
        binary: str = "/usr/sbin/dovecot",
        extra_config: str = "",
        oauth2_introspection_url: str | None = None,
        namespace_prefix: str = "",
        previous_passwords: bool = False,
    ):
        """``users`` defaults to ``[DEFAULT_USER]``; ``cert_names`` become the server
        certificate's subjectAltName (IP literals as IP addresses, others as DNS names);
        ``cert_expired`` makes that certificate's validity end yesterday; ``extra_config``
        is appended verbatim to the generated dovecot.conf; ``oauth2_introspection_url``
        (e.g. ``TokenServer.introspection_url``) enables XOAUTH2/OAUTHBEARER logins;
        ``namespace_prefix`` ``"INBOX."`` puts every folder under INBOX, as Courier and
        Cyrus do (LIST then shows ``INBOX``, ``INBOX.Archive``, ``INBOX.Team Inbox``);
        ``previous_passwords`` adds a second passwd-file passdb, so a password replaced with
        ``set_password(..., keep_previous=True)`` keeps working (an app password's overlap)."""
        self.workdir = pathlib.Path(workdir)
        self.host = listen
        self.users = list(users) if users is not None else [DEFAULT_USER]
        for user in self.users:
            if any(c in user.username + user.password for c in ":\n"):
                raise ValueError(f"passwd-file cannot hold ':' or newlines: {user!r}")
        self.ssl = ssl
        self.cert_names = cert_names
        self.cert_expired = cert_expired
        self.binary = binary
        self.extra_config = extra_config
        self.oauth2_introspection_url = oauth2_introspection_url
        self.namespace_prefix = namespace_prefix
        self.previous_passwords = previous_passwords
        self._previous: dict[str, str] = {}
        self._account: pwd.struct_passwd | None = None
        self._generation = 0
        self.ca_file = self.workdir / "ca.pem"
        self.log_file = self.workdir / "dovecot.log"
        self.imap_port: int | None = None
        self.imaps_port: int | None = None
        self.pop3_port: int | None = None
        self.pop3s_port: int | None = None
        self._proc: subprocess.Popen | None = None
        self._rundir: pathlib.Path | None = None

    def __enter__(self) -> Dovecot:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> Dovecot:
        """Write config, certificates and mailboxes, start Dovecot and wait until every port
        greets. Raises RuntimeError (with the log tail) if that takes over STARTUP_TIMEOUT s."""
        if self._proc is not None:
            raise RuntimeError("Dovecot already started")
        if os.geteuid() == 0:
            account = pwd.getpwnam("nobody")
        else:
            account = pwd.getpwuid(os.geteuid())
        group = grp.getgrgid(account.pw_gid).gr_name
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "state").mkdir(exist_ok=True)
        self.log_file.write_text("")
        self._rundir = pathlib.Path(tempfile.mkdtemp(prefix="dovecot-"))
        try:
            self._rundir.chmod(0o755)
            self.imap_port, self.imaps_port, self.pop3_port, self.pop3s_port = self._free_ports(4)
            if self.ssl:
                write_certificates(self.workdir, self.cert_names, expired=self.cert_expired)
            else:
                self.imaps_port = self.pop3s_port = None
            if self.oauth2_introspection_url:
                self._write_oauth2_args()
            self._write_mail(account)
            conf = self.workdir / "dovecot.conf"
            conf.write_text(self._config(account, group))
            with open(self.log_file, "ab") as log:
                # Own session so stop() can signal Dovecot's whole process tree at once.
                self._proc = subprocess.Popen(
                    [self.binary, "-F", "-c", str(conf)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                )
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Terminate Dovecot and all its children and delete the runtime directory. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            # Signalling the whole group is much faster than letting the master stop its
            # children (~1 s), at the cost of "Killed with signal 15" warnings in the log.
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                if _group_gone(proc, STARTUP_TIMEOUT):
                    break
        if self._rundir is not None:
            shutil.rmtree(self._rundir, ignore_errors=True)
            self._rundir = None

    def set_password(self, username: str, password: str, *, keep_previous: bool = False) -> None:
        """Change the password of ``username`` while Dovecot runs: the next login must use it. With
        ``keep_previous`` (needs ``previous_passwords=True``) the old one keeps working too until
        ``forget_previous_password``, as a provider's old app password does while a new one is rolled out.

        Dovecot's passwd-file passdb re-reads a file whose modification time changed, so each
        change also moves the files' times on by a whole second (the resolution it compares)."""
        user = next(user for user in self.users if user.username == username)
        if any(c in password for c in ":\n"):
            raise ValueError("passwd-file cannot hold ':' or newlines")
        if keep_previous:
            if not self.previous_passwords:
                raise RuntimeError("start Dovecot with previous_passwords=True to keep a previous password")
            self._previous[username] = user.password
        else:
            self._previous.pop(username, None)
        user.password = password
        self._write_users()

    def forget_previous_password(self, username: str) -> None:
        """The previous password of ``username`` (see ``set_password``) stops working."""
        self._previous.pop(username, None)
        self._write_users()

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of dovecot.log (master stderr included)."""
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def _free_ports(self, count: int) -> list[int]:
        family = socket.AF_INET6 if ipaddress.ip_address(self.host).version == 6 else socket.AF_INET
        # Hold all sockets open together so the ports are distinct.
        socks = [socket.socket(family, socket.SOCK_STREAM) for _ in range(count)]
        try:
            for s in socks:
                s.bind((self.host, 0))
            return [s.getsockname()[1] for s in socks]
        finally:
            for s in socks:
                s.close()

    def _write_oauth2_args(self) -> None:
        # In the runtime directory because the auth process (``nobody`` as root) reads it.
        (self._rundir / "oauth2.conf.ext").write_text(
            "introspection_mode = post\n"
            f"introspection_url = {self.oauth2_introspection_url}\n"
            "username_attribute = username\n"
            "active_attribute = active\n"
            "active_value = true\n"
            "force_introspection = yes\n"
        )

    def _write_mail(self, account: pwd.struct_passwd) -> None:
        self._account = account
        for user in self.users:
            home = self._rundir / "home" / user.username
            home.mkdir(parents=True)
            maildir = mailbox.Maildir(home / "Maildir", create=True)
            for folder in FOLDERS[1:]:
                maildir.add_folder(folder)
            for n in range(1, INBOX_MESSAGE_COUNT + 1):
                msg = email.message.EmailMessage()
                msg["From"] = "Bob <bob@example.test>"
                msg["To"] = user.username
                msg["Subject"] = f"Test message {n}"
                msg["Date"] = email.utils.format_datetime(
                    datetime.datetime(2024, 1, n, 12, 0, tzinfo=datetime.timezone.utc))
                msg["Message-ID"] = f"<test-{n}@example.test>"
                msg.set_content(f"This is test message {n}.\n")
                maildir.add(msg)
        self._write_users()
        for path in [self._rundir, *self._rundir.rglob("*")]:
            os.chown(path, account.pw_uid, account.pw_gid)

    def _write_users(self) -> None:
        """Write the passwd-files: every user's password, and the previous passwords still accepted."""
        account = self._account
        for name, passwords in (("users", {user.username: user.password for user in self.users}),
                                ("previous-users", self._previous)):
            lines = [
                f"{username}:{{PLAIN}}{password}:{account.pw_uid}:{account.pw_gid}::"
                f"{self._rundir / 'home' / username}::\n"
                for username, password in passwords.items()
            ]
            path = self._rundir / name
            temporary = path.with_suffix(".new")
            temporary.write_text("".join(lines))
            os.chown(temporary, account.pw_uid, account.pw_gid)
            self._generation += 1
            moment = time.time() + self._generation  # a whole second later than any time before
            os.utime(temporary, (moment, moment))
            temporary.replace(path)  # at once: Dovecot never reads half a file
        # Dovecot looks at a passwd-file's time at most once a second (db-passwd-file.c, passwd_file_sync): a
        # login in the same second as the last one could still see the old file. From the next second on it
        # sees this one, so the change is in effect when this returns.
        time.sleep(math.ceil(time.time()) - time.time() + 0.01)

    def _config(self, account: pwd.struct_passwd, group: str) -> str:
        if self.ssl:
            ssl_conf = (
                f"ssl = yes\nssl_cert = <{self.workdir / 'server.pem'}\n"
                f"ssl_key = <{self.workdir / 'server.key'}\nssl_min_protocol = TLSv1.2\n"
            )
        else:
            ssl_conf = "ssl = no\n"
        users = self._rundir / "users"
        namespace = f"  prefix = {self.namespace_prefix}\n  separator = .\n" if self.namespace_prefix else ""
        mechanisms, password_mechanisms, oauth2_passdb, previous_passdb = "plain login", "", "", ""
        if self.oauth2_introspection_url:
            mechanisms += " xoauth2 oauthbearer"
            # Otherwise passwd-file would also be asked to check bearer tokens as passwords.
            password_mechanisms = "  mechanisms = plain login\n"
            oauth2_passdb = (
                "passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
                f"  args = {self._rundir / 'oauth2.conf.ext'}\n}}\n"
            )
        if self.previous_passwords:
            # Asked when the current password did not match (passdb's default result_failure = continue).
            previous_passdb = (
                f"passdb {{\n  driver = passwd-file\n{password_mechanisms}"
                f"  args = scheme=PLAIN username_format=%u {self._rundir / 'previous-users'}\n}}\n"
            )
        return f"""\
# Generated by tests/dovecot.py; self-contained (does not include /etc/dovecot).
protocols = imap pop3
listen = {self.host}
base_dir = {self._rundir / "run"}
state_dir = {self.workdir / "state"}
log_path = {self.log_file}
info_log_path = {self.log_file}
default_internal_user = {account.pw_name}
default_internal_group = {group}
default_login_user = {account.pw_name}
first_valid_uid = {account.pw_uid}
first_valid_gid = {account.pw_gid}
disable_plaintext_auth = yes
auth_mechanisms = {mechanisms}
auth_failure_delay = 0
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
{namespace}}}
{ssl_conf}
passdb {{
  driver = passwd-file
{password_mechanisms}  args = scheme=PLAIN username_format=%u {users}
}}
{previous_passdb}{oauth2_passdb}userdb {{
  driver = passwd-file
  args = username_format=%u {users}
}}
# chroot needs root; empty keeps the same config working rootless.
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = {self.imaps_port or 0}
    ssl = yes
  }}
}}
service pop3-login {{
  chroot =
  inet_listener pop3 {{
    port = {self.pop3_port}
  }}
  inet_listener pop3s {{
    port = {self.pop3s_port or 0}
    ssl = yes
  }}
}}
# Mode 0 disables the auth penalty, which would otherwise grow the delay per failure.
service anvil {{
  chroot =
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
{self.extra_config}
"""

    def _wait_ready(self) -> None:
        # Verification is off: expired or mismatched certificates are deliberate test cases.
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
        checks = [(self.imap_port, False, b"* OK"), (self.pop3_port, False, b"+OK")]
        if self.ssl:
            checks += [(self.imaps_port, True, b"* OK"), (self.pop3s_port, True, b"+OK")]
        deadline = time.monotonic() + STARTUP_TIMEOUT
        for port, use_tls, greeting in checks:
            while True:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"Dovecot exited with {self._proc.returncode}:\n{self.log_tail()}")
                try:
                    with socket.create_connection((self.host, port), timeout=1) as sock:
                        conn = tls.wrap_socket(sock) if use_tls else sock
                        with conn, conn.makefile("rb") as reader:
                            if reader.readline().startswith(greeting):
                                break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Dovecot did not greet on {self.host}:{port}:\n{self.log_tail()}")
                time.sleep(0.05)


def write_certificates(
    directory: pathlib.Path, names: tuple[str, ...], *, expired: bool = False
) -> tuple[pathlib.Path, pathlib.Path, pathlib.Path]:
    """Write a fresh CA and a server certificate it signed into ``directory`` (which must exist);
    return their paths ``(ca.pem, server.pem, server.key)``, the key PKCS#8 PEM, mode 0600.

    ``names`` become the certificate's subjectAltName (IP literals as IP addresses, others as
    DNS names; the first is also the CN). Keys are ECDSA P-256. The CA is valid from a day ago
    for 365 days; the server certificate from an hour ago for 30 days, or with ``expired``
    from 30 days ago until yesterday. Load it with ``ssl.SSLContext.load_cert_chain(cert, key)``
    for a purpose-built TLS server that clients trusting ``ca.pem`` accept.
    """
    directory = pathlib.Path(directory)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Dovecot test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    if expired:
        not_before, not_after = now - datetime.timedelta(days=30), now - datetime.timedelta(days=1)
    else:
        not_before, not_after = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=30)
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.unlink(missing_ok=True)
    # Created 0600 rather than chmod-ed afterwards so the key is never world-readable.
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ))
    return ca_file, cert_file, key_file


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign,
        encipher_only=False, decipher_only=False,
    )


def _group_gone(proc: subprocess.Popen, timeout: float) -> bool:
    """Wait up to ``timeout`` s until no process is left in ``proc``'s process group."""
    deadline = time.monotonic() + timeout
    while True:
        proc.poll()  # reap the master, or its zombie would keep the group alive
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
