#!/usr/bin/env bash
# Real-client suite: the official `openai` and `anthropic` Python SDKs against
# `gatehouse-mock` (test_mock_sdks.py) and against the `gatehouse` binary (test_gateway_*.py).
#
#   bash tests/python/run.sh [pytest args…]
#
# Creates tests/python/.venv on first use (pinned requirements.txt), builds the two binaries
# (target/debug/gatehouse-mock, target/debug/gatehouse), then runs pytest.
#
# Environment:
#   GATEHOUSE_PY_BUILD   all (default: mock + gateway) | mock (only gatehouse-mock) | none
#   GATEHOUSE_PY_STRICT  1 → a missing/unbuildable gateway binary fails the gateway tests
#                        instead of skipping them (set this in CI)
#   GATEHOUSE_BIN, GATEHOUSE_MOCK_BIN  override the binary paths
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"

stamp="$venv/.requirements.sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" ]] || [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    echo "run.sh: creating $venv" >&2
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    echo "$want" > "$stamp"
fi

build="${GATEHOUSE_PY_BUILD:-all}"
cd "$root"
case "$build" in
    none) ;;
    mock) cargo build --quiet -p gatehouse-testkit --bins ;;
    all)
        cargo build --quiet -p gatehouse-testkit --bins
        if ! cargo build --quiet -p gatehouse-server --bins; then
            if [[ "${GATEHOUSE_PY_STRICT:-0}" == "1" ]]; then
                echo "run.sh: building gatehouse-server failed" >&2
                exit 1
            fi
            echo "run.sh: WARNING: building gatehouse-server failed; gateway tests will be skipped" >&2
            export GATEHOUSE_PY_SKIP_GATEWAY="building gatehouse-server failed (see cargo output above)"
        fi
        ;;
    *) echo "run.sh: GATEHOUSE_PY_BUILD must be all, mock or none" >&2; exit 2 ;;
esac

export GATEHOUSE_ROOT="$root"
cd "$here"
exec "$venv/bin/python" -m pytest "$@"
