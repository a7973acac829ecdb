"""Fixtures for the real-client suite: the `gatehouse-mock` process and the `gatehouse` binary.

Both processes bind 127.0.0.1 only, log to files in pytest's temp dir, and are terminated
(SIGTERM, then SIGKILL after 10 s) at the end of the session.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(os.environ.get("GATEHOUSE_ROOT", Path(__file__).resolve().parents[2]))
MOCK_BIN = Path(os.environ.get("GATEHOUSE_MOCK_BIN", ROOT / "target" / "debug" / "gatehouse-mock"))
GATEHOUSE_BIN = Path(os.environ.get("GATEHOUSE_BIN", ROOT / "target" / "debug" / "gatehouse"))

#: The key the mock process expects (OpenAI Bearer, Anthropic x-api-key/Bearer).
MOCK_KEY = "sk-mock-python-suite-0123456789"

#: Operator token handed to `gatehouse serve` through GATEHOUSE_OPERATOR_TOKEN
#: (a fixed test value: 48 characters from [A-Za-z0-9]).
OPERATOR_TOKEN = "GhPyTestOperatorToken0123456789abcdefghijKLMNOPQ"
assert len(OPERATOR_TOKEN) == 48 and OPERATOR_TOKEN.isalnum()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


def free_port() -> int:
    """An ephemeral port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# gatehouse-mock


@dataclass
class Mock:
    base_url: str  # http://127.0.0.1:PORT

    @property
    def openai_base_url(self) -> str:
        return self.base_url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.base_url


@pytest.fixture(scope="session")
def mock(tmp_path_factory: pytest.TempPathFactory) -> Mock:
    if not MOCK_BIN.exists():
        pytest.fail(f"{MOCK_BIN} does not exist: run `cargo build -p gatehouse-testkit --bins` (run.sh does)")
    log = tmp_path_factory.mktemp("mock") / "stderr.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [str(MOCK_BIN), "--listen", "127.0.0.1:0", "--expected-key", MOCK_KEY],
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().decode().strip()
        prefix = "listening on "
        if not first.startswith(prefix):
            pytest.fail(f"gatehouse-mock did not announce its address (got {first!r}):\n{_tail(log)}")
        yield Mock(base_url=first[len(prefix):])
    finally:
        _stop(proc)


# ---------------------------------------------------------------------------------------------
# gatehouse (the real binary, `serve --demo`)


class AdminError(Exception):
    def __init__(self, status: int, body: str):
        super().__init__(f"admin API answered {status}: {body}")
        self.status = status
        self.body = body


@dataclass
class Gateway:
    base_url: str  # data plane, http://127.0.0.1:PORT/v1 (OpenAI SDK base_url)
    admin_url: str  # http://127.0.0.1:PORT

    def admin(self, method: str, path: str, body: dict | None = None) -> dict:
        """Calls the admin API with the operator token; returns the JSON answer."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.admin_url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {OPERATOR_TOKEN}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                text = resp.read().decode()
        except urllib.error.HTTPError as e:
            raise AdminError(e.code, e.read().decode(errors="replace")) from None
        return json.loads(text) if text else {}

    def create_key(self, name: str, **fields) -> dict:
        """`POST /admin/v1/keys`; the answer holds the plaintext `key` once."""
        return self.admin("POST", "/admin/v1/keys", {"name": name, **fields})

    def revoke_key(self, key_id: str) -> dict:
        return self.admin("POST", f"/admin/v1/keys/{key_id}/revoke")


#: Prefixes of the environment variables the gateway reads providers (or its own settings) from
#: at start (README "Providers"; AWS_* for Bedrock's credential chain). None of them may reach the
#: gateway under test: a developer's real keys would become providers and calls could go out.
PROVIDER_ENV_PREFIXES = (
    "GATEHOUSE_",
    "OPENAI_",
    "ANTHROPIC_",
    "GEMINI_",
    "GOOGLE_",
    "AZURE_",
    "AWS_",
    "OLLAMA_",
    "MISTRAL_",
    "DEEPSEEK_",
    "GROQ_",
    "VLLM_",
    "OPENROUTER_",
    "TOGETHER_",
    "FIREWORKS_",
    "XAI_",
    "BEDROCK_",
)


def is_provider_env(name: str) -> bool:
    """Whether the gateway under test must not see the environment variable `name`."""
    return name.upper().startswith(PROVIDER_ENV_PREFIXES)


def _gateway_unavailable(reason: str):
    if os.environ.get("GATEHOUSE_PY_STRICT") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def _wait_healthy(proc: subprocess.Popen, url: str, log: Path, deadline_s: float = 90.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"gatehouse exited with {proc.returncode} before it was healthy:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.2)
    pytest.fail(f"gatehouse was not healthy at {url} within {deadline_s:.0f} s:\n{_tail(log)}")


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Gateway:
    skip = os.environ.get("GATEHOUSE_PY_SKIP_GATEWAY")
    if skip:
        _gateway_unavailable(skip)
    if not GATEHOUSE_BIN.exists():
        _gateway_unavailable(
            f"{GATEHOUSE_BIN} does not exist yet (build it with `cargo build -p gatehouse-server --bins`)"
        )
    work = tmp_path_factory.mktemp("gatehouse")
    log = work / "gatehouse.log"
    listen, admin = free_port(), free_port()
    # a developer's real provider keys must not turn into providers of the test gateway
    env = {k: v for k, v in os.environ.items() if not is_provider_env(k)}
    env["GATEHOUSE_OPERATOR_TOKEN"] = OPERATOR_TOKEN
    env.setdefault("RUST_LOG", "info")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                str(GATEHOUSE_BIN),
                "serve",
                "--demo",
                "--data-dir",
                str(work / "data"),
                "--listen",
                f"127.0.0.1:{listen}",
                "--admin-listen",
                f"127.0.0.1:{admin}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=work,
        )
    try:
        _wait_healthy(proc, f"http://127.0.0.1:{admin}/healthz", log)
        yield Gateway(base_url=f"http://127.0.0.1:{listen}/v1", admin_url=f"http://127.0.0.1:{admin}")
    finally:
        _stop(proc)


#: Name of the Gemini-format provider registered on the test gateway (kind `gemini`, pointing at
#: the `mock` process); use it as `py-gemini/mock-gemini[:options]`.
GEMINI_PROVIDER = "py-gemini"


@pytest.fixture(scope="session")
def gemini_upstream(gateway: Gateway, mock: Mock) -> str:
    """Registers a Gemini-format upstream (the mock process, speaking `generateContent`) through
    the admin API; returns the provider name for the explicit `provider/model` form."""
    gateway.admin(
        "POST",
        "/admin/v1/providers",
        {"name": GEMINI_PROVIDER, "kind": "gemini", "base_url": mock.base_url, "api_key": MOCK_KEY},
    )
    return GEMINI_PROVIDER
