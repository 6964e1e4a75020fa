"""Write output as fast as possible, forever, on both streams."""

import sys

line = "x" * 4096 + "\n"
while True:
    sys.stdout.write(line)
    sys.stderr.write(line)
