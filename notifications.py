"""Notifications: channels, the outbox of events, delivery with retries, and the log of every attempt.

``publish(kind, credential=None, *, details, actor=None)`` writes an event into
the outbox inside the caller's transaction: if the change that caused it rolls
back, so does the event. The worker later calls ``deliver_due(now)``, which
fans each new event out to the channels that hear about its group (one
delivery row per channel) and tries every delivery that is due, each claimed
by one worker (a compare-and-set on ``claimed_until``), outside any
transaction. A failed attempt is retried with exponential backoff
(BACKOFF_SECONDS doubling, at most BACKOFF_CAP_SECONDS apart) until
RETRY_WINDOW after the event; then the delivery is "failed". Every attempt is
logged (DeliveryAttempt) and shown on the Notifications page.

Channels:

- **webhook**: a JSON POST signed as the Standard Webhooks specification says
  (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``; the
  ``standardwebhooks`` package signs), with the channel's sealed signing
  secret. The target's host is resolved once, every address must pass the
  outbound policy's address checks (probe.Policy: never link-local or
  metadata addresses; private ones only in MAILKEEP_ALLOWED_NETWORKS), only a
  checked address is dialled, TLS verifies the host name, redirects are not
  followed, the answer is read up to MAX_ANSWER_BYTES, and a watchdog cuts
  the connection at MAILKEEP_NOTIFICATION_TIMEOUT: a hostile target costs
  its own retries and nothing else.
- **email**: through the one SMTP relay (models.SmtpRelay; SSL/TLS or
  STARTTLS, RFC 8314), whose password is sealed and write-only.

No notification carries a secret: events hold names, causes and hints.
"""

import base64
import json
import logging
import secrets
import smtplib
import socket
import ssl
import threading
import time
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import formataddr
from http.client import HTTPConnection, HTTPException
from urllib.parse import urlsplit

from flask import current_app
from peewee import IntegrityError
from standardwebhooks.webhooks import Webhook

import audit
import health
import keys
from database import db, exclusive
from models import (
    ChannelGroup,
    DeliveryAttempt,
    NotificationChannel,
    NotificationDelivery,
    NotificationEvent,
    SmtpRelay,
    utcnow,
)
from probe import network

log = logging.getLogger(__name__)

KINDS = (health.CREDENTIAL_FAILING, health.CREDENTIAL_RECOVERED, health.CERTIFICATE_EXPIRING,
         health.SECRET_EXPIRING, health.ROTATION_DUE)
# Events other features publish (service accounts' secret versions), delivered like these.
# A credential's secret was rotated (services.versions.announce_rotation): tools that use it read it again.
SECRET_ROTATED = "secret.rotated"
OTHER_KINDS = (SECRET_ROTATED, "test")
TITLES = {
    health.CREDENTIAL_FAILING: "is failing", health.CREDENTIAL_RECOVERED: "works again",
    health.CERTIFICATE_EXPIRING: "has a server certificate that expires soon",
    health.SECRET_EXPIRING: "has a client secret that expires soon", health.ROTATION_DUE: "is due for rotation",
    "secret.rotated": "had its secret rotated", "test": "(a test notification)",
}
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
BACKOFF_SECONDS = 30
BACKOFF_CAP_SECONDS = 2 * 3600
RETRY_WINDOW = timedelta(hours=24)
# How long a worker holds a delivery it is trying (longer than any attempt can take).
CLAIM_SECONDS = 120
MAX_ANSWER_BYTES = 64 * 1024
SIGNING_SECRET_PREFIX = "whsec_"
USER_AGENT = "Mailkeep-Webhooks/1"


