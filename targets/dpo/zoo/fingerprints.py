"""The zoo's behavioural fingerprints, shipped: memory knows DPO, SLiC, IPO, … from a run's first step.

The zoo is our own code (trusted), so its fingerprints are computed in-process once and kept beside it
(`fingerprints.json`, with the fingerprint's VERSION and each loss's code hash): seeding memory with the
baselines then costs no sandbox run and no torch import. A stale entry (another fingerprint version, or
a loss file changed since) is left out, and that baseline is known to memory by its text alone.

    python -m targets.dpo.zoo.fingerprints      # rewrite fingerprints.json (after changing a loss or
                                                # targets/dpo/fingerprint.py; a test says when)
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

from targets.dpo import zoo
from targets.dpo.zoo import list_zoo

FILE = "fingerprints.json"
VERSION = 2
"""targets.dpo.fingerprint.VERSION the file was computed with (not imported: that would import torch)."""
DIGITS = 6
"""Decimals kept: far below what tells two behaviours apart (a 1% change is ~0.01 RMS)."""


def code_hash(code: str) -> str:
    """The loss file's text as shipped: an entry is current only for the very text it was computed on."""
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


def shipped() -> dict[str, list[float]]:
    """name → fingerprint, for every zoo loss whose shipped entry is current."""
    try:
        saved = json.loads(resources.files(zoo).joinpath(FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if saved.get("version") != VERSION:
        return {}
    entries = saved.get("losses") or {}
    out = {}
    for loss in list_zoo():
        entry = entries.get(loss.name) or {}
        if entry.get("code_hash") == code_hash(loss.code) and entry.get("fingerprint"):
            out[loss.name] = [float(x) for x in entry["fingerprint"]]
    return out


def compute() -> dict[str, dict[str, object]]:
    """Every zoo loss's fingerprint, computed here (torch): what `main` writes and a test compares."""
    from targets.dpo.fingerprint import VERSION as CURRENT
    from targets.dpo.fingerprint import loss_fingerprint

    if CURRENT != VERSION:
        raise SystemExit(f"targets.dpo.fingerprint is at version {CURRENT}: set VERSION here to it first")
    return {
        loss.name: {
            "code_hash": code_hash(loss.code),
            "fingerprint": [round(x, DIGITS) for x in loss_fingerprint(loss.code)],
        }
        for loss in list_zoo()
    }


def main() -> None:
    path = Path(__file__).with_name(FILE)
    path.write_text(json.dumps({"version": VERSION, "losses": compute()}, separators=(",", ":")) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
