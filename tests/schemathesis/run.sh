#!/usr/bin/env bash
# schemathesis against a running Gatehouse admin API (issue 7): generated valid and invalid
# inputs for every operation of /admin/v1/openapi.json; fails on any 5xx or any response that
# breaks the documented schema (the one error shape included).
#
#   GATEHOUSE_ADMIN_TOKEN=<operator token> bash tests/schemathesis/run.sh http://127.0.0.1:8081
#
# Run by tests/python/test_admin_openapi.py (part of scripts/test, hence .ci/run) against a
# throwaway server. Creates tests/schemathesis/.venv on first use (pinned requirements.txt).
# Runtime is bounded: few examples per operation, a fixed seed, one worker (about a minute).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
url="${1:?usage: run.sh ADMIN_BASE_URL}"
: "${GATEHOUSE_ADMIN_TOKEN:?set GATEHOUSE_ADMIN_TOKEN to an operator token}"

stamp="$venv/.requirements.sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/schemathesis" ]] || [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    echo "run.sh: creating $venv" >&2
    "${PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    echo "$want" > "$stamp"
fi

# schemathesis keeps a cache in the working directory: keep it out of the tree
cd "$(mktemp -d)"
exec "$venv/bin/schemathesis" run "$url/admin/v1/openapi.json" \
    --checks not_a_server_error,response_schema_conformance \
    --header "Authorization: Bearer $GATEHOUSE_ADMIN_TOKEN" \
    --phases examples,coverage,fuzzing \
    --max-examples "${GATEHOUSE_ST_MAX_EXAMPLES:-20}" \
    --seed "${GATEHOUSE_ST_SEED:-20261130}" \
    --workers 1 \
    --request-timeout 20 \
    --generation-database none \
    --suppress-health-check all \
    --output-sanitize true \
    --no-color
