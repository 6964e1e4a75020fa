"""Write outside the work dir: the host's /tmp, the repository, /etc. The host checks what landed."""

import json

with open("params.json") as fh:
    params = json.load(fh)
for path in params["outside_paths"]:
    try:
        with open(path, "w") as fh:
            fh.write("escaped")
        print(f"wrote {path} (inside the sandbox's view)")
    except OSError as exc:
        print(f"blocked {path}: {exc}")
