"""Runs moto's server in this process and exits when the parent (the test binary) goes away,
so that a test run never leaves an emulator behind. Usage: moto_server.py PORT"""
import os
import sys
import threading
import time


def exit_with_parent(parent):
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


if __name__ == "__main__":
    threading.Thread(target=exit_with_parent, args=(os.getppid(),), daemon=True).start()
    from moto.server import main

    main(["-H", "127.0.0.1", "-p", sys.argv[1]])
