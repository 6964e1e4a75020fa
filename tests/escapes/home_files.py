"""Read a file from the real home directory of the host's user (keys, tokens, ~/.netrc live there)."""

import json
import os

with open("params.json") as fh:
    params = json.load(fh)
home = params["home"]
try:
    print("home lists:", os.listdir(home))
except OSError as exc:
    print(f"cannot list {home}: {exc}")
with open(params["home_canary"]) as fh:
    print("ESCAPED: read", fh.read())
