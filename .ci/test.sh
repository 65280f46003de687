#!/usr/bin/env bash
# The test suite with its real services: a throwaway PostgreSQL for the consent ledger and job records.
# The Ray Serve tests run in a pytest process of their own (each module starts Ray in-process); the
# two-node cluster test starts its own `ray start` cluster and runs in a third, so no in-process Ray
# state (address, auth token) of the other modules reaches it.
set -uo pipefail
cd "$(dirname "$0")/.."
pg_env=$(.ci/postgres.sh start) || { echo "ci: PostgreSQL did not start (above)" >&2; exit 1; }
eval "$pg_env"
trap '.ci/postgres.sh stop >/dev/null 2>&1 || true' EXIT
cluster_test=tests/test_serve_cluster.py
serve_tests=()
for test in tests/test_serve_*.py; do [ "$test" = "$cluster_test" ] || serve_tests+=("$test"); done
.venv/bin/python -m pytest -q --durations=15 $(printf -- '--ignore=%s ' "${serve_tests[@]}" "$cluster_test") "$@"
library=$?
.venv/bin/python -m pytest -q --durations=10 "${serve_tests[@]}"
serving=$?
.venv/bin/python -m pytest -q --durations=3 "$cluster_test"
cluster=$?
exit $(( library || serving || cluster ))
