"""Look for API keys in the environment: our own, and (through /proc) the host's processes'."""

import json
import os

with open("params.json") as fh:
    params = json.load(fh)
canary = params["canary"]
found = [k for k, v in os.environ.items() if canary in v or k == "OPENAI_API_KEY"]
for pid in ("self", "1", str(params["host_pid"]), str(os.getppid())):
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            if canary.encode() in fh.read():
                found.append(f"/proc/{pid}/environ")
    except OSError as exc:
        print(f"/proc/{pid}/environ: {exc}")
print(f"ESCAPED: {found}" if found else "no secrets found")
