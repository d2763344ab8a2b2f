#!/usr/bin/env python3
"""An example webhook receiver: checks each delivery's signature and answers 2xx only for
genuine, fresh, first-seen events. Standard library only.

Usage: WEBHOOK_SECRET=whsec_... python3 scripts/webhook_receiver.py [PORT]
During a rotation, give both secrets: WEBHOOK_SECRET="whsec_new,whsec_old".
"""
import hashlib
import hmac
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

SECRETS = [s.encode() for s in os.environ["WEBHOOK_SECRET"].split(",") if s]
TOLERANCE_SECONDS = 300  # refuse a delivery signed longer ago than this (a replay)
seen = set()  # event ids already handled: a delivery may come more than once


def genuine(header, body):
    parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
    sent_at = next((v for k, v in parts if k == "t"), None)
    signatures = [v for k, v in parts if k == "v1"]
    if sent_at is None or not sent_at.isdigit() or abs(time.time() - int(sent_at)) > TOLERANCE_SECONDS:
        return False
    signed = sent_at.encode() + b"." + body  # the raw body, as it arrived
    expected = [hmac.new(secret, signed, hashlib.sha256).hexdigest() for secret in SECRETS]
    return any(hmac.compare_digest(e, s) for e in expected for s in signatures)


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if not genuine(self.headers.get("Webhook-Signature", ""), body):
            self.send_response(400)
            self.end_headers()
            return
        event = json.loads(body)
        print(("duplicate" if event["id"] in seen else "verified"), event["id"], event["type"],
              event["data"]["alert_id"], flush=True)
        seen.add(event["id"])
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    server = HTTPServer(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 8088), Receiver)
    print(f"receiving on http://127.0.0.1:{server.server_port}/", flush=True)
    server.serve_forever()
