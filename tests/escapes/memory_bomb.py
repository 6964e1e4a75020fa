"""Allocate and touch memory until something stops it."""

hog = []
while True:
    hog.append(bytearray(64 << 20))
