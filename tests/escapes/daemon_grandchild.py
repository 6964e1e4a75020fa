"""Double-fork a daemon (new session, stdio closed) that tries to outlive the run, then exit at once."""

import os
import time

if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        for fd in (0, 1, 2):
            os.close(fd)
        while True:
            time.sleep(0.1)
    os._exit(0)
os.wait()
print("daemon started")
