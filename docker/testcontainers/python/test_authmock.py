"""Testcontainers recipe for pytest (pip install testcontainers, 4.13 or later):
one authmock container for the module, ready once GET /__admin/health answers
200, reached through the host port Docker mapped to its 8080."""
import json
import urllib.request

import pytest
from testcontainers.core.container import DockerContainer
from testcontainers.core.wait_strategies import HttpWaitStrategy

IMAGE = "ghcr.io/OWNER/authmock:0.1.0"


@pytest.fixture(scope="module")
def base_url():
    container = (
        DockerContainer(IMAGE)
        .with_exposed_ports(8080)
        .with_env("AUTHMOCK_SEED", "1")
        .waiting_for(HttpWaitStrategy(8080, "/__admin/health").for_status_code(200))
    )
    with container:
        # What your client takes as MESH_BASE_URL and ONLYOFFICE_BASE_URL.
        yield f"http://{container.get_container_host_ip()}:{container.get_exposed_port(8080)}"


def test_mesh_login_succeeds(base_url):
    request = urllib.request.Request(
        f"{base_url}/api/v1/authenticate?userId=python",
        data=json.dumps({"type": "robinhood", "username": "ok@example.com", "password": "pass123"}).encode(),
        headers={
            "X-Client-Id": "test-client-id",
            "X-Client-Secret": "test-client-secret",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request) as response:
        assert response.status == 200
        assert json.load(response)["content"]["status"] == "succeeded"
