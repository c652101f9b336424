"""``/docs`` (Swagger UI) and ``/redoc`` work offline: their scripts and styles come from the server (the
``fastapi-offline`` package), not from a CDN. Checked in headless Chromium with every request to another host
refused; the screenshot is docs/img/serve_docs.png. Skipped, with the reason, without chromium / playwright-core
(``make browser``)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx
from test_serve_page import PLAYWRIGHT, _browser_or_skip
from test_serve_support import ROOT, Server, bundle_of

from recembed.io import atomic_write

SCRIPT = ROOT / "tests" / "browser" / "serve_docs.mjs"
SHOT = ROOT / "docs" / "img" / "serve_docs.png"


def test_docs_page_renders_without_network(tmp_path) -> None:
    node = _browser_or_skip()
    shot = tmp_path / "serve_docs.png"
    with Server(bundle_of("bpr")) as url:
        html = httpx.get(f"{url}/docs").text
        assert "cdn." not in html and "/static-offline-docs/swagger-ui-bundle.js" in html
        paths = set(httpx.get(f"{url}/openapi.json").json()["paths"])
        res = subprocess.run([node, str(SCRIPT), url, str(shot), str(PLAYWRIGHT)], capture_output=True, text=True,
                             timeout=180, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    page = json.loads(res.stdout.strip().splitlines()[-1])
    assert page["errors"] == [], page["errors"]
    assert [b for b in page["blocked"] if b["page"] == "/docs"] == []  # nothing was even asked of another host
    # ReDoc's only outside request is the "powered by" logo in its side menu (an image; the page renders)
    assert all(b["type"] == "image" for b in page["blocked"] if b["page"] == "/redoc"), page["blocked"]
    assert "recembed recommendation service" in page["title"]
    assert set(page["operations"]) == paths  # every endpoint rendered
    assert page["redoc"] >= len(paths)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    atomic_write(SHOT, lambda p: shutil.copyfile(shot, p))
    assert Path(SHOT).stat().st_size == shot.stat().st_size
