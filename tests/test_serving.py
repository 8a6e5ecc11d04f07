"""Served by gunicorn as in production, pages come with their CSS and scripts (WhiteNoise)."""

from __future__ import annotations

import re
import urllib.request

import pytest

from tests.adversarial.conftest import running_site


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with running_site(tmp_path_factory.mktemp("serving"), {}) as started:
        yield started


def test_gunicorn_serves_every_asset_a_page_links(site):
    browser = site.browser()
    for page in ("/", "/trajectories/", "/trajectories/import/"):
        body = browser.get(page).body.decode()
        assets = set(re.findall(r'(?:href|src)="(/static/[^"]+)"', body))
        assert any(asset.endswith(".css") for asset in assets), page
        for asset in assets:
            with urllib.request.urlopen(site.url + asset, timeout=10) as response:
                assert response.status == 200, asset
                assert response.read(), asset
                kind = response.headers["Content-Type"]
                assert ("css" in kind) if asset.endswith(".css") else True, (asset, kind)
