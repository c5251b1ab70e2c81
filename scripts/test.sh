#!/usr/bin/env bash
# The one test command (README, .ci/run): installs and starts what the tests need on
# a fresh machine, then runs the whole suite. Services the tests use:
#   - PostgreSQL: the machine's server on 127.0.0.1:5432 (started if down, installed
#     with apt if missing); override with OPNET_TEST_PG=postgres://…
#   - SMTP capture: aiosmtpd (PyPI), started by each end-to-end test on a free port
#   - S3: moto (PyPI `moto[s3]`, with flask + flask-cors for its server), started by
#     tests/e2e_s3.rs on a free loopback port (in memory, any credentials); its boto3
#     is the independent client that uploads sources and inspects the S3 lake
#   - pyarrow + duckdb (PyPI): independent readers of the lake's Parquet
#   - Chromium (Debian): renders the network-health report to a PNG under
#     target/test-artifacts/
#   - deploy/validate.sh: hadolint, yamllint, kubectl kustomize, kubernetes-validate,
#     systemd-analyze on deploy/ (its tools from PyPI, in a cached virtualenv)
# OPNET_REQUIRE_SERVICES=1 makes a test fail (never skip) when a service is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

log "PostgreSQL"
export OPNET_TEST_PG="${OPNET_TEST_PG:-postgres://postgres@127.0.0.1:5432/postgres}"
pg_ready() { command -v pg_isready >/dev/null && pg_isready -h 127.0.0.1 -p 5432 -q; }
if ! pg_ready; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-upgrade postgresql >/dev/null
  fi
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  for _ in $(seq 1 30); do pg_ready && break; sleep 1; done
fi
pg_ready || { echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }

log "Python test helpers (aiosmtpd, pyarrow, duckdb, moto)"
if ! python3 -c 'import aiosmtpd, pyarrow, duckdb, moto, boto3, flask, flask_cors' 2>/dev/null; then
  python3 -m pip install -q --disable-pip-version-check aiosmtpd pyarrow duckdb "moto[s3]" flask flask-cors
fi

log "Chromium (renders the leadership report in a test)"
if ! command -v chromium >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

log "cargo test"
export OPNET_REQUIRE_SERVICES=1
export RUST_BACKTRACE=1
status=0
cargo test --workspace --no-fail-fast "$@" || status=$?

# The deployment files, statically (no Docker daemon or cluster here): linters and
# schemas from PyPI in a cached virtualenv, and `opnet check` of the ConfigMap with
# the binary the tests just built.
log "deploy/ (static validation)"
OPNET_BIN="${CARGO_TARGET_DIR:-target}/debug/opnet" bash deploy/validate.sh || status=1
exit "$status"
