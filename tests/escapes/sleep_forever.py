"""Block forever without using CPU (only the wall clock can end it)."""

import time

while True:
    time.sleep(3600)