class DeliveryError(Exception):
    """One delivery attempt failed; the message says why in a short phrase (no secret), `status` is the
    HTTP status when the target answered."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


def publish(kind, credential=None, *, details, actor=None, at=None):
    """Put an event in the outbox, inside the caller's transaction; return the NotificationEvent.

    `kind` names it ("credential.failing", "secret.rotated", ...), `credential`
    is the models.Credential it is about (or None), `details` a JSON-ready
    dict saying what happened in plain words (never a secret), `actor` who or
    what caused it, `at` when (naive UTC; now unless given). Delivered later
    by ``deliver_due``.
    """
    return NotificationEvent.create(
        kind=kind, at=at or utcnow(), credential=credential.id if credential is not None else None,
        credential_name=credential.name if credential is not None else "",
        group_id=credential.group_id if credential is not None else None, actor=actor or "",
        details=json.dumps(details, sort_keys=True, default=str),
    )


def new_signing_secret():
    """A new webhook signing secret, ``whsec_`` and 24 random bytes in base64 (the Standard Webhooks form)."""
    return SIGNING_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def fan_out(now=None):
    """Give each new event a pending delivery for every channel that hears about it; return how many were
    made. Under a lock, so two workers make each delivery once (the unique key says so too)."""
    now = now or utcnow()
    made = 0
    with exclusive("notifications"):
        events = list(NotificationEvent.select().where(NotificationEvent.fanned_out == False)  # noqa: E712
                      .order_by(NotificationEvent.id).limit(500))
        channels = list(NotificationChannel.select().where(NotificationChannel.enabled == True))  # noqa: E712
        for event in events:
            for channel in channels:
                if channel.hears(event.group_id):
                    try:
                        with db.atomic():
                            NotificationDelivery.create(event=event, channel=channel, next_attempt_at=now)
                        made += 1
                    except IntegrityError:
                        pass
            NotificationEvent.update(fanned_out=True).where(NotificationEvent.id == event.id).execute()
    return made


def claim_due(now, limit=20):
    """Claim up to `limit` pending deliveries whose attempt is due; return their ids. A claim is a
    compare-and-set on ``claimed_until``, so each is tried by one worker at a time."""
    candidates = [row_id for (row_id,) in NotificationDelivery.select(NotificationDelivery.id).where(
        (NotificationDelivery.status == PENDING) & (NotificationDelivery.next_attempt_at <= now)
        & (NotificationDelivery.claimed_until.is_null() | (NotificationDelivery.claimed_until < now))
    ).order_by(NotificationDelivery.next_attempt_at).limit(limit).tuples()]
    claimed = []
    for row_id in candidates:
        taken = NotificationDelivery.update(claimed_until=now + timedelta(seconds=CLAIM_SECONDS)).where(
            (NotificationDelivery.id == row_id) & (NotificationDelivery.status == PENDING)
            & (NotificationDelivery.claimed_until.is_null() | (NotificationDelivery.claimed_until < now))
        ).execute()
        if taken:
            claimed.append(row_id)
    return claimed


def deliver_due(now=None, limit=20):
    """Fan out new events, then try every delivery that is due (at most `limit`); return
    {"delivered", "retrying", "failed"} counts of this call's attempts. `now` is naive UTC (injectable)."""
    now = now or utcnow()
    fan_out(now)
    counts = {"delivered": 0, "retrying": 0, "failed": 0}
    for delivery_id in claim_due(now, limit):
        delivery = (NotificationDelivery.select(NotificationDelivery, NotificationEvent, NotificationChannel)
                    .join(NotificationEvent).switch(NotificationDelivery).join(NotificationChannel)
                    .where(NotificationDelivery.id == delivery_id).first())
        if delivery is not None:
            counts[attempt(delivery, now)] += 1
    return counts


def attempt(delivery, now):
    """Try one delivery once, log the attempt and set what comes next; return "delivered", "retrying" or
    "failed" (the retry window is over)."""
    started = time.monotonic()
    status, error = None, ""
    try:
        status = send(delivery.channel, delivery.event)
    except DeliveryError as failure:
        status, error = failure.status, str(failure)[:300]
    took = round((time.monotonic() - started) * 1000)
    ok = not error
    attempts = delivery.attempts + 1
    if ok:
        outcome, changes = "delivered", {"status": DELIVERED, "delivered_at": now, "last_error": ""}
    else:
        retry_at = now + timedelta(seconds=min(BACKOFF_SECONDS * 2 ** (attempts - 1), BACKOFF_CAP_SECONDS))
        if retry_at - delivery.event.at > RETRY_WINDOW:
            outcome, changes = "failed", {"status": FAILED, "last_error": error}
        else:
            outcome, changes = "retrying", {"next_attempt_at": retry_at, "last_error": error}
    with db.atomic():
        DeliveryAttempt.create(delivery=delivery.id, at=now, ok=ok, status_code=status, error=error, duration_ms=took)
        NotificationDelivery.update(attempts=attempts, claimed_until=None, **changes).where(
            NotificationDelivery.id == delivery.id).execute()
    if not ok:
        log.warning("notification %s to channel %r: %s (%s)", delivery.event.kind, delivery.channel.name, error,
                    outcome)
    return outcome


