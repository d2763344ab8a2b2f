#!/usr/bin/env python3
"""POST-to-stored latency on an idle machine.

Posts transactions one at a time (with a pause, so that each meets an idle pipeline), reads each
back, and reports `processed_at - accepted_at` as stamped by the server: the time from the API's
acceptance to the processor's durable store write. Also reports the client-side POST round trip.

Usage: scripts/bench/latency.py BASE_URL [COUNT]    e.g. http://127.0.0.1:3000 200
"""
import json
import statistics
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime

KEY = "dev-key-for-the-demo-shop"


def call(method, url, body=None):
    request = urllib.request.Request(url, method=method, data=body)
    request.add_header("Authorization", f"Bearer {KEY}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, None


def parse_time(text):
    # Nanosecond timestamps: keep microseconds, which datetime can hold.
    head, _, fraction = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(fraction + '000000')[:6]}+00:00")


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main():
    base = sys.argv[1].rstrip("/")
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    run = int(time.time())
    post_ms, stored_ms = [], []
    for i in range(count):
        body = json.dumps({"transaction_id": f"lat-{run}-{i}", "amount": "12.34",
                           "timestamp": "2024-08-09T12:34:56Z"}).encode()
        started = time.perf_counter()
        status, _ = call("POST", f"{base}/transactions", body)
        post_ms.append((time.perf_counter() - started) * 1000)
        assert status == 202, status
        time.sleep(0.02)
    for i in range(count):
        deadline = time.time() + 10
        while True:
            status, record = call("GET", f"{base}/transactions/lat-{run}-{i}")
            if status == 200:
                break
            assert time.time() < deadline, f"lat-{run}-{i} not stored"
            time.sleep(0.01)
        lag = parse_time(record["processed_at"]) - parse_time(record["accepted_at"])
        stored_ms.append(lag.total_seconds() * 1000)
    for name, values in (("POST round trip (client)", post_ms),
                         ("accepted -> stored (server)", stored_ms)):
        print(f"{name}: median {statistics.median(values):.2f} ms, "
              f"p90 {percentile(values, 0.9):.2f} ms, p99 {percentile(values, 0.99):.2f} ms, "
              f"max {max(values):.2f} ms  (n={len(values)})")


if __name__ == "__main__":
    main()
