"""Real pages in a real browser (headless Chromium): the offline asv dashboard and the
self-contained report.html.

Marked ``browser``: ``.ci/run`` leaves them out; run them with ``python -m pytest -m
browser``. They skip, saying why, without Chromium (Debian: ``apt-get install chromium``)
or without the dashboard's npm packages in ``.asv/npm-cache`` (fetched once by
``projunn-bench asv-offline HTML_DIR``; the tests never use the network).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from helpers import asv_config, run_asv

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".asv" / "npm-cache"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def chromium():
    import browser_check

    if browser_check.find_chromium() is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")
    return browser_check


def _asv(conf: Path, *args: str) -> None:
    found = run_asv("--config", str(conf), *args, PROJUNN_BENCH_GRID="tiny", OMP_NUM_THREADS="1")
    assert found.returncode == 0, found.stdout[-3000:] + found.stderr[-3000:]


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory, chromium):
    """``asv publish`` of two real (tiny) asv runs, made offline by projunn-bench asv-offline."""
    from suite.report import asv_offline

    missing = [
        spec
        for spec in {s for s, _ in asv_offline.ASSETS.values()}
        if not (CACHE / "{}-{}.tgz".format(*spec.rsplit("@", 1))).exists()
    ]
    if missing:
        pytest.skip(f"no vendored assets {missing} in {CACHE}: run projunn-bench asv-offline once")
    work = tmp_path_factory.mktemp("asv")
    asv_config(work)
    _asv(work / "asv.conf.json", "machine", "--yes", "--machine", "browser-test")
    bench = r"^benchmarks\.Update\.time_update\('(svd|unconstrained)', 16, 'float32'"
    for commit in ("HEAD~1", "HEAD"):
        sha = subprocess.run(
            ["git", "rev-parse", commit], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        _asv(
            work / "asv.conf.json",
            "run", "--python=same", f"--set-commit-hash={sha}", "--bench", bench,
            "--machine", "browser-test",
        )  # fmt: skip
    _asv(work / "asv.conf.json", "publish")
    assert asv_offline.make_offline(work / "html", CACHE) == 0
    return work / "html"


def test_dashboard_benchmark_list_renders_offline(chromium, dashboard, tmp_path):
    with chromium.serve(dashboard) as url:
        page = chromium.render(url + "index.html#/summarylist", screenshot=tmp_path / "list.png")
    assert chromium.check(page, ["benchmarks.Update.time_update", "Benchmark list"]) == []
    assert "continental origin of swallow" not in page.dom
    assert page.dom.count("benchmarks.Update.time_update") >= 2  # one row per parameter set


def test_dashboard_graph_renders_offline(chromium, dashboard, tmp_path):
    graph = "index.html#benchmarks.Update.time_update?p-method='svd'&p-n=16&p-dtype='float32'"
    with chromium.serve(dashboard) as url:
        page = chromium.render(url + graph, screenshot=tmp_path / "graph.png")
    # flot draws the plot on canvases and writes the axis ticks as text
    assert chromium.check(page, ['class="flot-base"', 'class="flot-overlay"']) == []
    assert page.dom.count("flot-tick-label") >= 3
    assert (tmp_path / "graph.png").stat().st_size > 10_000


_PROBE = """<script>
window.addEventListener("load", function () {
  var sizes = Array.prototype.map.call(document.images, function (img) {
    return img.complete ? img.naturalWidth + "x" + img.naturalHeight : "pending";
  });
  document.body.setAttribute("data-figures", sizes.join(" "));
  document.body.setAttribute("data-rows", document.querySelectorAll("tbody tr").length);
});
</script>
"""


@pytest.fixture(scope="module")
def report_html(tmp_path_factory):
    """``projunn-bench report`` of the committed tables (CPU and the H100's)."""
    from suite.cli import main

    out = tmp_path_factory.mktemp("report") / "report"
    assert main(["report", str(ROOT / "results" / "data"), "--out", str(out)]) == 0
    return out / "report.html"


def test_report_html_is_self_contained(report_html):
    html = report_html.read_text()
    refs = re.findall(r"""<(?:img|script|link|iframe)\b[^>]*(?:src|href)=["']([^"']+)""", html)
    assert refs and all(r.startswith("data:image/png;base64,") for r in refs), refs[:5]


def test_report_html_figures_and_tables_render(chromium, report_html, tmp_path):
    probed = tmp_path / "probed.html"
    probed.write_text(report_html.read_text().replace("</body>", _PROBE + "</body>"))
    page = chromium.render(probed.as_uri())
    assert page.console == ()
    figures = re.search(r'data-figures="([^"]*)"', page.dom).group(1).split()
    assert len(figures) == report_html.read_text().count("<img") >= 3
    for size in figures:  # decoded by the browser: a real width and height
        width, height = map(int, size.split("x"))
        assert width > 100 and height > 100, size
    assert int(re.search(r'data-rows="(\d+)"', page.dom).group(1)) > 10
    shot = chromium.render(report_html.as_uri(), screenshot=tmp_path / "report.png")
    assert shot.console == () and (tmp_path / "report.png").stat().st_size > 10_000


_WIDTHS = """<script>
window.addEventListener("load", function () {
  var page = document.documentElement;
  var boxes = document.querySelectorAll(".scroll");
  var inside = Array.prototype.filter.call(boxes, function (box) {
    return box.scrollWidth > box.clientWidth;
  });
  var out = Array.prototype.filter.call(document.body.querySelectorAll("*"), function (e) {
    return e.getBoundingClientRect().right > page.clientWidth + 1 && !e.closest(".scroll");
  }).map(function (e) { return e.tagName; });
  document.body.setAttribute("data-page", page.scrollWidth + " " + page.clientWidth);
  document.body.setAttribute("data-inside", inside.length + " " + boxes.length);
  document.body.setAttribute("data-out", out.slice(0, 5).join(" "));
});
</script>
"""


@pytest.mark.parametrize("width", [1280, 800])
def test_report_html_never_scrolls_sideways(chromium, report_html, tmp_path, width):
    """Wide tables scroll inside their own box (or wrap) and long words break, so the
    page itself has no horizontal scroll, on a laptop screen and on a narrow window."""
    probed = tmp_path / "probed.html"
    probed.write_text(report_html.read_text().replace("</body>", _WIDTHS + "</body>"))
    page = chromium.render(probed.as_uri(), window=(width, 900))
    assert page.console == ()
    scroll_width, client_width = map(int, re.search(r'data-page="(\d+) (\d+)"', page.dom).groups())
    assert scroll_width <= client_width, (scroll_width, client_width)
    assert re.search(r'data-out=""', page.dom), re.search(r'data-out="([^"]*)"', page.dom)
    inside, boxes = map(int, re.search(r'data-inside="(\d+) (\d+)"', page.dom).groups())
    assert boxes > 10
    if width == 800:  # the check saw wide content: some tables do need their own scroll
        assert inside >= 1


def test_report_html_folds_the_contended_timings(chromium, report_html):
    """The committed tables include a run on a busy machine: its contended timings are one
    line and a folded list, closed until opened."""
    html = report_html.read_text()
    assert html.count("<details>") >= 1 and "timings (marked †) were contended" in html
    page = chromium.render(report_html.as_uri())
    assert page.console == () and "<details><summary>" in page.dom
    assert "<details open" not in page.dom