def send(channel, event):
    """Deliver `event` to `channel` once; return the HTTP status for a webhook (None for email). Raises
    DeliveryError saying why it did not arrive."""
    if channel.kind == NotificationChannel.WEBHOOK:
        return send_webhook(channel, event)
    send_email(split_recipients(channel.recipients), *message_of(event))
    return None


def payload_of(event):
    """The webhook body of `event` (Standard Webhooks' ``type``, ``timestamp``, ``data``) as a dict."""
    details = json.loads(event.details or "{}")
    data = {"credential": None if event.credential_id is None and not event.credential_name else {
        "id": event.credential_id, "name": event.credential_name, "url": link_of(event, details)},
        "actor": event.actor, **details}
    return {"type": event.kind, "timestamp": event.at.isoformat() + "Z", "data": data}


def link_of(event, details):
    """The address of the credential's page (its edit form at the field to fix, when one is named), or of the
    OAuth app's form for an event about an app; None for an event about neither."""
    base = current_app.config["BASE_URL"]
    if event.credential_id is None:
        app = details.get("oauth_app")
        return f"{base}/oauth-apps/{app['id']}/edit" if isinstance(app, dict) and app.get("id") else None
    field = details.get("field")
    if field:
        return f"{base}/credentials/{event.credential_id}/edit#{field}"
    return f"{base}/credentials/{event.credential_id}"


def message_of(event):
    """(subject, plain text) of the email for `event`: which credential, what happened, the cause in words,
    the field to fix and a link to it."""
    details = json.loads(event.details or "{}")
    app = details.get("oauth_app")
    name = event.credential_name or (f"The OAuth app {app['name']}" if isinstance(app, dict) else "Mailkeep")
    subject = f"[Mailkeep] {name} {TITLES.get(event.kind, event.kind)}"
    lines = [f"{name} {TITLES.get(event.kind, event.kind)} ({event.kind}, {event.at:%Y-%m-%d %H:%M} UTC)."]
    for key, label in (("message", "What failed"), ("summary", "Last check"), ("hint", "What to do"),
                       ("field", "Field to fix"), ("cause", "Cause code"), ("expires_at", "Expires"),
                       ("expires_on", "Expires"), ("failures", "Failed checks in a row")):
        if details.get(key) not in (None, ""):
            lines.append(f"{label}: {details[key]}")
    if details.get("reminder"):
        lines.append("This is a reminder: it is still failing.")
    link = link_of(event, details)
    if link:
        lines.append(f"Open it: {link}")
    return subject, "\n".join(lines) + "\n"


def send_webhook(channel, event):
    """POST `event` to the webhook `channel`, signed; return the HTTP status (2xx). Raises DeliveryError."""
    body = json.dumps(payload_of(event), sort_keys=True)
    message_id = f"msg_{event.id}_{channel.uid[:8]}"
    moment = datetime.now(timezone.utc)  # the signature's timestamp is when it is sent (receivers check it)
    try:
        secret = channel.unseal(keys.ring(), "signing_secret")
    except Exception:  # an unreadable secret: say so, never what it was
        raise DeliveryError("the signing secret cannot be read with the current keys") from None
    headers = {
        "Content-Type": "application/json", "User-Agent": USER_AGENT, "webhook-id": message_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, moment, body),
    }
    return post(channel.url, body.encode(), headers)


