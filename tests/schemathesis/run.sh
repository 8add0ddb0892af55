#!/usr/bin/env bash
# Property-based API test: schemathesis generates requests from the OpenAPI
# document that the server serves at /openapi.json and checks every answer
# against it (no 5xx, documented status, content type and schema).
#
# Builds nothing: it runs the debug binary already built by `cargo build`
# (or `cargo test`) at ${CARGO_TARGET_DIR:-target}/debug/gatehouse, with a
# fresh home, one admin user and an admin-scoped token, and a tiny fake
# OpenAI-compatible upstream on loopback (fake_upstream.py) so that the
# model routes are exercised end to end.
#
# Environment: ST_MAX_EXAMPLES (default 60) test cases per operation,
# ST_SEED (default 1) for a reproducible run, ST_WORKERS (default 2).
#
# Exclusions and limits, each on purpose:
# - The `stateful` phase is not run: its chains need OpenAPI links, which
#   the document does not define. Every other phase runs (examples,
#   coverage, fuzzing), in positive and negative modes.
# - Random credentials are not generated (`--generation-with-security-
#   parameters false`): every request carries the admin's token (hooks.py),
#   so the routes are exercised past authentication. Schemathesis reuses ids
#   from answers, so a generated request may revoke that token (it is listed
#   by `GET /api/tokens`): hooks.py then issues a new one with the CLI. The
#   admin cannot lock or delete themselves (409): checked after the run.
# - Egress is limited to 127.0.0.1 (`[egress] allow_hosts`): a provider that
#   the fuzzer adds can only point at this machine.
# - No operation is excluded: the SSE routes answer a finite stream (the
#   fake upstream ends its stream; a task's events end after its final
#   status) or an error for an unknown task.
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN="${CARGO_TARGET_DIR:-target}/debug/gatehouse"
if [ ! -x "$BIN" ]; then
  echo "no $BIN: build it first (cargo build)" >&2
  exit 2
fi
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
command -v schemathesis >/dev/null || {
  echo "schemathesis is not installed: python3 -m pip install schemathesis" >&2
  exit 2
}

WORK="$(mktemp -d)"
HOME_DIR="$WORK/home"
mkdir -p "$HOME_DIR"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

UPSTREAM_PORT="$(free_port)"
python3 tests/schemathesis/fake_upstream.py "$UPSTREAM_PORT" &
PIDS+=($!)

PORT="$(free_port)"
cat >"$HOME_DIR/gatehouse.toml" <<TOML
[server]
host = "127.0.0.1"
port = $PORT
# Token issuing is fuzzed too: a per-address budget this small would answer
# most of those requests 429 (documented, but then nothing past it is tested).
auth_rate_per_minute = 100000

[providers.fake]
type = "openai"
base_url = "http://127.0.0.1:$UPSTREAM_PORT/v1"
api_key = "sk-schemathesis"
models = ["echo"]
local = true

[models]
default = "fake/echo"

[egress]
allow_hosts = ["127.0.0.1"]
TOML

# No sign-in method from the environment: GitHub stays off.
unset GITHUB_CLIENT_ID GITHUB_CLIENT_SECRET GITHUB_USERS
export GATEHOUSE_HOME="$HOME_DIR"
gh() { "$BIN" --home "$HOME_DIR" "$@"; }

printf 'schemathesis-admin-password\n' | gh users add admin --admin --password-stdin >/dev/null
TOKEN="$(gh tokens issue --user admin --name schemathesis --scope read,write,admin 2>/dev/null)"
case "$TOKEN" in
  gh_*) ;;
  *) echo "could not issue a token" >&2; exit 1 ;;
esac

# The binary itself (not the `gh` function, whose subshell would be the one killed).
"$BIN" --home "$HOME_DIR" serve --host 127.0.0.1 --port "$PORT" >"$WORK/server.log" 2>&1 &
PIDS+=($!)
SERVER_PID=$!
BASE="http://127.0.0.1:$PORT"
for _ in $(seq 1 100); do
  if curl -fsS "$BASE/ready" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "the server exited:" >&2
    cat "$WORK/server.log" >&2
    exit 1
  fi
  sleep 0.2
done
curl -fsS "$BASE/ready" >/dev/null || { echo "the server is not ready" >&2; cat "$WORK/server.log" >&2; exit 1; }
curl -fsS -H "Authorization: Bearer $TOKEN" "$BASE/v1/models" | grep -q '"fake/echo"' || {
  echo "the fake provider is not offered" >&2
  exit 1
}

start=$(date +%s)
status=0
# From the temporary directory: schemathesis keeps its cache in the current one.
HOOKS_DIR="$PWD/tests/schemathesis"
cd "$WORK"
GATEHOUSE_BIN="$BIN" ST_BASE="$BASE" ST_TOKEN="$TOKEN" \
  PYTHONPATH="$HOOKS_DIR${PYTHONPATH:+:$PYTHONPATH}" SCHEMATHESIS_HOOKS=hooks \
  schemathesis run "$BASE/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing \
  --mode all \
  --max-examples "${ST_MAX_EXAMPLES:-60}" \
  --seed "${ST_SEED:-1}" \
  --workers "${ST_WORKERS:-2}" \
  --generation-with-security-parameters false \
  --request-timeout 30 \
  --suppress-health-check all \
  --no-color \
  || status=$?
echo "schemathesis: exit $status in $(( $(date +%s) - start )) s"

# The server must not have crashed, and no generated request may have
# locked the admin out: a new token of theirs still works.
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  echo "the server died during the run:" >&2
  tail -n 50 "$WORK/server.log" >&2
  exit 1
fi
AFTER="$(gh tokens issue --user admin --name after-run --scope read,write,admin 2>/dev/null || true)"
code="$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $AFTER" "$BASE/admin/api/users")"
if [ "$code" != 200 ]; then
  echo "after the run a new admin token gets $code on /admin/api/users; the users now:" >&2
  gh users list >&2 || true
  status=1
fi
# actix-http logs malformed requests (the negative cases) at ERROR itself.
if grep -v 'actix_http::h1::dispatcher' "$WORK/server.log" | grep -q 'ERROR\|panicked'; then
  echo "the server logged errors:" >&2
  grep -v 'actix_http::h1::dispatcher' "$WORK/server.log" | grep 'ERROR\|panicked' | head -n 20 >&2
  status=1
fi
if [ "$status" != 0 ]; then
  keep="$(dirname "$BIN")/schemathesis-server.log"
  cp "$WORK/server.log" "$keep" && echo "the server's log: $keep" >&2
fi
exit "$status"
