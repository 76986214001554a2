"""`semhpc jupyter`: a real JupyterLab on 127.0.0.1 that serves the notebooks only with the token."""

import json
import urllib.request

import pytest

from lab_server import http_status, running_jupyter
from semhpc.monitor.notebooks import NOTEBOOKS

TOKEN = "test-token-0123456789abcdef"


@pytest.fixture
def server():
    with running_jupyter(TOKEN) as lab:
        assert lab.folder == "notebooks"
        yield lab.base


def test_notebooks_are_served_with_the_token_and_refused_without(server):
    with urllib.request.urlopen(f"{server}/api/contents/notebooks?token={TOKEN}", timeout=10) as response:
        assert response.status == 200
        listing = json.load(response)
    assert set(NOTEBOOKS) <= {item["name"] for item in listing["content"]}
    assert http_status(f"{server}/api/contents/notebooks") == 403
    assert http_status(f"{server}/api/contents/notebooks?token=wrong-token") == 403

