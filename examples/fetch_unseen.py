#!/usr/bin/env python3
"""Count the unseen messages of a mailbox whose connection Mailkeep keeps: an example of a tool that reads
its credentials from Mailkeep instead of a config file.

    export MAILKEEP_TOKEN=mks_...        # a service account's token (Service accounts page)
    python examples/fetch_unseen.py --mailkeep https://mailkeep.example.com --credential 7
    python examples/fetch_unseen.py --mailkeep https://mailkeep.example.com --alias support@example.com \\
        --every 60

Each round it logs in with imapclient (the password, or the OAuth2 access token Mailkeep fetched), opens the
folder read-only, counts ``UNSEEN`` (RFC 3501 section 6.4.4), logs out and prints one line:
``INBOX: 3 unseen (version 2)``. It needs nothing but imapclient and the standard library.

How it keeps working through a rotation:

* It reads the connection from Mailkeep (``GET /api/v1/credentials/{id}/connection``, or the alias
  routes) at the start and again when what it read is older than ``--refresh`` seconds (default 300:
  like a lease, keep it shorter than the grace period of your rotations), so a rotation reaches it within
  that time without anything failing, because the server still takes the old secret meanwhile.
* On an authentication failure it reads the connection at once and, when Mailkeep now serves another
  version, logs in again with it (once). So a rotation done in another order (the server changed before
  Mailkeep) costs one failed login, not a stop.
* Listening for ``secret.rotated``: Mailkeep announces every rotation on its notification channels, a
  webhook with the body ``{"type": "secret.rotated", "timestamp": "...Z", "data": {"credential": {"id": 7,
  "name": ..., "url": ...}, "actor": ..., "version": n, "secret": "password", "previous_version": n - 1 or null,
  "previous_readable_until": "...Z" or null}}`` (never a secret). A tool that receives it calls
  ``Connection.refresh()`` (here: send the process SIGHUP, which this script takes as "read the connection
  again before the next round"), so it switches at once instead of within --refresh.

The token comes from the environment (``MAILKEEP_TOKEN``) or a file (``--token-file``), never from the
command line, where other users of the machine could read it. Mailkeep is reached over https (plain http
only on this machine). Nothing secret is printed.
"""

import argparse
import json
import os
import signal
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from imapclient import IMAPClient
from imapclient.exceptions import LoginError

TIMEOUT_SECONDS = 30
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


class Unavailable(Exception):
    """Mailkeep did not answer a connection; the message says why (never a secret)."""


