"""/embed/{view}: the only pages another site may frame. Checked on the headers and in a real
headless Chromium: a page of another origin frames /embed/overview, and cannot frame `/`."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.chromium import chromium
from tests.helpers import TOKENS, Storepulse
from ws_gateway.embed import VIEWS


@pytest.fixture(scope="module")
def sp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Storepulse]:
    server = Storepulse(tmp_path_factory.mktemp("sp-embed")).start()
    yield server
    server.ensure_stopped()


def test_only_embed_pages_may_be_framed(sp: Storepulse) -> None:
    for view in VIEWS:
        r = httpx.get(f"{sp.base}/embed/{view}", timeout=10)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "frame-ancestors *" in r.headers["content-security-policy"] and "x-frame-options" not in r.headers
        assert r.headers["x-content-type-options"] == "nosniff" and "script-src 'self';" in r.headers["content-security-policy"]
        assert "unsafe-inline" not in r.headers["content-security-policy"]  # the page has no inline code at all
    for path in ("/", "/embed/nope", "/embed/", "/api/v1/orgs/acme/figures", "/metrics"):
        r = httpx.get(f"{sp.base}{path}", headers={"Authorization": f"Bearer {TOKENS['acme']}"}, timeout=10)
        assert r.headers["x-frame-options"] == "DENY", path
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"], path
    nope = httpx.get(f"{sp.base}/embed/nope", timeout=10)
    assert nope.status_code == 404 and "use one of overview" in nope.json()["error"]


@pytest.fixture
def other_site(sp: Storepulse) -> Iterator[str]:
    """A page on another origin (another port) framing an embed and the dashboard itself."""
    page = (f'<iframe id="embed" src="{sp.base}/embed/overview#token={TOKENS["acme"]}"></iframe>'
            f'<iframe id="whole" src="{sp.base}/"></iframe>').encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_chromium_frames_an_embed_and_refuses_the_dashboard(sp: Storepulse, other_site: str) -> None:
    with chromium() as browser:
        page = browser.new_page()
        page.goto(other_site)
        embedded = page.frame_locator("#embed")
        embedded.locator("body").wait_for(timeout=15_000)
        framed = page.frame("embed")
        assert framed is not None and framed.url == f"{sp.base}/embed/overview"
        assert framed.evaluate("document.title") != ""  # the dashboard page loaded in it
        # the whole dashboard is refused as a frame: Chromium shows its error page in that frame instead
        whole = page.frame("whole")
        assert whole is not None
        deadline = time.monotonic() + 10  # the load event waits for it; poll in case it lags
        while whole.url != "chrome-error://chromewebdata/" and time.monotonic() < deadline:
            page.wait_for_timeout(50)
        assert whole.url == "chrome-error://chromewebdata/", [(f.name, f.url) for f in page.frames]