def url_problem(url):
    """Why `url` cannot be a webhook target, or None: http(s) with a host, no credentials in it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "A webhook URL starts with https:// (or http://) and names a host."
    if parts.username or parts.password:
        return "Put no user name or password in the URL; the signature authenticates Mailkeep."
    try:
        parts.port  # noqa: B018 (raises ValueError for a port out of range)
    except ValueError:
        return "The port in the URL is not a port."
    return None


def post(url, body, headers):
    """POST `body` to `url` within MAILKEEP_NOTIFICATION_TIMEOUT, dialling only addresses the outbound policy
    allows; return the 2xx status. Raises DeliveryError for anything else (a redirect is not followed)."""
    problem = url_problem(url)
    if problem:
        raise DeliveryError(problem)
    parts = urlsplit(url)
    timeout = current_app.config["NOTIFICATION_TIMEOUT"]
    policy = current_app.extensions["mailkeep.policy"]
    port = parts.port or (443 if parts.scheme == "https" else 80)
    deadline = time.monotonic() + timeout
    addresses = _resolve(parts.hostname, port, timeout)
    for _, sockaddr in addresses:
        refused = policy.address_problem(sockaddr[0])
        if refused:
            raise DeliveryError(f"not allowed: {refused}")
    sock = _connect(addresses, deadline)
    cut = threading.Event()
    watchdog = threading.Timer(max(deadline - time.monotonic(), 0.01), _cut, (sock, cut))
    watchdog.daemon = True
    watchdog.start()
    try:
        if parts.scheme == "https":
            context = network.tls_context(current_app.config["CA_FILE"], for_https=True)
            sock = context.wrap_socket(sock, server_hostname=parts.hostname)
        connection = HTTPConnection(parts.hostname, port, timeout=timeout)
        connection.sock = sock
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request("POST", path, body=body, headers=headers)
        answer = connection.getresponse()
        answer.read(MAX_ANSWER_BYTES)
        status = answer.status
        if cut.is_set():  # what came before the watchdog cut it is not an answer
            raise TimeoutError()
    except (OSError, HTTPException, ssl.SSLError) as error:
        late = time.monotonic() >= deadline
        raise DeliveryError(f"no answer within {timeout:g} s" if late or isinstance(error, TimeoutError)
                            else f"the connection failed: {type(error).__name__}") from None
    finally:
        watchdog.cancel()
        sock.close()
    if 300 <= status < 400:
        raise DeliveryError(f"HTTP {status}: redirects are not followed", status)
    if not 200 <= status < 300:
        raise DeliveryError(f"HTTP {status}", status)
    return status


def _resolve(host, port, timeout):
    """network.resolve in a helper thread waited for at most `timeout` seconds; DeliveryError otherwise."""
    answer = {}

    def look_up():
        try:
            answer["addresses"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as error:
            answer["error"] = error

    helper = threading.Thread(target=look_up, daemon=True, name="webhook-lookup")
    helper.start()
    helper.join(timeout)
    if "addresses" not in answer:
        raise DeliveryError(f"the host name {host} was not found" if "error" in answer
                            else f"looking up {host} took too long")
    return [(family, sockaddr) for family, _, _, _, sockaddr in answer["addresses"]]


def _connect(addresses, deadline):
    """A socket connected to the first checked address that accepts before `deadline` (monotonic)."""
    for family, sockaddr in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            sock.connect(sockaddr)
            return sock
        except OSError:
            sock.close()
    raise DeliveryError("the target refused the connection or did not answer")


def _cut(sock, cut):
    """The watchdog: end a connection that outlived its time (a target dripping its answer); `cut` is set."""
    cut.set()
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def split_recipients(text):
    """The addresses in a comma-separated `text`, without blanks."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def send_email(recipients, subject, text):
    """Send a plain-text email through the SMTP relay; raises DeliveryError (relay not set up, refused,
    unreachable) saying why, never with the relay's password."""
    relay = SmtpRelay.current()
    if not relay.host or not relay.sender:
        raise DeliveryError("the SMTP relay is not set up (Notifications page)")
    if not recipients:
        raise DeliveryError("the channel has no recipients")
    message = EmailMessage()
    message["From"] = formataddr(("Mailkeep", relay.sender))
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message.set_content(text)
    timeout = current_app.config["NOTIFICATION_TIMEOUT"]
    context = network.tls_context(current_app.config["CA_FILE"])
    stage = "connect"
    try:
        if relay.security == "ssl_tls":
            client = smtplib.SMTP_SSL(relay.host, relay.port, timeout=timeout, context=context)
        else:
            client = smtplib.SMTP(relay.host, relay.port, timeout=timeout)
        with client:
            if relay.security == "starttls":
                stage = "starttls"
                client.starttls(context=context)
            if relay.username:
                stage = "login"
                client.login(relay.username, relay.unseal(keys.ring(), "password"))
            stage = "send"
            client.send_message(message)
    except smtplib.SMTPException as error:
        # A relay that hangs up on a wrong password (some do) refused it as much as one answering 535.
        if stage == "login" or isinstance(error, smtplib.SMTPAuthenticationError):
            raise DeliveryError("the SMTP relay refused the username or password") from None
        if isinstance(error, smtplib.SMTPNotSupportedError):
            raise DeliveryError("the SMTP relay does not offer STARTTLS") from None
        raise DeliveryError(f"the SMTP relay refused the message: {type(error).__name__}") from None
    except (OSError, ssl.SSLError) as error:
        raise DeliveryError(f"the SMTP relay could not be reached: {type(error).__name__}") from None


