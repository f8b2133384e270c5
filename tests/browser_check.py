#!/usr/bin/env python3
"""Open a page in headless Chromium, as a person would: its DOM after the scripts ran,
the console messages (errors, uncaught exceptions, failed loads) and a screenshot.

No browser-driver dependency: Chromium's own ``--dump-dom`` and ``--screenshot`` with
``--virtual-time-budget`` (time for the page's scripts and requests to finish) and
``--enable-logging=stderr`` (every console message and uncaught exception is logged).
Every host but 127.0.0.1 resolves to nothing, so a page that needs the network shows
it as failed loads in the console. Local folders are served on 127.0.0.1 (:func:`serve`).

Examples::

    python tests/browser_check.py results/report.html --screenshot /tmp/report.png
    python tests/browser_check.py .asv/html --path "index.html#/summarylist" \\
        --expect "time_update" --screenshot /tmp/asv.png

Exit status: 0 the page loaded with no console message and every ``--expect`` text is in
its DOM, 1 otherwise, 2 bad usage or no Chromium.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--enable-logging=stderr",
    "--v=0",
)
_CONSOLE = re.compile(r":CONSOLE(?::\d+)?(?:\(\d+\))?\] (.*)$")


@dataclass(frozen=True)
class Page:
    """What Chromium showed: ``dom`` (HTML after the scripts ran) and ``console`` (one
    line per console message or uncaught exception, with its source)."""

    url: str
    dom: str
    console: tuple[str, ...]


def find_chromium() -> str | None:
    """The Chromium executable (``$CHROMIUM`` or the usual names on PATH), or ``None``."""
    named = os.environ.get("CHROMIUM")
    if named:
        return shutil.which(named) or (named if Path(named).exists() else None)
    return next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)


def console_messages(stderr: str) -> tuple[str, ...]:
    """The console lines of Chromium's stderr log.

    >>> console_messages('[1:1:1127/02.1:INFO:CONSOLE:1] "Uncaught x", source: a.html (3)\\nx')
    ('"Uncaught x", source: a.html (3)',)
    """
    return tuple(m.group(1) for m in map(_CONSOLE.search, stderr.splitlines()) if m)


def _chromium(args: list[str], *, budget_ms: int, timeout: float) -> subprocess.CompletedProcess:
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("Chromium is not installed (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="browser-check-") as profile:
        cmd = [exe, *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}"]
        return subprocess.run(
            [*cmd, *args], capture_output=True, text=True, timeout=timeout, check=False
        )


def render(
    url: str,
    *,
    screenshot: Path | None = None,
    window: tuple[int, int] = (1280, 900),
    budget_ms: int = 8000,
    timeout: float = 120,
) -> Page:
    """Load ``url`` in headless Chromium; optionally save a PNG ``screenshot`` too."""
    size = f"--window-size={window[0]},{window[1]}"
    found = _chromium([size, "--dump-dom", url], budget_ms=budget_ms, timeout=timeout)
    if found.returncode != 0 and not found.stdout:
        raise RuntimeError(f"Chromium failed ({found.returncode}): {found.stderr[-2000:]}")
    if screenshot is not None:
        shot = Path(screenshot).resolve()
        _chromium([size, f"--screenshot={shot}", url], budget_ms=budget_ms, timeout=timeout)
        if not shot.exists():
            raise RuntimeError(f"Chromium wrote no screenshot {shot}")
    return Page(url, found.stdout, console_messages(found.stderr))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no request log on stderr
        pass


@contextlib.contextmanager
def serve(folder: str | os.PathLike) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 (a free port) while the block runs; yields its URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def check(page: Page, expect: list[str]) -> list[str]:
    """Problems with ``page``: console messages and ``expect`` texts missing from its DOM.

    >>> check(Page("u", "<p>ok</p>", ()), ["ok"]), check(Page("u", "", ("e",)), ["ok"])
    ([], ['console: e', 'not in the page: ok'])
    """
    problems = [f"console: {line}" for line in page.console]
    return problems + [f"not in the page: {text}" for text in expect if text not in page.dom]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tests/browser_check.py",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("Examples::")[1].split("Exit status")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("target", type=Path, help="an HTML file, or a folder to serve")
    parser.add_argument("--path", default="index.html", help="page in a served folder")
    parser.add_argument("--expect", action="append", default=[], help="text the DOM must hold")
    parser.add_argument("--screenshot", type=Path, help="save a PNG of the page here")
    args = parser.parse_args(argv)
    if not args.target.exists():
        parser.error(f"{args.target} does not exist")
    if find_chromium() is None:
        parser.error("Chromium is not installed (Debian: apt-get install chromium)")
    with contextlib.ExitStack() as stack:
        if args.target.is_dir():
            url = stack.enter_context(serve(args.target)) + args.path
        else:
            url = args.target.resolve().as_uri()
        page = render(url, screenshot=args.screenshot)
    problems = check(page, args.expect)
    for line in problems:
        print(line)
    print(f"{url}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
