#!/usr/bin/env bash
# The test suite with its real services: a throwaway PostgreSQL for the consent ledger.
# The Ray Serve tests run in a pytest process of their own: each module starts Ray in-process.
set -uo pipefail
cd "$(dirname "$0")/.."
eval "$(.ci/postgres.sh start)"
trap '.ci/postgres.sh stop >/dev/null 2>&1 || true' EXIT
serve_tests=(tests/test_serve_*.py)
.venv/bin/python -m pytest -q --durations=15 $(printf -- '--ignore=%s ' "${serve_tests[@]}") "$@"
library=$?
.venv/bin/python -m pytest -q --durations=5 "${serve_tests[@]}"
serving=$?
exit $(( library || serving ))