def send_test_email(address):
    """Send a test email to `address` now (the "Send test email" button); raises DeliveryError."""
    send_email([address], "[Mailkeep] Test email",
               "This is a test email from Mailkeep: the SMTP relay settings work.\n")


def recent_deliveries(limit=50):
    """The latest deliveries with their event and channel, newest first."""
    return list(NotificationDelivery.select(NotificationDelivery, NotificationEvent, NotificationChannel)
                .join(NotificationEvent).switch(NotificationDelivery).join(NotificationChannel)
                .order_by(NotificationDelivery.id.desc()).limit(limit))


def attempts_of(delivery_ids):
    """{delivery id: [DeliveryAttempt, oldest first]} for `delivery_ids`."""
    found = {}
    if delivery_ids:
        for row in (DeliveryAttempt.select().where(DeliveryAttempt.delivery.in_(list(delivery_ids)))
                    .order_by(DeliveryAttempt.id)):
            found.setdefault(row.delivery_id, []).append(row)
    return found


# Channels and the relay, as pages, the API and tests change them (each change logged in its transaction).

RELAY_SECURITY = {"ssl_tls": "SSL/TLS", "starttls": "STARTTLS", "none": "None (this machine only)"}
LOOPBACK_RELAYS = ("localhost", "127.0.0.1", "::1")
# The longest values taken (characters): a channel's name, a webhook's URL, an email channel's recipients
# (comma-separated), the relay's host, username, sender address and password.
NAME_LENGTH = 100
URL_LENGTH = 2000
RECIPIENTS_LENGTH = 2000
HOST_LENGTH = 253
USERNAME_LENGTH = 320
ADDRESS_LENGTH = 320
PASSWORD_LENGTH = 4096


class ChannelError(ValueError):
    """A channel or relay setting that cannot be used; `errors` is {field: message}."""

    def __init__(self, errors):
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))
        self.errors = errors


