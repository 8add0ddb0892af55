#!/usr/bin/env bash
# Load benchmark: Gatehouse in front of a mock OpenAI-compatible upstream.
#
#   bash benches/load.sh                     # DURATION=10s CONNS=32
#   DURATION=30s CONNS=64 bash benches/load.sh
#
# Knobs (environment): DURATION (10s), CONNS (32), WARMUP (2s), WRK_THREADS (1),
# KEEP_TMP=1 keeps the temp home, config and logs.
#
# Builds the gatehouse binary and the mock_upstream example (--release), starts
# the mock (pinned to CPU 1) and the gateway (alone on CPU 0), creates a user and
# a gateway token, then runs wrk (pinned to CPU 1, next to the mock) for each
# scenario, once straight at the mock and once through the gateway:
#   a) non-stream at CONNS connections   b) SSE stream at CONNS connections
#   c) non-stream at 1 connection (the latency the gateway adds)
# The gateway's CPU time (utime+stime from /proc/PID/stat) is read around each
# gateway run and divided by the requests wrk completed. Prints a markdown table
# and writes it to benches/load-results.md. Exits non-zero if any request
# through the gateway failed (non-2xx, socket error) or the gateway died.
set -euo pipefail

DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
WARMUP=${WARMUP:-2s}
WRK_THREADS=${WRK_THREADS:-1}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LUA=$ROOT/benches/wrk_post.lua
RESULTS=$ROOT/benches/load-results.md

