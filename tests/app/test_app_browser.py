"""`ardistill app` in a real browser: Debian's chromium, driven by Playwright for Python
(`executable_path`; nothing downloads a browser). The app runs as a subprocess on a loopback
port; the page generates teacher and DD 1-step images for one class, shows their timings, and
its images equal `ardistill sample`'s for the same seed, byte for byte after PNG decoding."""

from __future__ import annotations

import io
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from ardistill.cli import main

pytestmark = pytest.mark.slow

SEED, CLASS, COUNT = 7, 3, 4


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("Debian's chromium is not installed (apt-get install chromium): the browser "
                "test cannot run; .ci/run installs it")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def app_url(cli_env, tmp_path):
    port = _free_port()
    log = open(tmp_path / "app.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "ardistill", "app", "--port", str(port),
                             "--teacher", "mnist-var", "--teacher", "mnist-llamagen",
                             "--threads", "1"], env=cli_env, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail("the app exited: " + (tmp_path / "app.log").read_text()[-2000:])
            try:
                urllib.request.urlopen(url, timeout=5).read()
                break
            except OSError:
                if time.time() > deadline:
                    pytest.fail("the app did not answer in 180 s: "
                                + (tmp_path / "app.log").read_text()[-2000:])
                time.sleep(1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _gallery_images(page, name: str) -> list[np.ndarray]:
    page.wait_for_function(
        f"[...document.querySelectorAll('#gallery-{name} img')].length >= {COUNT}",
        timeout=120_000)
    srcs = page.locator(f"#gallery-{name} img").evaluate_all("els => els.map(e => e.src)")
    srcs = list(dict.fromkeys(srcs))  # a preview may repeat one
    assert len(srcs) == COUNT, srcs
    out = []
    for src in srcs:
        body = page.request.get(src).body()
        out.append(np.asarray(Image.open(io.BytesIO(body)).convert("RGB")))
    return out


def _fill_until_held(page, box, value: str, tries: int = 5) -> None:
    """Type `value` into `box` and make sure the page kept it. On a loaded machine a component
    that is still mounting (the accordion's text boxes, opened a moment ago) can reset its value
    after a fill; CI saw the student path dropped that way and the request went out without it.
    """
    for _ in range(tries):
        box.fill(value)
        box.press("Tab")  # blur: gradio commits the value on change
        page.wait_for_timeout(400)
        if box.input_value() == value:
            page.wait_for_timeout(400)
            if box.input_value() == value:
                return
    pytest.fail(f"the page did not keep {value!r} in {box} after {tries} tries")


def test_app_in_chromium(app_url, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
    exe = _chromium()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.set_default_timeout(120_000)  # CI machines are shared: generous waits
            page.goto(app_url)
            page.wait_for_selector("#generate", timeout=120_000)
            page.locator("#classes textarea, #classes input").first.fill(str(CLASS))
            page.locator("#seed input").first.fill(str(SEED))
            count = page.locator("#count input[type=number]").first
            count.fill(str(COUNT))
            count.press("Enter")
            page.locator("#methods label", has_text="DD 2-step").click()  # off: teacher + DD 1
            page.click("#generate")
            page.wait_for_function("document.querySelector('#status')?.innerText"
                                   ".includes('methods done')", timeout=300_000)
            assert "2 of 2 methods done (mnist-var, seed 7, 4 images each)" in \
                page.inner_text("#status")
            timings = page.inner_text("#timings")
            assert "teacher (multinomial)" in timings and "DD 1-step" in timings
            head = page.inner_text("#title-dd-1-step")
            assert "s / image" in head and "x" in head.split("s / image")[1]
            shown = {"teacher": _gallery_images(page, "teacher"),
                     "dd": _gallery_images(page, "dd-1-step")}
            # a bad input: a missing student file is a readable line, not a stack trace
            page.get_by_text("settings", exact=True).click()  # open the accordion
            box = page.locator("#student-dd-1-step textarea")
            missing = str(tmp_path / "none.safetensors")
            _fill_until_held(page, box, missing)
            _fill_until_held(page, count, "2")  # a new status line to wait for
            page.click("#generate")
            page.wait_for_function("document.querySelector('#status')?.innerText"
                                   ".includes('2 images each')", timeout=300_000)
            status = page.inner_text("#status")
            assert "1 of 2 methods done" in status, (status, box.input_value())
            assert "student file not found" in status and "Traceback" not in page.content()
        finally:
            browser.close()
    for name, flags in (("teacher", ["--method", "teacher"]), ("dd", ["--steps", "1"])):
        out = tmp_path / name
        assert main(["sample", "--teacher", "mnist-var", *flags, "--num", str(COUNT),
                     "--batch-size", str(COUNT), "--seed", str(SEED), "--classes", str(CLASS),
                     "--out", str(out)]) == 0
        for i, img in enumerate(shown[name]):
            want = np.asarray(Image.open(out / "images" / f"{i:06d}.png").convert("RGB"))
            assert np.array_equal(img, want), f"{name} image {i} differs from ardistill sample's"
