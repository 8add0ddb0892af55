#!/usr/bin/env bash
# Soak benchmark: Gatehouse under a long mixed load, in front of the mock
# upstream (benches/mock_upstream.rs), driven by benches/soak.rs.
#
#   bash benches/soak.sh                          # 600 s at 256 connections, release build
#   SOAK_SECONDS=45 CONNS=64 PROFILE=debug bash benches/soak.sh   # the short run of .ci/run
#
# Knobs (environment): SOAK_SECONDS (600), CONNS (256), WINDOW (60; 10 when
# SOAK_SECONDS < 120), USERS (32), PROFILE (release|debug; debug builds nothing
# new when the tests were built), RESULTS (a file to write the report to,
# default benches/soak-results.md for release runs, none for debug),
# NO_BUILD=1 uses the binaries already built, KEEP_TMP=1 keeps the temp home
# and logs.
#
# Starts the mock upstream and the gateway (sled, in a temp home) with 32
# users, each with a gateway token; then the driver runs CONNS connections,
# each acting as one user and looping over sign-ins, chat completions,
# streaming completions, durable tasks and model lists. It prints, per time
# window, the requests, errors, p50 and p99 and the gateway's RSS, then the
# totals by kind. Exits non-zero if any request failed or the gateway died.
# The per-address rate limit on sign-in is lifted (every connection comes
# from 127.0.0.1); everything else runs with its defaults.
set -euo pipefail

RUN_SECONDS=${SOAK_SECONDS:-600}
CONNS=${CONNS:-256}
USERS=${USERS:-32}
PROFILE=${PROFILE:-release}
if ((RUN_SECONDS < 120)); then WINDOW=${WINDOW:-10}; else WINDOW=${WINDOW:-60}; fi
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ $PROFILE == release ]]; then RESULTS=${RESULTS:-$ROOT/benches/soak-results.md}; else RESULTS=${RESULTS:-}; fi

log() { printf '[soak] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

cd "$ROOT"
if [[ -n ${NO_BUILD:-} ]]; then
    log "using the binaries already built ($PROFILE)"
elif [[ $PROFILE == release ]]; then
    log "building gatehouse, mock_upstream and soak (--release)"
    cargo build --release --quiet --bin gatehouse --example mock_upstream --example soak
else
    cargo build --quiet --bin gatehouse --example mock_upstream --example soak
fi
TARGET_DIR=$(cargo metadata --no-deps --format-version 1 | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
DIR=$TARGET_DIR/$PROFILE
GW_BIN=$DIR/gatehouse
MOCK_BIN=$DIR/examples/mock_upstream
SOAK_BIN=$DIR/examples/soak
[[ -x $GW_BIN && -x $MOCK_BIN && -x $SOAK_BIN ]] || die "binaries not found under $DIR"

TMP=$(mktemp -d -t gatehouse-soak.XXXXXX)
GW_PID=; MOCK_PID=
stop_pid() {
    local pid=$1
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$GW_PID"
    stop_pid "$MOCK_PID"
    if ((rc != 0)); then
        log "gateway WARN/ERROR lines by message (count, message):"
        sed 's/\x1b\[[0-9;]*m//g' "$TMP/gateway.err" 2>/dev/null |
            awk '$2 == "WARN" || $2 == "ERROR" { $1 = ""; print substr($0, 2, 240) }' |
            sort | uniq -c | sort -rn | head -n 10 >&2 || true
        log "temp dir kept: $TMP"
    elif [[ -n ${KEEP_TMP:-} ]]; then
        log "temp dir kept: $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
    local p=$1
    while port_busy "$p" || [[ $p == "${TAKEN:-}" ]]; do p=$((p + 1)); done
    echo "$p"
}
MOCK_PORT=$(free_port "${MOCK_PORT:-18281}")
TAKEN=$MOCK_PORT
GW_PORT=$(free_port "${GW_PORT:-18280}")

"$MOCK_BIN" --port "$MOCK_PORT" --workers 1 >"$TMP/mock.log" 2>&1 &
MOCK_PID=$!
for i in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$MOCK_PORT") 2>/dev/null && break
    kill -0 "$MOCK_PID" 2>/dev/null || die "mock upstream exited: $(cat "$TMP/mock.log")"
    ((i < 100)) || die "mock upstream did not listen on $MOCK_PORT"
    sleep 0.1
done

HOME_DIR=$TMP/home
CONFIG=$TMP/gatehouse.toml
mkdir -p "$HOME_DIR"
cat >"$CONFIG" <<EOF
[server]
port = $GW_PORT
auth_rate_per_minute = 0
metrics = "loopback"

[providers.mock]
type = "openai"
base_url = "http://127.0.0.1:$MOCK_PORT/v1"
api_key = "sk-mock"
models = ["m"]
local = true
EOF
gatehouse_cli() { "$GW_BIN" "$@" --home "$HOME_DIR" --config "$CONFIG"; }

log "creating $USERS users with a token each"
CREDS=$TMP/credentials
: >"$CREDS"
for u in $(seq 1 "$USERS"); do
    pw="soak-password-$u-$RANDOM$RANDOM"
    printf '%s\n' "$pw" | gatehouse_cli users add "soak$u" --password-stdin >/dev/null 2>"$TMP/cli.log" ||
        die "users add: $(cat "$TMP/cli.log")"
    token=$(gatehouse_cli tokens issue --user "soak$u" --name soak 2>"$TMP/cli.log") ||
        die "tokens issue: $(cat "$TMP/cli.log")"
    echo "soak$u $pw $token" >>"$CREDS"
done

GATEHOUSE_LOG=warn "$GW_BIN" serve --home "$HOME_DIR" --config "$CONFIG" --port "$GW_PORT" \
    >"$TMP/gateway.out" 2>"$TMP/gateway.err" &
GW_PID=$!
for i in $(seq 300); do
    grep -q 'listening on' "$TMP/gateway.out" 2>/dev/null && break
    kill -0 "$GW_PID" 2>/dev/null || die "gateway exited: $(tail -n 5 "$TMP/gateway.err")"
    ((i < 300)) || die "gateway did not listen within 30 s"
    sleep 0.1
done
log "gateway pid $GW_PID on :$GW_PORT ($PROFILE); $CONNS connections for $RUN_SECONDS s"

set +e
"$SOAK_BIN" --url "http://127.0.0.1:$GW_PORT" --credentials "$CREDS" --seconds "$RUN_SECONDS" \
    --conns "$CONNS" --window "$WINDOW" --pid "$GW_PID" --model mock/m >"$TMP/report.md"
rc=$?
set -e
cat "$TMP/report.md"
kill -0 "$GW_PID" 2>/dev/null || die "the gateway died during the soak"
if [[ -n $RESULTS ]]; then
    {
        echo "# Soak benchmark"
        echo
        echo "\`bash benches/soak.sh\` on $(date -u +%F), $PROFILE build, $CONNS connections, $RUN_SECONDS s, $USERS users;"
        echo "gateway, mock upstream and driver share the machine's $(getconf _NPROCESSORS_ONLN) CPUs."
        echo
        cat "$TMP/report.md"
    } >"$RESULTS"
    log "report written to $RESULTS"
fi
((rc == 0)) || die "requests failed during the soak (see above)"
log "no errors"
