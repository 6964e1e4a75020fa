"""report.html of a real run, opened in headless Chromium (Debian's `chromium`): the figures decode and
draw, the leaderboard is there with every candidate, and the page needs nothing from the network.

`make test` installs chromium (`make test-deps`); without it this test fails, it does not skip.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from report_helpers import HOSTILE_NAME, report_run_fixture  # noqa: F401 (the fixture `report_run`)

from agent.report.plots import FAILED, RUNNING_BEST, SCORED
from agent.report.render import write_report
from agent.runs import RunDir

WINDOW = (1280, 5200)
"""Tall enough for the whole page: headless Chromium screenshots the window, not the document."""


@pytest.fixture(scope="module")
def report(report_run: tuple[Path, RunDir], tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """(run id, report.html) written into a folder of its own."""
    _, run = report_run
    return run.run_id, write_report(run, tmp_path_factory.mktemp("web")).html


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium")
    assert exe, "Debian's chromium is not installed: `make test-deps` (or `apt-get install -y chromium`)"
    command = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # no name resolves: a page that needed the web would break
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def _pixels_near(image: Image.Image, hex_colour: str, tol: int = 12) -> int:
    target = tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return sum(
        count
        for count, rgb in image.getcolors(image.width * image.height)
        if all(abs(a - b) <= tol for a, b in zip(rgb, target, strict=True))
    )


def test_chromium_renders_the_figures_and_the_leaderboard(report, tmp_path: Path) -> None:
    run_id, html = report
    url = html.as_uri()
    dom = chromium(tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert re.search(r'<body[^>]*data-loaded="yes"', dom.stdout), "the page's load handler ran"
    images = re.findall(r"<img\b[^>]*>", dom.stdout)
    ids = sorted(re.search(r'id="([^"]+)"', tag).group(1) for tag in images)  # type: ignore[union-attr]
    assert ids == ["plot-failures", "plot-fitness", "plot-frontier", "plot-lineage"]
    assert all('data-rendered="yes"' in tag for tag in images), "every figure decoded with a width"

    table = re.search(r'<table id="leaderboard-table">.*?</table>', dom.stdout, re.S)
    assert table, "the leaderboard table is in the page"
    rows = re.findall(r'<tr data-candidate="([^"]+)"', table.group(0))
    assert sorted(rows) == [f"{run_id}-{i:04d}" for i in range(1, 5)]
    for name in ("cand_4", "overflow_then_broken", "cand_3"):
        assert f">{name}</td>" in table.group(0)
    escaped = HOSTILE_NAME.replace("<", "&lt;").replace(">", "&gt;")
    assert f">{escaped}</td>" in table.group(0), "a model's markup stays text in the browser"
    assert "<b>one</b>" not in dom.stdout

    shot = tmp_path / "report.png"
    proc = chromium(
        tmp_path / "profile", f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--screenshot={shot}", url
    )
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    image = Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")
    assert image.size == WINDOW
    assert len(image.getcolors(image.width * image.height) or []) > 200, "the screenshot is not blank"
    # The figures' own colours are on screen: scored candidates, the running best and the failure bars.
    for colour in (SCORED, RUNNING_BEST, FAILED):
        assert _pixels_near(image, colour) > 200, f"{colour} is missing from the screenshot"
    assert _pixels_near(image, "#fff7e6", tol=2) > 1000, "the best row of the leaderboard is highlighted"
