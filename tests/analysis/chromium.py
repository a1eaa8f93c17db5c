"""Headless Chromium: render a page to a PNG and read what a small in-page hook saw (errors, images, layout)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")
WINDOW = "--window-size=1280,2000"
CHECK_PREFIX = "CHECK "

# Records script errors and failed resource loads; on load, writes what it found into the page title.
HOOK = """<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  window.__errors.push(e.message || ('failed to load ' + ((e.target && (e.target.src || e.target.href)) || '?')).slice(0, 80));
}, true);
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var table = document.getElementById('main-table');
  document.title = 'CHECK ' + JSON.stringify({
    errors: window.__errors,
    images: images.length,
    broken: images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).length,
    tableTop: table ? table.getBoundingClientRect().top : null,
    tableRows: table ? table.rows.length : 0,
    firstImageTop: images.length ? images[0].getBoundingClientRect().top : null
  });
});
</script>"""


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _run(binary: str, args: list[str], profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}", WINDOW, *args], capture_output=True,
                          text=True, timeout=120, check=False)


def screenshot(binary: str, page: Path, png: Path, profile: Path) -> subprocess.CompletedProcess:
    return _run(binary, [f"--screenshot={png}", page.resolve().as_uri()], profile)


def inspect(binary: str, page: Path, workdir: Path) -> tuple[dict, list[str]]:
    """Load a copy of ``page`` with the hook; return the hook's findings and the console lines Chromium logged."""
    hooked = workdir / f"hooked-{page.name}"
    hooked.write_text(page.read_text(encoding="utf-8").replace("<head>", "<head>" + HOOK, 1), encoding="utf-8")
    result = _run(binary, ["--enable-logging=stderr", "--v=0", "--dump-dom", hooked.resolve().as_uri()],
                  workdir / "profile-dom")
    match = re.search(r"<title>CHECK (.*?)</title>", result.stdout, re.S)
    if match is None:
        raise AssertionError(f"the hook did not run; chromium exit {result.returncode}: {result.stderr[-2000:]}")
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    return json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&")), console
