"""Drive Debian's chromium with Playwright against the real app; screenshots go to tests/artifacts/web/."""
from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

from serve_helpers import REPO

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "tests" / "artifacts" / "web"
SIZES = {"laptop": {"width": 1366, "height": 768}, "hd": {"width": 1920, "height": 1080}}


def chromium_path() -> str:
    path = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).is_file() else None)
    if path is None:
        pytest.fail("Debian's chromium is not installed (make system installs it)")
    return path


@contextmanager
def browser(args: list[str] | None = None):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox", *(args or [])])
        try:
            yield launched
        finally:
            launched.close()


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    target = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(target))
    return target


def sign_in(page, url: str, key: str) -> None:
    page.goto(url + "/")
    page.fill("#key", key)
    page.click("#signin-form button[type=submit]")
    page.wait_for_selector("#app:not([hidden])")


def source_to_screen(page, x: float, y: float, width: int, height: int) -> tuple[float, float]:
    """Where pixel (x, y) of a width x height source frame is on the screen, in the player."""
    box = page.locator(".frame-box .frame").bounding_box()
    return box["x"] + x * box["width"] / width, box["y"] + y * box["height"] / height
