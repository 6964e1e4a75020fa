"""Reach a service that the host runs on loopback (a sandbox with the host's network would connect)."""

import json
import socket

with open("params.json") as fh:
    params = json.load(fh)
host, port = params["loopback"]
socket.create_connection((host, port), timeout=2).close()
print("ESCAPED: connected to the host's loopback service")
