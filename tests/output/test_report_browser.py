"""index.html in headless Chromium: no script errors, every image loads, the gallery follows the address.

Needs Debian's ``chromium`` (``/usr/bin/chromium`` or on PATH); skipped with the install
command where it is absent. The page records its own state on ``<body>``:
``data-images-ok="<loaded>/<total>"`` and ``data-js-errors`` (script errors, failed loads and
console.error calls), which ``--dump-dom`` hands back after the virtual time budget.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_report import CONDITIONS, LAYERS, NUM_SAMPLES, write_run

from ddpm_lens.output.report import build_report


def _chromium() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None)
    if path is None:
        pytest.skip("chromium not installed: apt-get install chromium")
    return path


def _run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=5000",
    ]
    return subprocess.run([binary, *flags, *args], capture_output=True, text=True, timeout=90, check=False)


class _Dom(HTMLParser):
    def __init__(self):
        super().__init__()
        self.body: dict = {}
        self.images: list[dict] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "body":
            self.body = attrs
        if tag == "img":
            self.images.append(attrs)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    binary = _chromium()
    out = tmp_path_factory.mktemp("run")
    write_run(out, hostile=True, stats=("sparsity", "edge_energy"))
    build_report(out)
    return binary, out


# Appended to a copy of the page: note what the address selected, scroll to the gallery, press
# arrow keys and note what the viewer shows then.
KEY_DRIVER = """<script>
  document.body.dataset.before = document.getElementById("viewer-img").getAttribute("src");
  document.getElementById("g-layers").scrollIntoView({behavior: "instant"});
  for (const key of ["ArrowLeft", "ArrowRight", "ArrowRight", "ArrowDown", "ArrowDown", "ArrowUp"]) {
    document.dispatchEvent(new KeyboardEvent("keydown", {key: key, bubbles: true}));
  }
  document.body.dataset.after = document.getElementById("viewer-img").getAttribute("src");
  document.body.dataset.address = location.hash;
</script>"""


def test_page_loads_cleanly_follows_the_address_and_the_arrow_keys(page, tmp_path):
    binary, out = page
    html = (out / "index.html").read_text(encoding="utf-8")
    driven = out / "driven.html"
    driven.write_text(html.replace("</body>", KEY_DRIVER + "</body>"), encoding="utf-8")
    url = driven.as_uri() + "#s=1&c=clean_t0&l=encoder_level_0"
    result = _run_chromium(binary, tmp_path / "profile", "--dump-dom", url)
    driven.unlink()
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console
    dom = _Dom()
    dom.feed(result.stdout)
    assert dom.body.get("data-js-errors") == "0", result.stdout[:3000]
    assert "data-pwned" not in dom.body  # the hostile label did not become markup
    total = len(dom.images)
    # the loss plot, 2 statistics x (by layer, by timestep) + 2 CKA plots, the viewer, inputs
    # (clean + 2 noisy per sample), sections 2 and 3 (one per sample), 4 (one per layer), 5 (one
    # per condition, less the fixture's deleted sample_1/noisy_t100/encoder_level_1 figure)
    assert total == 1 + 4 + 2 + 1 + 3 * NUM_SAMPLES + 2 * NUM_SAMPLES + len(LAYERS) + len(CONDITIONS) - 1
    assert dom.body.get("data-images-ok") == f"{total}/{total}"
    assert dom.body["data-before"] == "sample_1/clean_t0/encoder_level_0_baseline_vs_curriculum.png"
    # Left stays at the first condition; right, right: noisy_t100, noisy_t500; down, down, up:
    # encoder_level_1, encoder_level_2, encoder_level_1. The sections follow the selection.
    assert dom.body["data-after"] == "sample_1/noisy_t500/encoder_level_1_baseline_vs_curriculum.png"
    assert dom.body["data-address"] == "#s=1&c=noisy_t500&l=encoder_level_1"
    strip = re.search(r'id="strip-layers">(.*?)</div>', result.stdout, re.S).group(1)
    assert strip.count("<img") == len(LAYERS)
    assert all(f"sample_1/noisy_t500/{layer}_baseline_vs_curriculum.png" in strip for layer in LAYERS)
    strip = re.search(r'id="strip-timesteps">(.*?)</div>', result.stdout, re.S).group(1)
    assert re.findall(r'src="([^"]+)"', strip) == [
        "sample_1/clean_t0/encoder_level_1_baseline_vs_curriculum.png",
        "sample_1/noisy_t500/encoder_level_1_baseline_vs_curriculum.png",
    ]


def test_page_reports_a_missing_figure(page, tmp_path):
    binary, out = page
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    (moved / "sample_0/noisy_t500/encoder_level_2_baseline_vs_curriculum.png").unlink()  # the viewer's figure
    result = _run_chromium(binary, tmp_path / "profile", "--dump-dom", (moved / "index.html").as_uri())
    dom = _Dom()
    dom.feed(result.stdout)
    total = len(dom.images)
    assert dom.body.get("data-images-ok") == f"{total - 4}/{total}"  # viewer and sections 3, 4, 5
    assert int(dom.body.get("data-js-errors")) == 4
    assert "could not load" in result.stdout


def test_screenshot_is_not_blank(page, tmp_path):
    binary, out = page
    shot = tmp_path / "report.png"
    result = _run_chromium(
        binary,
        tmp_path / "profile",
        f"--screenshot={shot}",
        "--window-size=1280,2000",
        "--hide-scrollbars",
        (out / "index.html").as_uri(),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    image = Image.open(shot)
    assert image.format == "PNG" and image.size == (1280, 2000)
    pixels = np.asarray(image.convert("RGB"), dtype=np.float64)  # (H, W, 3)
    assert pixels.std() > 20  # header, tables and plots, not a blank page
    dark = (pixels.mean(axis=2) < 60).mean()
    assert 0.01 < dark < 0.5  # the dark header band and text are there
