"""Build the sandbox image offline: a root file system of only the host libraries that Python, the venv's
extension modules and torch link against, imported with `podman import` (no registry, no network).

The interpreter (`sys.base_prefix`), the venv and the repository are not copied: the Docker backend
mounts them read-only at the same paths, so the image stays small (~tens of MB) and builds in seconds.
The image carries a label with a hash of its inputs; an image whose label matches is not rebuilt.
`sandbox/Dockerfile` builds the self-contained equivalent where a registry is reachable.

Usage: python sandbox/image/build.py [--engine podman] [--image disco-sandbox:latest] [--force]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IMAGE = "disco-sandbox:latest"
SANDBOX_UID = 61000
LABEL = "org.disco.inputs"


def mounted_prefixes() -> list[Path]:
    """What the Docker backend mounts (kept in step with sandbox.docker_backend.mounts)."""
    return sorted({Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), REPO})


def elf_files() -> list[Path]:
    roots = [Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()]
    found = {Path(sys.executable).resolve()}
    for root in roots:
        found.update(p for p in root.rglob("*.so*") if p.is_file() and not p.is_symlink())
    return sorted(found)


def needed_libs() -> set[Path]:
    """Host libraries (outside the mounted prefixes) that the ELF files load, via ldd."""
    prefixes = mounted_prefixes()
    libs: set[Path] = set()
    files = elf_files()
    for i in range(0, len(files), 64):
        out = subprocess.run(
            ["ldd", *map(str, files[i : i + 64])], capture_output=True, text=True, check=False
        ).stdout
        for path in re.findall(r"(/\S+) \(0x", out):
            p = Path(path)
            if not any(p.resolve().is_relative_to(pre) for pre in prefixes):
                libs.add(p)
    return libs


def inputs_key(libs: set[Path]) -> str:
    h = hashlib.sha256(sys.version.encode())
    for p in sorted(libs):
        h.update(f"{p}:{p.resolve().stat().st_mtime_ns}".encode())
    for p in mounted_prefixes():
        h.update(str(p).encode())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()[:16]


def make_rootfs(root: Path, libs: set[Path]) -> None:
    for top in ("bin", "lib", "lib64", "sbin"):
        if Path("/" + top).is_symlink():
            (root / top).symlink_to(os.readlink("/" + top))
    for lib in libs:
        real = lib.resolve()
        for path in {real, Path(os.path.realpath(lib.parent)) / lib.name}:
            dest = root / path.relative_to("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists() or dest.is_symlink():
                continue
            if path == real:
                shutil.copy2(real, dest)
            else:
                dest.symlink_to(real)
    for d in ("tmp", "work", "proc", "dev", "sys", "etc", *(str(p).lstrip("/") for p in mounted_prefixes())):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    (root / "etc/passwd").write_text(
        f"root:x:0:0:root:/root:/bin/false\nsandbox:x:{SANDBOX_UID}:{SANDBOX_UID}::/work:/bin/false\n"
    )
    (root / "etc/group").write_text(f"root:x:0:\nsandbox:x:{SANDBOX_UID}:\n")


def image_label(engine: str, image: str) -> str | None:
    proc = subprocess.run(
        [engine, "image", "inspect", "--format", "{{index .Labels \"" + LABEL + "\"}}", image],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return proc.stdout.strip() if proc.returncode == 0 else None


def build(engine: str = "podman", image: str = IMAGE, force: bool = False) -> str:
    libs = needed_libs()
    key = inputs_key(libs)
    if not force and image_label(engine, image) == key:
        print(f"{image} is up to date ({key})")
        return key
    with tempfile.TemporaryDirectory(prefix="disco-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        root.mkdir()
        make_rootfs(root, libs)
        tar = Path(tmp) / "rootfs.tar"
        with tarfile.open(tar, "w") as tf:
            for child in sorted(root.iterdir()):
                tf.add(child, arcname=child.name)
        subprocess.run(
            [engine, "import", "--change", f"LABEL {LABEL}={key}", "--change", "WORKDIR /work",
             "--change", f"USER {SANDBOX_UID}", str(tar), image],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
    print(f"built {image} ({key}) from {len(libs)} host libraries")
    return key


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--engine", default="podman")
    parser.add_argument("--image", default=IMAGE)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    build(args.engine, args.image, args.force)
