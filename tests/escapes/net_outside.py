"""Reach the host's outward address and the internet, by address and by name."""

import json
import socket

with open("params.json") as fh:
    params = json.load(fh)
reached = []
for target in [tuple(params["outside"]), ("1.1.1.1", 53), ("pypi.org", 443)]:
    try:
        socket.create_connection(target, timeout=2).close()
        reached.append(target)
    except OSError as exc:
        print(f"blocked {target}: {exc}")
if reached:
    print(f"ESCAPED: reached {reached}")
else:
    raise SystemExit("no network")