log() { printf '[load] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---- tools ---------------------------------------------------------------
need_apt=()
command -v wrk >/dev/null || need_apt+=(wrk)
command -v curl >/dev/null || need_apt+=(curl)
command -v taskset >/dev/null || need_apt+=(util-linux)
if ((${#need_apt[@]})); then
    log "installing ${need_apt[*]} from Debian"
    SUDO=; [[ $(id -u) -eq 0 ]] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
ncpu=$(getconf _NPROCESSORS_ONLN)
((ncpu >= 2)) || die "needs at least 2 CPUs (gateway on CPU 0, mock and wrk on CPU 1), have $ncpu"
CLK_TCK=$(getconf CLK_TCK)

# ---- build ---------------------------------------------------------------
cd "$ROOT"
log "building gatehouse and the mock_upstream example (--release)"
cargo build --release --quiet --bin gatehouse --example mock_upstream
TARGET_DIR=$(cargo metadata --no-deps --format-version 1 | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
GW_BIN=$TARGET_DIR/release/gatehouse
MOCK_BIN=$TARGET_DIR/release/examples/mock_upstream
[[ -x $GW_BIN && -x $MOCK_BIN ]] || die "built binaries not found under $TARGET_DIR/release"

# ---- processes and cleanup -----------------------------------------------
TMP=$(mktemp -d -t gatehouse-load.XXXXXX)
GW_PID=; MOCK_PID=; WRK_PID=; FAILED=0
GW_ERR=$TMP/gateway.stderr.log
GW_OUT=$TMP/gateway.stdout.log
MOCK_LOG=$TMP/mock.log

plain_log() { sed 's/\x1b\[[0-9;]*m//g' "$1"; } # without ANSI colours

# The gateway's WARN/ERROR lines, grouped by message (timestamp dropped), most frequent first.
log_summary() {
    plain_log "$GW_ERR" | awk '$2 == "WARN" || $2 == "ERROR" { $1 = ""; print substr($0, 2, 240) }' |
        sort | uniq -c | sort -rn | head -n "${1:-5}"
}

stop_pid() {
    local pid=$1
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$WRK_PID"
    stop_pid "$GW_PID"
    stop_pid "$MOCK_PID"
    if ((rc != 0 || FAILED)); then
        if [[ -s $GW_ERR ]]; then
            log "gateway WARN/ERROR lines by message (count, message):"
            log_summary 10 >&2
            log "gateway log (last 15 lines of $GW_ERR):"
            plain_log "$GW_ERR" | tail -n 15 | cut -c1-400 >&2
        fi
        if [[ -s $MOCK_LOG ]] && grep -qiv 'listening' "$MOCK_LOG"; then
            log "mock log (last 10 lines):"
            tail -n 10 "$MOCK_LOG" >&2
        fi
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
MOCK_PORT=$(free_port "${MOCK_PORT:-18181}")
TAKEN=$MOCK_PORT
GW_PORT=$(free_port "${GW_PORT:-18180}")

# ---- mock upstream (CPU 1) -----------------------------------------------
taskset -c 1 "$MOCK_BIN" --port "$MOCK_PORT" --workers 1 >"$MOCK_LOG" 2>&1 &
MOCK_PID=$!
for i in $(seq 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$MOCK_PORT/v1/models" 2>/dev/null && break
    kill -0 "$MOCK_PID" 2>/dev/null || die "mock upstream exited: $(cat "$MOCK_LOG")"
    ((i < 100)) || die "mock upstream did not answer on port $MOCK_PORT"
    sleep 0.1
done
log "mock upstream on 127.0.0.1:$MOCK_PORT (pid $MOCK_PID, CPU 1)"

# ---- gateway (CPU 0) -----------------------------------------------------
HOME_DIR=$TMP/home
CONFIG=$TMP/gatehouse.toml
mkdir -p "$HOME_DIR"
cat >"$CONFIG" <<EOF
[server]
port = $GW_PORT
# One token drives every connection: lift the per-principal cap on open
# streams (default 16), or the SSE runs would measure 429s.
max_streams_per_principal = 0

[providers.mock]
type = "openai"
base_url = "http://127.0.0.1:$MOCK_PORT/v1"
api_key = "sk-mock"
models = ["m"]
local = true

# The task-creation run creates tasks far faster than 4 slots run them: lift
# the backlog bound (default 10,000), or it would measure 429 task_queue_full.
[tasks]
max_queued = 0
EOF
GATEHOUSE_LOG=warn taskset -c 0 "$GW_BIN" serve --home "$HOME_DIR" --config "$CONFIG" --port "$GW_PORT" \
    >"$GW_OUT" 2>"$GW_ERR" &
GW_PID=$!
for i in $(seq 300); do
    grep -q 'listening on' "$GW_OUT" 2>/dev/null && break
    kill -0 "$GW_PID" 2>/dev/null || die "gateway exited before listening"
    ((i < 300)) || die "gateway did not start listening within 30s"
    sleep 0.1
done
log "gateway on 127.0.0.1:$GW_PORT (pid $GW_PID, CPU 0)"

gatehouse_cli() { "$GW_BIN" "$@" --home "$HOME_DIR" --config "$CONFIG"; }
printf '%s\n' 'bench-password-0123' | gatehouse_cli users add bench --password-stdin >"$TMP/users-add.log" 2>&1 \
    || die "users add failed: $(cat "$TMP/users-add.log")"
TOKEN=$(gatehouse_cli tokens issue --user bench --name load 2>"$TMP/tokens-issue.log" | tail -n 1) \
    || die "tokens issue failed: $(cat "$TMP/tokens-issue.log")"
[[ $TOKEN == gh_* ]] || die "tokens issue printed no gh_ token: '$TOKEN' $(cat "$TMP/tokens-issue.log")"

DIRECT_URL=http://127.0.0.1:$MOCK_PORT/v1/chat/completions
GW_URL=http://127.0.0.1:$GW_PORT/v1/chat/completions
MSG='"messages":[{"role":"user","content":"hi"}]'
# The gateway asks its upstream for the usage chunk, so the direct stream run does too.
DIRECT_BODY="{\"model\":\"m\",$MSG}"
DIRECT_STREAM_BODY="{\"model\":\"m\",$MSG,\"stream\":true,\"stream_options\":{\"include_usage\":true}}"
GW_BODY="{\"model\":\"mock/m\",$MSG}"
GW_STREAM_BODY="{\"model\":\"mock/m\",$MSG,\"stream\":true}"

# One request each way through the gateway before any load.
check_one() {
    local body=$1 what=$2 code
    code=$(curl -sS -o "$TMP/check.out" -w '%{http_code}' -X POST "$GW_URL" \
        -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d "$body") || true
    [[ $code == 200 ]] || die "$what through the gateway answered HTTP $code: $(head -c 500 "$TMP/check.out")"
}
check_one "$GW_BODY" "a chat completion"
check_one "$GW_STREAM_BODY" "a streamed chat completion"
grep -q 'data: \[DONE\]' "$TMP/check.out" || die "the streamed answer has no [DONE]: $(head -c 500 "$TMP/check.out")"
log "user and token ready, one request each way answered 200"

# ---- measuring -----------------------------------------------------------
cpu_ticks() { # utime + stime of a process, in clock ticks
    local stat
    stat=$(cat "/proc/$1/stat") || return 1
    stat=${stat##*) }            # drop "pid (comm) ": field 3 (state) comes first
    awk '{ print $12 + $13 }' <<<"$stat"
}

cpu_busy() { # busy ticks (all but idle and iowait) of one CPU, from /proc/stat
    awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}

children_ticks() { # cutime + cstime of this shell: the CPU time of the wrk runs it waited for
    local stat
    stat=$(cat "/proc/$$/stat")
    stat=${stat##*) }
    awk '{ print $14 + $15 }' <<<"$stat"
}

# wrk_run OUT CONNS DURATION URL BODY [TOKEN]
# Also sets GW_TICKS (the gateway's CPU ticks during the run) and OTHERS0 and
# OTHERS1: the share (%) of CPU 0 and CPU 1 used by anything but the gateway,
# the mock and wrk — other processes disturbing the measurement.
wrk_run() {
    local out=$1 c=$2 d=$3 url=$4 body=$5 token=${6:-} t=$WRK_THREADS
    ((t <= c)) || t=$c
    local b0 b1 g0 m0 w0 ns0 g1 m1 w1 ns1
    b0=$(cpu_busy 0) b1=$(cpu_busy 1) w0=$(children_ticks) ns0=$(date +%s%N)
    g0=$(cpu_ticks "$GW_PID") || die "gateway (pid $GW_PID) is gone"
    m0=$(cpu_ticks "$MOCK_PID") || die "mock upstream (pid $MOCK_PID) is gone"
    WRK_BODY=$body WRK_TOKEN=$token WRK_IDEMPOTENCY=${WRK_IDEMPOTENCY:-} taskset -c 1 \
        wrk -t"$t" -c"$c" -d"$d" --timeout 5s --latency -s "$LUA" "$url" >"$out" 2>&1 &
    WRK_PID=$!
    local rc=0
    wait "$WRK_PID" || rc=$?
    WRK_PID=
    ((rc == 0)) || { cat "$out" >&2; die "wrk failed ($rc)"; }
    g1=$(cpu_ticks "$GW_PID") || die "gateway (pid $GW_PID) died during the run ($out)"
    m1=$(cpu_ticks "$MOCK_PID") || die "mock upstream (pid $MOCK_PID) died during the run ($out)"
    w1=$(children_ticks) ns1=$(date +%s%N)
    b0=$(($(cpu_busy 0) - b0)) b1=$(($(cpu_busy 1) - b1))
    GW_TICKS=$((g1 - g0))
    local wall=$(((ns1 - ns0) / 1000)) # µs
    OTHERS0=$(awk -v o=$((b0 - GW_TICKS)) -v hz="$CLK_TCK" -v w="$wall" 'BEGIN { o = o / hz * 1e8 / w; printf "%.0f", (o < 0 ? 0 : o) }')
    OTHERS1=$(awk -v o=$((b1 - (m1 - m0) - (w1 - w0))) -v hz="$CLK_TCK" -v w="$wall" 'BEGIN { o = o / hz * 1e8 / w; printf "%.0f", (o < 0 ? 0 : o) }')
}

# disturbed LABEL: a warning and a note when other processes took over 10% of a CPU in the last run
disturbed() {
    if ((OTHERS0 > 10 || OTHERS1 > 10)); then
        DISTURBED=1
        log "  warning: other processes used ${OTHERS0}% of CPU 0 and ${OTHERS1}% of CPU 1 during $1"
        NOTES+=("- $1: other processes used ${OTHERS0}% of CPU 0 and ${OTHERS1}% of CPU 1")
    fi
}

to_us() { # wrk duration (312.00us, 1.23ms, 1.02s, 1.50m) -> microseconds
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") m = 1; else if (u == "ms") m = 1000; else if (u == "s") m = 1e6
        else if (u == "m") m = 6e7; else if (u == "h") m = 3.6e9; else m = -1
        if (m < 0) print "nan"; else printf "%.1f", n * m }'
}

# Sets RPS REQS P50 P99 (µs) NON2XX SOCKERR from a wrk output file.
wrk_parse() {
    local f=$1
    RPS=$(awk '/^Requests\/sec:/ { print $2 }' "$f")
    REQS=$(awk '/requests in/ { print $1 }' "$f")
    P50=$(to_us "$(awk '$1 == "50%" { print $2 }' "$f")")
    P99=$(to_us "$(awk '$1 == "99%" { print $2 }' "$f")")
    NON2XX=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$f")
    NON2XX=${NON2XX:-0}
    SOCKERR=$(awk '/Socket errors:/ { gsub(",", ""); print $4 + $6 + $8 + $10 }' "$f")
    SOCKERR=${SOCKERR:-0}
    [[ -n $RPS && -n $REQS ]] || { cat "$f" >&2; die "could not parse wrk output $f"; }
}

ms() { awk -v u="$1" 'BEGIN { if (u == "nan") print "?"; else printf "%.3f ms", u / 1000 }'; }

ROWS=()
NOTES=()
DISTURBED=0
# scenario NAME CONNS DIRECT_BODY GW_BODY
scenario() {
    local name=$1 c=$2 dbody=$3 gbody=$4 f
    log "scenario: $name — warm-up $WARMUP each, then $DURATION direct and $DURATION through the gateway"
    wrk_run "$TMP/warm-direct.txt" "$c" "$WARMUP" "$DIRECT_URL" "$dbody"
    f=$TMP/$(tr -cs 'a-z0-9' '_' <<<"${name,,}")
    wrk_run "$f.direct.txt" "$c" "$DURATION" "$DIRECT_URL" "$dbody"
    disturbed "$name, direct"
    wrk_parse "$f.direct.txt"
    local d_rps=$RPS d_p50=$P50 d_p99=$P99 d_err=$((NON2XX + SOCKERR))

    wrk_run "$TMP/warm-gw.txt" "$c" "$WARMUP" "$GW_URL" "$gbody" "$TOKEN"
    wrk_run "$f.gateway.txt" "$c" "$DURATION" "$GW_URL" "$gbody" "$TOKEN"
    disturbed "$name, through the gateway"
    wrk_parse "$f.gateway.txt"
    local g_rps=$RPS g_p50=$P50 g_p99=$P99 g_reqs=$REQS g_non2xx=$NON2XX g_sock=$SOCKERR

    local ratio added cpu busy errs
    ratio=$(awk -v g="$g_rps" -v d="$d_rps" 'BEGIN { printf "%.2f", (d > 0 ? g / d : 0) }')
    added=$(awk -v g="$g_p50" -v d="$d_p50" 'BEGIN { if (g == "nan" || d == "nan") print "?"; else printf "%+.3f ms", (g - d) / 1000 }')
    cpu=$(awk -v t="$GW_TICKS" -v hz="$CLK_TCK" -v n="$g_reqs" 'BEGIN { printf "%.1f", (n > 0 ? t * 1e6 / hz / n : 0) }')
    busy=$(awk -v c="$cpu" -v r="$g_rps" 'BEGIN { printf "%.0f", c * r / 1e4 }')
    errs="0"
    if ((g_non2xx + g_sock > 0)); then
        errs="**$g_non2xx non-2xx, $g_sock socket**"
        FAILED=1
        log "FAIL: $name through the gateway: $g_non2xx non-2xx responses, $g_sock socket errors (of $g_reqs)"
        sed -n '/requests in/,$p' "$f.gateway.txt" >&2
    fi
    ((d_err == 0)) || NOTES+=("- $name: $d_err failed requests straight to the mock")
    ROWS+=("| $name | $(printf '%.0f' "$d_rps") | $(printf '%.0f' "$g_rps") | $ratio | $(ms "$d_p50") | $(ms "$g_p50") | $(ms "$d_p99") | $(ms "$g_p99") | $added | $cpu | $errs |")
    NOTES+=("- $name: the gateway kept CPU 0 ${busy}% busy ($GW_TICKS ticks at $CLK_TCK/s for $g_reqs requests)")
    log "  direct $(printf '%.0f' "$d_rps") rps, gateway $(printf '%.0f' "$g_rps") rps, gateway CPU ${cpu} µs/req"
    kill -0 "$GW_PID" 2>/dev/null || die "gateway died during $name"
}

scenario "non-stream, $CONNS conns" "$CONNS" "$DIRECT_BODY" "$GW_BODY"
scenario "SSE stream, $CONNS conns" "$CONNS" "$DIRECT_STREAM_BODY" "$GW_STREAM_BODY"
scenario "non-stream, 1 conn" 1 "$DIRECT_BODY" "$GW_BODY"

# Task creation with idempotency keys against plain chat completions, both
# through the gateway to the same mock, in this run. Each created task is a
# durable write (task, first event and key in one store transaction) and then
# runs in the background ([tasks] concurrency at once), which the creation
# run competes with, as it would in production.
TASK_URL=http://127.0.0.1:$GW_PORT/v1/tasks
TASK_BODY="{\"kind\":\"chat.completion\",\"input\":{\"model\":\"mock/m\",$MSG}}"
log "scenario: task creation — $DURATION of chat completions, then $DURATION of task creation, both through the gateway"
wrk_run "$TMP/tasks-chat.txt" "$CONNS" "$DURATION" "$GW_URL" "$GW_BODY" "$TOKEN"
wrk_parse "$TMP/tasks-chat.txt"
chat_rps=$RPS chat_p50=$P50 chat_p99=$P99
WRK_IDEMPOTENCY=1 wrk_run "$TMP/tasks-create.txt" "$CONNS" "$DURATION" "$TASK_URL" "$TASK_BODY" "$TOKEN"
disturbed "task creation"
wrk_parse "$TMP/tasks-create.txt"
task_cpu=$(awk -v t="$GW_TICKS" -v hz="$CLK_TCK" -v n="$REQS" 'BEGIN { printf "%.1f", (n > 0 ? t * 1e6 / hz / n : 0) }')
if ((NON2XX + SOCKERR > 0)); then
    FAILED=1
    log "FAIL: task creation: $NON2XX non-2xx responses, $SOCKERR socket errors (of $REQS)"
fi
TASK_ROW="| task creation (POST /v1/tasks, a new Idempotency-Key each), $CONNS conns | $(printf '%.0f' "$chat_rps") | $(printf '%.0f' "$RPS") | $(awk -v t="$RPS" -v c="$chat_rps" 'BEGIN { printf "%.2f", (c > 0 ? t / c : 0) }') | $(ms "$chat_p50") | $(ms "$P50") | $(ms "$chat_p99") | $(ms "$P99") | $task_cpu | $((NON2XX + SOCKERR)) |"

# ---- report --------------------------------------------------------------
if ((DISTURBED)); then
    NOTES+=("- **other processes took more than 10% of a CPU during a measured run: these numbers are disturbed, run again on a quiet machine**")
fi
NOTES+=("- direct runs have wrk and the mock on the same CPU, so a request never wakes the other CPU; through the gateway each request crosses CPUs four times (wrk→gateway→mock→gateway→wrk), and on a VM every cross-CPU wake-up costs tens of µs. The 1-connection \"added p50\" and CPU µs/req include that cost; the CPU µs/req at $CONNS connections is closer to the gateway's own work.")
warn_lines=$(plain_log "$GW_ERR" | awk '$2 == "WARN" || $2 == "ERROR"' | wc -l)
if ((warn_lines > 1)); then
    NOTES+=("- the gateway logged $warn_lines WARN/ERROR lines; most frequent:")
    while IFS= read -r line; do NOTES+=("  - \`$line\`"); done < <(log_summary 3 | sed 's/^ *//' | tr '`' "'" | cut -c1-300)
fi
{
    echo "# Gatehouse load benchmark"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' (dirty)'), $ncpu CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)). wrk $WRK_THREADS thread(s), $DURATION per run after a $WARMUP warm-up; gateway alone on CPU 0, mock upstream (1 worker) and wrk on CPU 1; GATEHOUSE_LOG=warn."
    echo
    echo "| scenario | direct rps | gateway rps | ratio | direct p50 | gateway p50 | direct p99 | gateway p99 | added p50 | gateway CPU µs/req | gateway errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "| scenario (through the gateway) | chat rps | task rps | ratio | chat p50 | task p50 | chat p99 | task p99 | gateway CPU µs/task | errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    echo "$TASK_ROW"
    echo
    printf '%s\n' "${NOTES[@]}"
} >"$RESULTS"
echo
cat "$RESULTS"
echo
log "written to ${RESULTS#"$ROOT"/}"
if ((FAILED)); then
    log "some requests through the gateway failed"
    exit 1
fi
