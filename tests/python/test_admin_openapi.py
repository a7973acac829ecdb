"""The admin API's OpenAPI 3.1 document against the real server (issue 7).

Starts its own throwaway `gatehouse serve` (schemathesis creates and deletes things through the
admin API, so it must not share the session gateway of the SDK tests), checks that
`/admin/v1/openapi.json` is served without a credential and documents the one error shape, then
runs `tests/schemathesis/run.sh`: generated valid and invalid inputs for every operation, no 5xx,
no response that breaks the schema.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request

import pytest

from conftest import GATEHOUSE_BIN, OPERATOR_TOKEN, ROOT, _stop, _tail, _wait_healthy, free_port


@pytest.fixture(scope="module")
def admin_url(tmp_path_factory: pytest.TempPathFactory):
    if os.environ.get("GATEHOUSE_PY_SKIP_GATEWAY") or not GATEHOUSE_BIN.exists():
        if os.environ.get("GATEHOUSE_PY_STRICT") == "1":
            pytest.fail(f"{GATEHOUSE_BIN} is missing")
        pytest.skip(f"{GATEHOUSE_BIN} is missing")
    work = tmp_path_factory.mktemp("gatehouse-openapi")
    log = work / "gatehouse.log"
    listen, admin = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_", "GATEHOUSE_"))}
    env["GATEHOUSE_OPERATOR_TOKEN"] = OPERATOR_TOKEN
    env.setdefault("RUST_LOG", "warn")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(GATEHOUSE_BIN), "serve", "--demo", "--data-dir", str(work / "data"),
             "--listen", f"127.0.0.1:{listen}", "--admin-listen", f"127.0.0.1:{admin}"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=work,
        )
    try:
        _wait_healthy(proc, f"http://127.0.0.1:{admin}/healthz", log)
        yield f"http://127.0.0.1:{admin}", log
    finally:
        _stop(proc)


def test_openapi_document_is_served_and_complete(admin_url):
    url, _ = admin_url
    with urllib.request.urlopen(f"{url}/admin/v1/openapi.json", timeout=10) as resp:
        assert resp.status == 200
        doc = json.loads(resp.read())
    assert doc["openapi"] == "3.1.0"
    paths = doc["paths"]
    for path in ["/admin/v1/keys", "/admin/v1/teams", "/admin/v1/session", "/admin/v1/users", "/admin/v1/audit"]:
        assert path in paths, path
    for path, item in paths.items():
        for method, op in item.items():
            assert "default" in op["responses"], f"{method} {path} lacks the error shape"
    assert set(doc["components"]["securitySchemes"]) == {"operator_token", "session"}


def test_schemathesis_finds_no_server_error_and_no_schema_violation(admin_url):
    url, log = admin_url
    env = dict(os.environ, GATEHOUSE_ADMIN_TOKEN=OPERATOR_TOKEN)
    run = subprocess.run(
        ["bash", str(ROOT / "tests" / "schemathesis" / "run.sh"), url],
        env=env, capture_output=True, text=True, timeout=900,
    )
    out = run.stdout + run.stderr
    assert OPERATOR_TOKEN not in out, "the output is sanitized"
    assert run.returncode == 0, f"schemathesis failed:\n{out[-12000:]}\n--- server log ---\n{_tail(log)}"
