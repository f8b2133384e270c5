"""Make an ``asv publish`` dashboard work offline: serve its JavaScript and CSS locally
(``projunn-bench asv-offline``).

asv's ``index.html`` loads jQuery, flot, bootstrap, stupidtable and md5 from CDNs; with no
network it shows only "Can not determine continental origin of swallow". This fetches the
same libraries from their npm packages (``npm pack``, once, into a cache), copies the files
the page uses into ``HTML_DIR/vendor/`` and points ``index.html`` at them. Run it after
every ``asv publish`` (which rewrites index.html)::

    asv publish
    projunn-bench asv-offline .asv/html          # needs npm and its registry once
    asv preview                                  # or any static file server

Versions are asv 0.6's (see :data:`ASSETS`), except stupidtable: npm has only
``stupid-table-plugin`` 1.1.3 (same plugin API) of the CDN's 1.0.1. An asv release with
other URLs makes it stop and name the URL it does not know.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from ..measure.output import atomic_write_text

_CDNJS = "https://cdnjs.cloudflare.com/ajax/libs"
ASSETS = {
    "https://code.jquery.com/jquery-3.3.1.min.js": ("jquery@3.3.1", "dist/jquery.min.js"),
    f"{_CDNJS}/flot/0.8.3/jquery.flot.min.js": ("flot@0.8.3", "jquery.flot.js"),
    f"{_CDNJS}/flot/0.8.3/jquery.flot.time.min.js": ("flot@0.8.3", "jquery.flot.time.js"),
    f"{_CDNJS}/flot/0.8.3/jquery.flot.selection.min.js": (
        "flot@0.8.3",
        "jquery.flot.selection.js",
    ),
    f"{_CDNJS}/flot/0.8.3/jquery.flot.categories.min.js": (
        "flot@0.8.3",
        "jquery.flot.categories.js",
    ),
    "https://cdn.jsdelivr.net/npm/flot-orderbars@1.0.0/js/jquery.flot.orderBars.js": (
        "flot-orderbars@1.0.0",
        "js/jquery.flot.orderBars.js",
    ),
    f"{_CDNJS}/stupidtable/1.0.1/stupidtable.min.js": (
        "stupid-table-plugin@1.1.3",
        "stupidtable.min.js",
    ),
    f"{_CDNJS}/blueimp-md5/2.19.0/js/md5.min.js": ("blueimp-md5@2.19.0", "js/md5.min.js"),
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/js/bootstrap.min.js": (
        "bootstrap@3.1.1",
        "dist/js/bootstrap.min.js",
    ),
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/css/bootstrap.min.css": (
        "bootstrap@3.1.1",
        "dist/css/bootstrap.min.css",
    ),
}
"""CDN URL in asv's index.html -> (npm package@version, file in the package)."""

EXTRA_FILES = {"bootstrap@3.1.1": ("dist/fonts/",)}
"""Further files a vendored file refers to (bootstrap's CSS loads ../fonts/)."""

_TAG = re.compile(r"<(script|link)\b[^>]*>", re.IGNORECASE)
_URL = re.compile(r"""\b(?:src|href)=["'](https?://[^"']+)["']""", re.IGNORECASE)
_CDN_ATTRS = re.compile(r"""\s+(?:integrity|crossorigin|referrerpolicy)=["'][^"']*["']""")


def local_path(spec: str, member: str) -> str:
    """Where a package file goes under the HTML folder.

    >>> local_path("bootstrap@3.1.1", "dist/css/bootstrap.min.css")
    'vendor/bootstrap/dist/css/bootstrap.min.css'
    """
    return f"vendor/{spec.rpartition('@')[0]}/{member}"


def rewrite(html: str) -> str:
    """``html`` with every CDN script/stylesheet pointing at its vendored copy (and the
    integrity/crossorigin attributes of those tags dropped: the files are same-origin now).

    ``ValueError`` names a CDN URL that is not in :data:`ASSETS`.

    >>> rewrite('<script src="https://code.jquery.com/jquery-3.3.1.min.js" '
    ...         'crossorigin="anonymous"></script>')
    '<script src="vendor/jquery/dist/jquery.min.js"></script>'
    """

    def tag(match: re.Match) -> str:
        text = match.group(0)
        found = _URL.search(text)
        if not found:
            return text
        url = found.group(1)
        if url not in ASSETS:
            raise ValueError(f"unknown CDN URL in asv's index.html: {url} (see ASSETS)")
        text = _CDN_ATTRS.sub("", text)
        return text.replace(url, local_path(*ASSETS[url]))

    return _TAG.sub(tag, html)


def fetch(spec: str, cache: Path) -> Path:
    """The npm tarball of ``spec`` (``name@version``), fetched with ``npm pack`` once."""
    name, _, version = spec.rpartition("@")
    tarball = cache / f"{name}-{version}.tgz"
    if not tarball.exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "pack", "--silent", "--pack-destination", str(cache), spec],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return tarball


def unpack(tarball: Path, members: list[str], dest: Path) -> list[Path]:
    """Copy the package files ``members`` (a trailing ``/``: a folder) to ``dest``."""
    out, found = [], set()
    with tarfile.open(tarball) as tar:
        for info in tar.getmembers():
            name = info.name.partition("/")[2]  # drop the package/ prefix
            hits = {m for m in members if name == m or (m.endswith("/") and name.startswith(m))}
            if not hits or not info.isfile():
                continue
            found |= hits
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            out.append(target)
    missing = sorted(set(members) - found)
    if missing:
        raise FileNotFoundError(f"{tarball.name} has no {', '.join(missing)}")
    return out


def vendor(html_dir: Path, cache: Path) -> list[Path]:
    """Fetch and copy every asset of :data:`ASSETS` into ``html_dir/vendor``."""
    wanted: dict[str, list[str]] = {}
    for spec, member in ASSETS.values():
        wanted.setdefault(spec, []).append(member)
    files = []
    for spec, members in wanted.items():
        members = members + list(EXTRA_FILES.get(spec, ()))
        dest = html_dir / local_path(spec, "")
        files += unpack(fetch(spec, cache), members, dest)
    return files


def make_offline(html_dir: Path, cache: Path) -> int:
    """Vendor the dashboard's assets into ``html_dir`` and point its ``index.html`` at them;
    returns the exit status (1: npm failed or an unknown CDN URL)."""
    index = html_dir / "index.html"
    try:
        html = rewrite(index.read_text(encoding="utf-8"))
        files = vendor(html_dir, cache)
    except (ValueError, FileNotFoundError, subprocess.CalledProcessError, OSError) as e:
        print(f"asv-offline: {e}", file=sys.stderr)
        return 1
    atomic_write_text(index, html)
    print(f"asv-offline: {len(files)} files under {html_dir / 'vendor'}; {index} uses them")
    return 0
