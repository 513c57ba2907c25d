"""Every shipped protocol's report, rendered in a real headless Chromium: the page logs no error,
every figure loads, every sound can play, and the screenshot is not blank. The reports are those
of the protocols' short fixture logs (tests/fixtures/logs). CI installs Chromium (.ci/run); the
test skips only where Chromium is missing and cannot be installed (not root)."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from browser import Browser, executable
from closedloop.cli import main

ROOT = Path(__file__).resolve().parent.parent
PROTOCOLS = sorted((ROOT / "protocols").glob("*.yaml"))


@pytest.fixture(scope="module")
def browser():
    if executable() is None:
        if os.geteuid() != 0:
            pytest.skip("Chromium is not installed and installing it needs root (.ci/run installs it)")
        pytest.fail("Chromium is not installed: .ci/run installs it (apt-get install -y chromium)")
    chromium = Browser()
    yield chromium
    chromium.close()


def blank(png: bytes) -> bool:
    """A page with next to nothing drawn on it: almost every pixel white, or one colour."""
    from matplotlib.image import imread

    pixels = imread(io.BytesIO(png), format="png")[..., :3]
    inked = np.any(pixels < 0.9, axis=-1).mean()
    return inked < 0.01 or pixels.std() < 0.05  # an empty page: 0.1% and 0.03 (the check's own test)


def report_of(protocol_path: Path, tmp_path: Path, capsys) -> Path:
    """Analyse the protocol's fixture log (a sweep: its folder) in tmp_path; the report's path."""
    fixture = ROOT / "tests" / "fixtures" / "logs" / protocol_path.stem
    if fixture.is_dir():
        log = tmp_path / fixture.name
        shutil.copytree(fixture, log)
    else:
        log = tmp_path / f"{protocol_path.stem}.h5"
        shutil.copy(fixture.with_suffix(".h5"), log)
    assert main(["analyze", str(log)]) == 0
    printed = capsys.readouterr().out
    report = Path(next(line for line in printed.splitlines() if line.startswith("report: "))[8:])
    assert report.is_file()
    return report


@pytest.mark.slow
def test_the_browser_check_catches_errors_broken_images_and_blank_pages(tmp_path, browser):
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><body><img alt="gone" src="data:image/png;base64,AAAA">'
                    '<script>console.error("broken"); missing();</script></body></html>')
    result = browser.open(page.as_uri())
    assert any("broken" in e for e in result["errors"]) and any("exception" in e for e in result["errors"])
    assert result["media"]["broken"] == ["gone"]
    assert blank(result["png"])


@pytest.mark.slow
@pytest.mark.parametrize("protocol_path", PROTOCOLS, ids=lambda p: p.stem)
def test_report_of_every_shipped_protocol_renders_in_chromium(protocol_path, tmp_path, capsys, browser):
    report = report_of(protocol_path, tmp_path, capsys)
    result = browser.open(report.as_uri())
    assert result["errors"] == []
    media = result["media"]
    assert media["images"] >= 1 and media["broken"] == []
    if "hear-" in protocol_path.stem and "tuning" not in protocol_path.stem:
        assert media["sounds"] >= 2 and media["silent"] == 0  # a player per chosen generation, each playable
    assert not blank(result["png"])
