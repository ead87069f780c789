"""The HTML report in a real browser: Debian's headless Chromium, driven by selenium through
Debian's chromedriver (the two come from the same package version, so they always match).

`make test` installs both (`make chromium`). The screenshot goes to test-artifacts/ (or
$VCC_TEST_ARTIFACTS) for CI to keep.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest

from mining.shards import read_shards
from pipeline.inspect import open_run
from pipeline.report_html import write_report

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(
    os.environ.get("VCC_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts")
)
# what runs reliably here: no sandbox (root), no GPU, no network side traffic, a fresh profile
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--autoplay-policy=no-user-gesture-required",
    "--window-size=1280,2200",
]


@pytest.fixture(scope="module")
def browser():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: `make chromium` installs Debian's chromium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.TemporaryDirectory(prefix="vcc-chromium-")
    options.add_argument(f"--user-data-dir={profile.name}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()
    profile.cleanup()


def _severe(driver) -> list[dict]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def _visible_cards(driver) -> list[dict]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('.card'))"
        ".filter(c => !c.hidden && c.offsetParent !== null)"
        ".map(c => ({sim: parseFloat(c.dataset.sim), video: c.dataset.video}))"
    )


def _set(driver, element_id: str, value: str) -> None:
    driver.execute_script(
        "const el = document.getElementById(arguments[0]); el.value = arguments[1];"
        "el.dispatchEvent(new Event('input'));",
        element_id,
        value,
    )


def _play_first_video(driver) -> dict:
    """Play the first card's clip and wait until its time advances (or it fails)."""
    return driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const video = document.querySelector('.card video');
        const started = performance.now();
        video.addEventListener('error', () => done({error: video.error && video.error.code}));
        video.play().catch(err => done({error: String(err)}));
        (function poll() {
          if (video.currentTime > 0.5) return done({time: video.currentTime,
                                                    width: video.videoWidth});
          if (performance.now() - started > 20000) return done({error: 'timeout',
                                                                time: video.currentTime});
          setTimeout(poll, 100);
        })();
        """
    )


def test_report_loads_plays_and_filters_in_chromium(mined, browser, tmp_path):
    clips = read_shards(mined.out, columns=["similarity", "video_id"]).to_pylist()
    index = write_report(open_run(mined.out), tmp_path / "report")

    browser.get(index.as_uri())
    deadline = time.monotonic() + 30
    while browser.execute_script("return document.readyState") != "complete":
        assert time.monotonic() < deadline, "the page never finished loading"
        time.sleep(0.1)
    assert _severe(browser) == []

    # every card is there, and every image (caption images, posters aside, plots) loaded
    assert len(browser.find_elements("css selector", ".card")) == len(clips)
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, "
        "i.naturalWidth])"
    )
    assert len(images) >= len(clips) + 3
    assert [src for src, complete, width in images if not (complete and width > 0)] == []

    played = _play_first_video(browser)
    assert "error" not in played, played
    assert played["time"] > 0.5 and played["width"] > 0

    # filter by similarity: the cards at or above the threshold stay
    sims = sorted(c["similarity"] for c in clips)
    threshold = round(sims[len(sims) // 2], 2)
    _set(browser, "min-sim", str(threshold))
    shown = _visible_cards(browser)
    assert len(shown) == sum(s >= threshold for s in sims) and len(shown) < len(clips)
    assert all(c["sim"] >= threshold for c in shown)

    # filter by video, then sort worst first
    _set(browser, "min-sim", "0")
    video = clips[0]["video_id"]
    _set(browser, "video", video)
    shown = _visible_cards(browser)
    assert {c["video"] for c in shown} == {video}
    assert len(shown) == sum(c["video_id"] == video for c in clips)
    _set(browser, "video", "")
    _set(browser, "sort", "sim-asc")
    order = [c["sim"] for c in _visible_cards(browser)]
    assert order == sorted(order) and len(order) == len(clips)
    _set(browser, "sort", "sim-desc")

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "inspect-report.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    assert _severe(browser) == []