def create_channel(kind, name, *, url="", recipients="", group_ids=(), actor):
    """Add a channel (`kind` webhook or email) for every group (no `group_ids`) or the chosen ones; return
    (the channel, its signing secret for a webhook: shown once, never again; None for email).

    Raises ChannelError for a bad value (an unknown kind, a webhook URL that is
    not http(s), no recipients) and peewee.IntegrityError for a name in use.
    """
    name = (name or "").strip()
    errors = {}
    if not name or len(name) > NAME_LENGTH:
        errors["name"] = f"Give the channel a name of at most {NAME_LENGTH} characters."
    if kind == NotificationChannel.WEBHOOK:
        problem = url_problem(url.strip()) if url and len(url) <= URL_LENGTH else "Give the webhook's https:// URL."
        if problem:
            errors["url"] = problem
    elif kind == NotificationChannel.EMAIL:
        addresses = split_recipients(recipients)
        if not addresses or any("@" not in address or any(c in address for c in "\r\n <>") for address in addresses) \
                or len(recipients) > RECIPIENTS_LENGTH:
            errors["recipients"] = "Give one or more email addresses, separated by commas."
    else:
        errors["kind"] = "A channel is a webhook or email."
    if errors:
        raise ChannelError(errors)
    secret = new_signing_secret() if kind == NotificationChannel.WEBHOOK else None
    with db.atomic():
        # Only what its kind uses is kept (and was checked above): a webhook's URL, an email's recipients.
        webhook = kind == NotificationChannel.WEBHOOK
        channel = NotificationChannel(name=name, kind=kind, url=url.strip() if webhook else "",
                                      all_groups=not group_ids,
                                      recipients="" if webhook else ", ".join(split_recipients(recipients)))
        channel.save()
        if secret:
            channel.seal(keys.ring(), "signing_secret", secret)
            channel.save()
        for group_id in dict.fromkeys(group_ids):
            ChannelGroup.create(channel=channel, group=group_id)
        audit.record("channel_create", channel, actor=actor, details=f"{kind}; groups: "
                     + ("all" if not group_ids else ", ".join(str(group) for group in group_ids)))
    return channel, secret


def set_channel_enabled(channel, enabled, *, actor):
    """Turn a channel on or off (its pending deliveries wait while it is off)."""
    with db.atomic():
        NotificationChannel.update(enabled=enabled).where(NotificationChannel.id == channel.id).execute()
        audit.record("channel_update", channel, actor=actor, details="on" if enabled else "off")
    channel.enabled = enabled


def delete_channel(channel, *, actor):
    """Delete a channel with its deliveries and their log."""
    with db.atomic():
        audit.record("channel_delete", channel, actor=actor)
        deliveries = NotificationDelivery.select(NotificationDelivery.id).where(NotificationDelivery.channel == channel)
        DeliveryAttempt.delete().where(DeliveryAttempt.delivery.in_(deliveries)).execute()
        NotificationDelivery.delete().where(NotificationDelivery.channel == channel).execute()
        channel.delete_instance(recursive=False)


def save_relay(*, host, port, security, username, sender, password=None, actor):
    """Store the SMTP relay's settings; `password` None keeps the stored one, "" forgets it. Raises
    ChannelError for a bad value (no host, a port out of range, an unknown security, no sender, plain SMTP
    to another machine)."""
    errors = {}
    host = (host or "").strip().lower()
    if not host or len(host) > HOST_LENGTH or any(c.isspace() for c in host):
        errors["host"] = "Give the relay's host name."
    try:
        port = int(port)
        if not 1 <= port <= 65535:
            raise ValueError(port)
    except (TypeError, ValueError):
        errors["port"] = "The port is a number from 1 to 65535."
    if security not in RELAY_SECURITY:
        errors["security"] = "Choose SSL/TLS, STARTTLS or none."
    elif security == "none" and host not in LOOPBACK_RELAYS and not current_app.config["ALLOW_INSECURE"]:
        errors["security"] = "Without TLS only a relay on this machine (localhost); use SSL/TLS or STARTTLS."
    sender = (sender or "").strip()
    if "@" not in sender or len(sender) > ADDRESS_LENGTH or any(c in sender for c in "\r\n <>"):
        errors["sender"] = "Give the address notifications come from."
    if len(username or "") > USERNAME_LENGTH or any(c in (username or "") for c in "\r\n"):
        errors["username"] = f"The username is at most {USERNAME_LENGTH} characters, on one line."
    if password is not None and (len(password) > PASSWORD_LENGTH or any(c in password for c in "\r\n\x00")):
        errors["password"] = f"The password is at most {PASSWORD_LENGTH} characters, on one line."
    if errors:
        raise ChannelError(errors)
    with db.atomic():
        relay = SmtpRelay.current()
        relay.host, relay.port, relay.security, relay.sender = host, port, security, sender
        relay.username = (username or "").strip()
        if password is not None:
            relay.seal(keys.ring(), "password", password or None)
        relay.save()
        audit.record("smtp_change", relay, actor=actor,
                     details="password " + ("kept" if password is None else "changed" if password else "forgotten"))
    return relay
