#!/usr/bin/env bash
# The test suite with its real services: a throwaway PostgreSQL for the consent ledger.
set -uo pipefail
cd "$(dirname "$0")/.."
eval "$(.ci/postgres.sh start)"
trap '.ci/postgres.sh stop >/dev/null 2>&1 || true' EXIT
.venv/bin/python -m pytest -q --durations=15 "$@"
