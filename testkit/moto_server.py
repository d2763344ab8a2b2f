"""Runs moto's server in this process and exits when the parent (the test binary) goes away,
so that a test run never leaves an emulator behind. Usage: moto_server.py PORT

moto serves requests on threads and applies a DynamoDB conditional write as a read, a check
and a write without a lock, so two concurrent conditional writes to one item can both succeed.
DynamoDB itself applies each one atomically, and the pipeline relies on that (alert claims).
Requests to DynamoDB are therefore served one at a time here, as DynamoDB's per-item atomicity
promises; the other services stay concurrent (an SQS long poll must not block them)."""
import os
import sys
import threading
import time


def exit_with_parent(parent):
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def serialise_dynamodb(app):
    lock = threading.Lock()

    def wrapped(environ, start_response):
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            with lock:
                return list(app(environ, start_response))
        return app(environ, start_response)

    return wrapped


if __name__ == "__main__":
    threading.Thread(target=exit_with_parent, args=(os.getppid(),), daemon=True).start()
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import run_simple

    app = DomainDispatcherApplication(create_backend_app)
    run_simple("127.0.0.1", int(sys.argv[1]), serialise_dynamodb(app), threaded=True)
