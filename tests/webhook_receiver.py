"""A real HTTP server that receives webhooks and verifies their Standard Webhooks signatures (the
``standardwebhooks`` package, as a receiver would), on loopback, in a thread.

``behaviour`` chooses what it answers: "ok" (204), "error" (500), "slow" (waits `delay` seconds before
answering), "drip" (sends its answer a byte a second), "redirect" (302 to the cloud metadata address).
``received`` holds what passed verification, ``rejected`` the requests whose signature did not.
"""

import http.server
import json
import threading
import time

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from testdata import OUTBOUND


class WebhookReceiver:
    """Use as a context manager; ``url`` is its address, ``secret`` the signing secret to verify with (set it
    before a delivery arrives)."""

    def __init__(self, behaviour="ok", delay=30.0):
        self.behaviour = behaviour
        self.delay = delay
        self.secret = None
        self.received = []
        self.rejected = []
        self.requests = 0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                receiver.requests += 1
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                OUTBOUND.append(str(self.headers).encode() + body)
                try:
                    payload = Webhook(receiver.secret).verify(body, dict(self.headers.items()))
                except (WebhookVerificationError, TypeError, ValueError) as error:
                    receiver.rejected.append((str(error), body))
                    payload = None
                else:
                    receiver.received.append({"headers": dict(self.headers.items()), "payload": payload,
                                              "body": body})
                receiver.answer(self, payload)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/mailkeep"

    def answer(self, handler, payload):
        if self.behaviour == "error":
            handler.send_response(500)
            handler.end_headers()
        elif self.behaviour == "redirect":
            handler.send_response(302)
            handler.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            handler.end_headers()
        elif self.behaviour == "slow":
            time.sleep(self.delay)
            handler.send_response(204)
            handler.end_headers()
        elif self.behaviour == "drip":
            try:
                handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
                for _ in range(int(self.delay)):
                    handler.wfile.write(b"X")
                    handler.wfile.flush()
                    time.sleep(1)
            except OSError:
                pass
        else:
            handler.send_response(204)
            handler.end_headers()

    def kinds(self):
        """The event types received, in order."""
        return [item["payload"]["type"] for item in self.received]

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info):
        self.server.shutdown()
        self.server.server_close()


def decoded(item):
    """A received webhook's payload (a dict)."""
    return json.loads(item["body"])
