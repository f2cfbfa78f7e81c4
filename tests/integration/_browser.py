"""A real headless browser for the web UI's tests: Debian's Chromium (`make system` installs
`chromium`), driven through Playwright. Playwright's own browser download is never used (it
cannot reach the network here): the fixture launches the system binary by path.

`browser` is a session fixture (one Chromium for the session, closed at its end; a test module
imports `browser_fixture` to use it); a test opens its own contexts (`browser.new_context(...)`, JS on or off) and closes them. Chromium's profile
and Playwright's temporary files live in a temporary directory of the session, never in ~.

Without Chromium (or Playwright) the tests that use it are skipped with the reason, except
under CI (CI=true), where CI installs both (`make system`, `make venv`) and a missing one fails.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Dialog, Page

CHROMIUM = "/usr/bin/chromium"


def chromium_path() -> str | None:
    """The system Chromium (Debian's package), or None when it is not installed."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    return shutil.which("chromium")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI installs it: `make system` and `make venv`)")
    pytest.skip(reason)


@pytest.fixture(scope="session", name="browser")
def browser_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """Debian's Chromium, headless, launched by Playwright; closed (and its driver stopped) at
    the end of the session."""
    executable = chromium_path()
    if executable is None:
        _unavailable("Debian's chromium is not installed (apt-get install chromium chromium-driver)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (the dev extra: pip install -e '.[dev]')")
    assert executable is not None
    scratch: Path = tmp_path_factory.mktemp("browser")
    # Playwright's driver makes the browser's temporary profile (its user-data dir) and its
    # artifacts under its own TMPDIR: the session's directory, read when the driver starts.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TMPDIR", str(scratch))
        playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(
            executable_path=executable, headless=True, timeout=60_000,
            args=["--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-features=Translate,MediaRouter"],
            env={**os.environ, "TMPDIR": str(scratch), "HOME": str(scratch)})
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        playwright.stop()


# --- what a page did: scripts that ran, errors, navigations -------------------------------------

# Before any script of the page: every way a script injected through data would show itself
# (a dialog, an error, a CSP violation report) is recorded on window.__seen. A page that had to
# block an injected inline script (CSP) counts too: the markup should never have been there.
WATCH_SCRIPT = """
(() => {
  const seen = [];
  Object.defineProperty(window, "__seen", {value: seen});
  for (const name of ["alert", "confirm", "prompt", "print"]) {
    window[name] = (...args) => { seen.push(name + ":" + args.join(" ")); };
  }
  window.addEventListener("error", (e) => seen.push("error:" + (e.message || e.type)), true);
  document.addEventListener("securitypolicyviolation",
    (e) => seen.push("csp:" + e.violatedDirective + " " + e.blockedURI + " " + (e.sample || "")));
})();
"""

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


class PageWatch:
    """Listens to a page: dialogs (dismissed), uncaught errors, console errors, main-frame
    navigations and every request's URL. `problems()` is what should never happen."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.console: list[str] = []
        self.navigations: list[str] = []
        self.requests: list[str] = []
        page.add_init_script(WATCH_SCRIPT)
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda err: self.errors.append(str(err)))
        page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text}")
                if msg.type == "error" else None)
        page.on("framenavigated", lambda frame: self.navigations.append(frame.url)
                if frame == page.main_frame else None)
        page.on("request", lambda request: self.requests.append(request.url))

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def seen(self) -> list[str]:
        """What the page's own hooks recorded (window.__seen) in its current document."""
        return list(self.page.evaluate("() => window.__seen ? Array.from(window.__seen) : ['no hooks']"))

    def problems(self) -> list[str]:
        return [*self.dialogs, *self.errors, *self.console, *self.seen()]


def screenshot(page: Page, name: str, directory: Path, *, docs: bool = True) -> Path:
    """`name`.png of the page's viewport in `directory`; also in docs/screenshots/ when `docs`
    and UPDATE_SCREENSHOTS=1 (the README shows those)."""
    path = directory / f"{name}.png"
    page.screenshot(path=str(path), full_page=False, animations="disabled")
    head = path.read_bytes()[:24]  # a PNG of the viewport: signature, IHDR width and height
    viewport = page.viewport_size
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and viewport is not None
    assert (int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")) == (
        viewport["width"], viewport["height"]), name
    if docs and os.environ.get("UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOTS / f"{name}.png")
    return path