class Connection:
    """The connection to one credential (or alias) as Mailkeep serves it, read again when older than
    `refresh` seconds, or when ``refresh()`` was called (an authentication failure, ``secret.rotated``).

    `mailkeep` is Mailkeep's base URL, `path` the API path of the connection
    (``/api/v1/credentials/7/connection``), `token` the service token, `context`
    an ssl.SSLContext for Mailkeep (None: the system's trust store).
    """

    def __init__(self, mailkeep, path, token, refresh=300.0, context=None, clock=time.monotonic):
        parts = urllib.parse.urlsplit(mailkeep)
        if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in LOCAL_HOSTS):
            raise SystemExit("--mailkeep must be an https:// URL (plain http only on this machine): the token "
                             "and the secrets cross the network")
        self.url = mailkeep.rstrip("/") + path
        self.token = token
        self.refresh_seconds = refresh
        self.context = context
        self.clock = clock
        self.settings = None
        self.read_at = None

    def refresh(self):
        """Read the connection again before it is next used."""
        self.read_at = None

    def current(self):
        """The connection settings (a dict, the secret included), read from Mailkeep if they are stale."""
        if self.read_at is None or self.clock() - self.read_at >= self.refresh_seconds:
            self.settings = self._read()
            self.read_at = self.clock()
        return self.settings

    def _read(self):
        request = urllib.request.Request(self.url, headers={"Authorization": f"Bearer {self.token}",
                                                            "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS, context=self.context) as answer:
                return json.load(answer)
        except urllib.error.HTTPError as error:
            try:
                why = json.load(error).get("error", "")
            except ValueError:
                why = ""
            raise Unavailable(f"Mailkeep answered {error.code}: {why}") from None
        except (urllib.error.URLError, TimeoutError) as error:
            raise Unavailable(f"Mailkeep could not be reached: {getattr(error, 'reason', error)}") from None


def count_unseen(settings, context=None):
    """Log in with `settings` (a connection answer), count UNSEEN in its folder read-only, log out; return
    the count. Raises imapclient's LoginError when the server refuses the login."""
    if settings["protocol"] != "IMAP":
        raise SystemExit(f"{settings['name']} is a {settings['protocol']} mailbox; counting unseen needs IMAP")
    security = settings["security"]
    client = IMAPClient(settings["host"], port=settings["port"], ssl=security == "ssl_tls", ssl_context=context,
                        timeout=TIMEOUT_SECONDS)
    try:
        if security == "starttls":
            client.starttls(context)
        if "access_token" in settings:
            client.oauth2_login(settings["username"], settings["access_token"])
        else:
            client.login(settings["username"], settings["password"])
        client.select_folder(settings["folder"], readonly=True)
        return len(client.search("UNSEEN"))
    finally:
        try:
            client.logout()
        except Exception:  # noqa: BLE001 (a connection the server already closed)
            client.shutdown()


def check(connection, context=None):
    """One round: count the unseen messages; on an authentication failure read the connection again and, if
    Mailkeep now serves another version (or, for an OAuth2 login, a new access token: every read gets a fresh
    one), try once more with it. Returns (count, settings used)."""
    settings = connection.current()
    try:
        return count_unseen(settings, context), settings
    except LoginError:
        connection.refresh()
        fresh = connection.current()
        if fresh.get("version") == settings.get("version") and "access_token" not in fresh:
            raise  # the same secret again: retrying would only fail again
        return count_unseen(fresh, context), fresh


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mailkeep", default=os.environ.get("MAILKEEP_URL"), required="MAILKEEP_URL" not in os.environ,
                        help="Mailkeep's address, e.g. https://mailkeep.example.com (or MAILKEEP_URL)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--credential", type=int, help="the credential's id")
    which.add_argument("--alias", help="an alias address whose credential to read")
    parser.add_argument("--token-file", help="a file holding the service token (else MAILKEEP_TOKEN)")
    parser.add_argument("--every", type=float, default=0, help="seconds between rounds (0: one round)")
    parser.add_argument("--times", type=int, default=0, help="stop after this many rounds (0: never, with --every)")
    parser.add_argument("--refresh", type=float, default=300, help="read the connection again when it is older "
                                                                   "than this many seconds (default 300)")
    parser.add_argument("--mailkeep-ca", help="a PEM file of CAs to trust for Mailkeep's certificate")
    parser.add_argument("--imap-ca", help="a PEM file of CAs to trust for the mail server's certificate")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    if args.token_file:
        with open(args.token_file) as handle:
            token = handle.read().strip()
    else:
        token = os.environ.get("MAILKEEP_TOKEN", "").strip()
    if not token:
        raise SystemExit("Set MAILKEEP_TOKEN (or --token-file) to a service account's token")
    path = (f"/api/v1/credentials/{args.credential}/connection" if args.credential is not None
            else f"/api/v1/aliases/by-address/{urllib.parse.quote(args.alias, safe='@')}/connection")
    mailkeep_context = ssl.create_default_context(cafile=args.mailkeep_ca) if args.mailkeep_ca else None
    imap_context = ssl.create_default_context()
    if args.imap_ca:
        imap_context.load_verify_locations(cafile=args.imap_ca)
    connection = Connection(args.mailkeep, path, token, refresh=args.refresh, context=mailkeep_context)
    # secret.rotated, delivered however the tool listens, ends here: read the connection again.
    signal.signal(signal.SIGHUP, lambda *_: connection.refresh())
    rounds = args.times or (1 if not args.every else None)
    done = 0
    while rounds is None or done < rounds:
        if done:
            time.sleep(args.every)
        try:
            count, settings = check(connection, imap_context)
        except (Unavailable, LoginError) as error:
            print(f"failed: {error}", file=sys.stderr, flush=True)
            if not args.every:
                return 1
        else:
            print(f"{settings['folder']}: {count} unseen (version {settings.get('version')})", flush=True)
        done += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
