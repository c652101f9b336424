"""The explorer page in headless Chromium (Debian's /usr/bin/chromium driven by playwright-core from
``.browser/``, both installed by ``make browser``): it shows a user's recommendations and history with titles,
and an item's similar items; a screenshot is saved."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from test_serve_support import ROOT, Server, bundle_of

CHROMIUM = Path("/usr/bin/chromium")
PLAYWRIGHT = ROOT / ".browser"
SCRIPT = ROOT / "tests" / "browser" / "serve_page.mjs"


def _browser_or_skip() -> str:
    node = shutil.which("node")
    missing = [what for what, ok in (("node", node), ("/usr/bin/chromium", CHROMIUM.exists()),
                                     ("playwright-core in .browser/", (PLAYWRIGHT / "node_modules" /
                                                                       "playwright-core").is_dir())) if not ok]
    if missing:
        pytest.skip(f"browser test set-up missing: {', '.join(missing)} (run `make browser`; it installs "
                    "Debian chromium and playwright-core)")
    return node


def test_page_renders_recommendations_in_chromium(tmp_path) -> None:
    node = _browser_or_skip()
    shot = tmp_path / "serve_page.png"
    with Server(bundle_of("alpharec", "hnsw")) as url:
        expected = httpx.get(f"{url}/v1/users/u3/recommendations", params={"k": 10}).json()["items"]
        res = subprocess.run([node, str(SCRIPT), url, "u3", "backpack", str(shot), str(PLAYWRIGHT)],
                             capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    page = json.loads(res.stdout.strip().splitlines()[-1])
    assert page["errors"] == []
    assert "alpharec" in page["info"]
    assert [r["item_id"] for r in page["recs"]] == [e["item_id"] for e in expected]
    assert [r["text"] for r in page["recs"]] == [e["title"] for e in expected]  # titles, not bare ids
    assert page["history"] and all(h["text"] for h in page["history"])
    assert page["matches"] and all("backpack" in m["text"].lower() for m in page["matches"])
    assert len(page["similar"]) == 10 and page["similarTitle"].startswith("Similar to")
    assert shot.stat().st_size > 10_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
