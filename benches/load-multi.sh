#!/usr/bin/env bash
# Load benchmark, several instances: two Gatehouse instances sharing one
# PostgreSQL database, against one instance on sled measured in the same run.
#
#   bash benches/load-multi.sh                     # DURATION=10s CONNS=32
#   DURATION=30s CONNS=64 bash benches/load-multi.sh
#
# Knobs (environment): DURATION (10s), CONNS (32, split in half between the two
# instances), WARMUP (2s), WRK_THREADS (1 per wrk process), PG_URL
# (postgres://postgres@127.0.0.1:5432/test), PG_SINGLE (1: also measure one
# instance on PostgreSQL alone; 0: skip it), KEEP_TMP=1 keeps the temp dir,
# NO_BUILD=1 uses the release binaries already in the target dir.
#
# One run:
#   1. builds the gatehouse binary and the mock_upstream example (--release) and
#      starts the mock upstream;
#   2. baseline: one `gatehouse serve` on sled (its own temp home), a user and a
#      gateway token made with the CLI, wrk non-stream chat completions at CONNS
#      connections through it; then stops it;
#   3. starts instance A on PostgreSQL in a fresh schema, makes the user and the
#      token through A's CLI, (PG_SINGLE=1) measures A alone at CONNS
#      connections, then starts instance B on the same database and schema, with
#      its own home and the same GATEHOUSE_MASTER_KEY, and runs two wrk at once,
#      CONNS/2 connections each, one per instance, for the same duration;
#   4. prints a markdown table (rps, p50, p99, ratio against the sled baseline
#      of this run, errors, CPU per request of the gateways and of PostgreSQL)
#      and writes it to benches/load-multi-results.md.
# Nothing is pinned to a CPU: on a 2-core machine two gateways, PostgreSQL, the
# mock and wrk cannot be kept apart, so every scenario gets the same (no)
# placement and the figures compare what the whole machine serves.
# Exits non-zero if any request failed (non-2xx, socket error) or a gateway
# died. Drops the PostgreSQL schema and stops every process it started on exit.
set -euo pipefail

DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
WARMUP=${WARMUP:-2s}
WRK_THREADS=${WRK_THREADS:-1}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
PG_SINGLE=${PG_SINGLE:-1}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LUA=$ROOT/benches/wrk_post.lua
RESULTS=$ROOT/benches/load-multi-results.md

log() { printf '[load-multi] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

((CONNS >= 2 && CONNS % 2 == 0)) || die "CONNS must be an even number >= 2 (split between two instances), is $CONNS"
HALF=$((CONNS / 2))

# ---- tools ---------------------------------------------------------------
need_apt=()
command -v wrk >/dev/null || need_apt+=(wrk)
command -v curl >/dev/null || need_apt+=(curl)
command -v psql >/dev/null || need_apt+=(postgresql-client)
if ((${#need_apt[@]})); then
    log "installing ${need_apt[*]} from Debian"
    SUDO=; [[ $(id -u) -eq 0 ]] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
ncpu=$(getconf _NPROCESSORS_ONLN)
CLK_TCK=$(getconf CLK_TCK)
psql_run() { psql "$PG_URL" -X -q -v ON_ERROR_STOP=1 -Atc "$1"; }
psql_run 'SELECT 1' >/dev/null 2>&1 || die "PostgreSQL does not answer at $PG_URL"

# ---- build ---------------------------------------------------------------
cd "$ROOT"
if [[ -n ${NO_BUILD:-} ]]; then
    log "NO_BUILD set: using the binaries already built"
else
    log "building gatehouse and the mock_upstream example (--release)"
    cargo build --release --quiet --bin gatehouse --example mock_upstream
fi
TARGET_DIR=$(cargo metadata --no-deps --format-version 1 | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
GW_BIN=$TARGET_DIR/release/gatehouse
MOCK_BIN=$TARGET_DIR/release/examples/mock_upstream
[[ -x $GW_BIN && -x $MOCK_BIN ]] || die "built binaries not found under $TARGET_DIR/release"

# ---- processes and cleanup -----------------------------------------------
TMP=$(mktemp -d -t gatehouse-load-multi.XXXXXX)
MOCK_PID=; FAILED=0; SCHEMA=
declare -A GW_PID=()  # name -> pid (sled, a, b)
WRK_PIDS=()
MOCK_LOG=$TMP/mock.log

plain_log() { sed 's/\x1b\[[0-9;]*m//g' "$1"; } # without ANSI colours

# A gateway's WARN/ERROR lines, grouped by message (timestamp dropped), most frequent first.
log_summary() {
    plain_log "$1" | awk '($2 == "WARN" || $2 == "ERROR") && !/no users yet/ { $1 = ""; print substr($0, 2, 240) }' |
        sort | uniq -c | sort -rn | head -n "${2:-5}"
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
    local p n
    for p in "${WRK_PIDS[@]}"; do stop_pid "$p"; done
    for n in "${!GW_PID[@]}"; do stop_pid "${GW_PID[$n]}"; done
    stop_pid "$MOCK_PID"
    if [[ -n $SCHEMA ]]; then
        if psql_run "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >"$TMP/drop.log" 2>&1; then
            log "dropped PostgreSQL schema $SCHEMA"
        else
            log "could not drop PostgreSQL schema $SCHEMA: $(cat "$TMP/drop.log")"
            ((rc != 0)) || rc=1
        fi
    fi
    if ((rc != 0 || FAILED)); then
        for n in sled a b; do
            local f=$TMP/gw-$n.stderr.log
            [[ -s $f ]] || continue
            log "gateway $n: WARN/ERROR lines by message (count, message):"
            log_summary "$f" 10 >&2
            log "gateway $n: last 10 log lines ($f):"
            plain_log "$f" | tail -n 10 | cut -c1-400 >&2
        done
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
TAKEN=()
free_port() {
    local p=$1
    while port_busy "$p" || [[ " ${TAKEN[*]} " == *" $p "* ]]; do p=$((p + 1)); done
    echo "$p"
}
MOCK_PORT=$(free_port "${MOCK_PORT:-18191}"); TAKEN+=("$MOCK_PORT")
PORT_SLED=$(free_port 18190); TAKEN+=("$PORT_SLED")
PORT_A=$(free_port 18192); TAKEN+=("$PORT_A")
PORT_B=$(free_port 18193); TAKEN+=("$PORT_B")

# ---- mock upstream -------------------------------------------------------
"$MOCK_BIN" --port "$MOCK_PORT" --workers 1 >"$MOCK_LOG" 2>&1 &
MOCK_PID=$!
for i in $(seq 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$MOCK_PORT/v1/models" 2>/dev/null && break
    kill -0 "$MOCK_PID" 2>/dev/null || die "mock upstream exited: $(cat "$MOCK_LOG")"
    ((i < 100)) || die "mock upstream did not answer on port $MOCK_PORT"
    sleep 0.1
done
log "mock upstream on 127.0.0.1:$MOCK_PORT (pid $MOCK_PID)"

# ---- gateways ------------------------------------------------------------
PROVIDER="[providers.mock]
type = \"openai\"
base_url = \"http://127.0.0.1:$MOCK_PORT/v1\"
api_key = \"sk-mock\"
models = [\"m\"]
local = true"

# start_gateway NAME PORT CONFIG: its own home under $TMP, logs in $TMP/gw-NAME.*
start_gateway() {
    local name=$1 port=$2 config=$3 home=$TMP/home-$1 pid
    local out=$TMP/gw-$name.stdout.log err=$TMP/gw-$name.stderr.log
    mkdir -p "$home"
    GATEHOUSE_LOG=warn "$GW_BIN" serve --home "$home" --config "$config" --port "$port" >"$out" 2>"$err" &
    pid=$!
    GW_PID[$name]=$pid
    for i in $(seq 300); do
        grep -q 'listening on' "$out" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || die "gateway $name exited before listening: $(plain_log "$err" | tail -n 5)"
        ((i < 300)) || die "gateway $name did not start listening within 30s"
        sleep 0.1
    done
    log "gateway $name on 127.0.0.1:$port (pid $pid)"
}

# make_token NAME CONFIG: a user and a gateway token through NAME's CLI; sets TOKEN
make_token() {
    local home=$TMP/home-$1 config=$2
    printf '%s\n' 'bench-password-0123' |
        "$GW_BIN" users add bench --password-stdin --home "$home" --config "$config" >"$TMP/users-add-$1.log" 2>&1 ||
        die "users add on $1 failed: $(cat "$TMP/users-add-$1.log")"
    TOKEN=$("$GW_BIN" tokens issue --user bench --name load-multi --home "$home" --config "$config" \
        2>"$TMP/tokens-issue-$1.log" | tail -n 1) || die "tokens issue on $1 failed: $(cat "$TMP/tokens-issue-$1.log")"
    [[ $TOKEN == gh_* ]] || die "tokens issue on $1 printed no gh_ token: '$TOKEN' $(cat "$TMP/tokens-issue-$1.log")"
}

MSG='"messages":[{"role":"user","content":"hi"}]'
GW_BODY="{\"model\":\"mock/m\",$MSG}"
url_of() { echo "http://127.0.0.1:$1/v1/chat/completions"; }

# check_one PORT WHAT: one chat completion through that gateway answers 200
check_one() {
    local code
    code=$(curl -sS -o "$TMP/check.out" -w '%{http_code}' -X POST "$(url_of "$1")" \
        -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d "$GW_BODY") || true
    [[ $code == 200 ]] || die "a chat completion through $2 answered HTTP $code: $(head -c 500 "$TMP/check.out")"
}

ROWS=()
NOTES=()

# ---- measuring -----------------------------------------------------------
cpu_ticks() { # utime + stime of a process, in clock ticks
    local stat
    stat=$(cat "/proc/$1/stat") || return 1
    stat=${stat##*) }            # drop "pid (comm) ": field 3 (state) comes first
    awk '{ print $12 + $13 }' <<<"$stat"
}

# All PostgreSQL server processes (same machine): utime+stime of each live one,
# plus the postmaster's cutime+cstime (backends that exited and were reaped).
pg_ticks() {
    local p comm stat sum=0
    for p in /proc/[0-9]*; do
        { read -r comm <"$p/comm"; } 2>/dev/null || continue
        [[ $comm == postgres ]] || continue
        stat=$(cat "$p/stat" 2>/dev/null) || continue
        stat=${stat##*) }
        sum=$((sum + $(awk '{ print $12 + $13 }' <<<"$stat")))
        # the postmaster is the one whose parent is not a postgres process
        local ppid
        ppid=$(awk '{ print $2 }' <<<"$stat")
        if [[ $(cat "/proc/$ppid/comm" 2>/dev/null) != postgres ]]; then
            sum=$((sum + $(awk '{ print $14 + $15 }' <<<"$stat")))
        fi
    done
    echo "$sum"
}

machine_ticks() { # busy and total ticks of all CPUs, from /proc/stat
    awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat
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

# wrk_parallel DURATION OUT:PORT:CONNS ... — one wrk per target, all at once,
# while the CPU time of every running gateway and of PostgreSQL is measured.
# Sets GW_TICKS, PG_TICKS, BUSY (% of all CPUs busy), WALL_S.
wrk_parallel() {
    local d=$1 spec out port c t n
    shift
    local -A g0=()
    for n in "${!GW_PID[@]}"; do g0[$n]=$(cpu_ticks "${GW_PID[$n]}") || die "gateway $n (pid ${GW_PID[$n]}) is gone"; done
    local p0 m0 ns0 k0 w0
    p0=$(pg_ticks) m0=$(machine_ticks) ns0=$(date +%s%N) w0=$(children_ticks)
    k0=$(cpu_ticks "$MOCK_PID") || die "mock upstream (pid $MOCK_PID) is gone"
    WRK_PIDS=()
    local outs=()
    for spec in "$@"; do
        IFS=: read -r out port c <<<"$spec"
        t=$WRK_THREADS; ((t <= c)) || t=$c
        WRK_BODY=$GW_BODY WRK_TOKEN=$TOKEN \
            wrk -t"$t" -c"$c" -d"$d" --timeout 5s --latency -s "$LUA" "$(url_of "$port")" >"$out" 2>&1 &
        WRK_PIDS+=($!)
        outs+=("$out")
    done
    local i rc
    for i in "${!WRK_PIDS[@]}"; do
        rc=0
        wait "${WRK_PIDS[$i]}" || rc=$?
        ((rc == 0)) || { cat "${outs[$i]}" >&2; die "wrk failed ($rc): ${outs[$i]}"; }
    done
    WRK_PIDS=()
    local ns1 m1 p1 k1 w1
    ns1=$(date +%s%N) m1=$(machine_ticks) p1=$(pg_ticks) w1=$(children_ticks)
    k1=$(cpu_ticks "$MOCK_PID") || die "mock upstream (pid $MOCK_PID) died during the run"
    GW_TICKS=0
    for n in "${!GW_PID[@]}"; do
        local g1
        g1=$(cpu_ticks "${GW_PID[$n]}") || die "gateway $n (pid ${GW_PID[$n]}) died during the run"
        GW_TICKS=$((GW_TICKS + g1 - g0[$n]))
    done
    PG_TICKS=$((p1 - p0))
    ((PG_TICKS >= 0)) || PG_TICKS=0
    BUSY=$(awk -v a="$m0" -v b="$m1" 'BEGIN { split(a, x, " "); split(b, y, " ");
        t = y[2] - x[2]; printf "%.0f", (t > 0 ? (y[1] - x[1]) * 100 / t : 0) }')
    # the share of all CPUs used by anything but the gateways, PostgreSQL, the mock and wrk
    OTHERS=$(awk -v a="$m0" -v b="$m1" -v ours=$((GW_TICKS + PG_TICKS + k1 - k0 + w1 - w0)) 'BEGIN {
        split(a, x, " "); split(b, y, " "); t = y[2] - x[2]
        o = (t > 0 ? (y[1] - x[1] - ours) * 100 / t : 0); printf "%.0f", (o < 0 ? 0 : o) }')
    WALL_S=$(awk -v a="$ns0" -v b="$ns1" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
}

children_ticks() { # cutime + cstime of this shell: the CPU time of the wrk runs it waited for
    local stat
    stat=$(cat "/proc/$$/stat")
    stat=${stat##*) }
    awk '{ print $14 + $15 }' <<<"$stat"
}

# disturbed LABEL: a warning and a note when other processes took over 10% of the machine in the last run
DISTURBED=0
disturbed() {
    if ((OTHERS > 10)); then
        DISTURBED=1
        log "  warning: other processes used ${OTHERS}% of the machine's CPU during $1"
        NOTES+=("- $1: other processes used ${OTHERS}% of the machine's CPU time")
    fi
}

cpu_per_req() { awk -v t="$1" -v hz="$CLK_TCK" -v n="$2" 'BEGIN { printf "%.1f", (n > 0 ? t * 1e6 / hz / n : 0) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

BASE_RPS=

# errors LABEL: the table cell for the last parsed wrk output; marks the run failed
errors() {
    local e=$((NON2XX + SOCKERR))
    if ((e > 0)); then
        FAILED=1
        log "FAIL: $1: $NON2XX non-2xx responses, $SOCKERR socket errors (of $REQS)"
        echo "**$NON2XX non-2xx, $SOCKERR socket**"
    else
        echo 0
    fi
}

# measure_one NAME LABEL PORT: warm-up, then one wrk at CONNS connections; adds a row
measure_one() {
    local name=$1 label=$2 port=$3 f=$TMP/run-$1.txt
    log "scenario: $label — warm-up $WARMUP, then $DURATION at $CONNS connections"
    wrk_parallel "$WARMUP" "$TMP/warm-$name.txt:$port:$CONNS"
    wrk_parallel "$DURATION" "$f:$port:$CONNS"
    disturbed "$label"
    wrk_parse "$f"
    [[ -n $BASE_RPS ]] || BASE_RPS=$RPS
    local err; err=$(errors "$label")
    [[ $err == 0 ]] || FAILED=1
    ROWS+=("| $label | $(printf '%.0f' "$RPS") | $(ms "$P50") | $(ms "$P99") | $(ratio "$RPS" "$BASE_RPS") | $err | $(cpu_per_req "$GW_TICKS" "$REQS") | $(cpu_per_req "$PG_TICKS" "$REQS") | $BUSY% ($OTHERS%) |")
    log "  $(printf '%.0f' "$RPS") rps, p50 $(ms "$P50"), p99 $(ms "$P99"), machine ${BUSY}% busy"
}

# ---- 1. baseline: one instance on sled -----------------------------------
CONFIG_SLED=$TMP/sled.toml
printf '[server]\nport = %s\n\n%s\n' "$PORT_SLED" "$PROVIDER" >"$CONFIG_SLED"
start_gateway sled "$PORT_SLED" "$CONFIG_SLED"
make_token sled "$CONFIG_SLED"
check_one "$PORT_SLED" "the sled gateway"
measure_one sled "1 instance, sled, $CONNS conns (baseline)" "$PORT_SLED"
stop_pid "${GW_PID[sled]}"
unset 'GW_PID[sled]'

# ---- 2. two instances on one PostgreSQL database -------------------------
SCHEMA=gh_bench_$(date +%s)_$$
psql_run "SELECT 1 FROM pg_namespace WHERE nspname = '$SCHEMA'" | grep -q 1 && die "schema $SCHEMA exists already"
GATEHOUSE_MASTER_KEY=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
export GATEHOUSE_MASTER_KEY
((${#GATEHOUSE_MASTER_KEY} == 64)) || die "could not make a master key"
CONFIG_PG=$TMP/postgres.toml
cat >"$CONFIG_PG" <<EOF
[store]
backend = "postgres"
url = "$PG_URL"
schema = "$SCHEMA"

$PROVIDER
EOF
# A first (it applies the migrations), then the user and token through A's CLI.
start_gateway a "$PORT_A" "$CONFIG_PG"
make_token a "$CONFIG_PG"
check_one "$PORT_A" "instance A"
if ((PG_SINGLE)); then
    measure_one a "1 instance, PostgreSQL, $CONNS conns" "$PORT_A"
fi
start_gateway b "$PORT_B" "$CONFIG_PG"
check_one "$PORT_B" "instance B (with the token issued on A)"
log "user and token made on A answer 200 on A and on B"

label="2 instances, PostgreSQL, $HALF + $HALF conns"
log "scenario: $label — warm-up $WARMUP, then $DURATION, two wrk at once"
wrk_parallel "$WARMUP" "$TMP/warm-a.txt:$PORT_A:$HALF" "$TMP/warm-b.txt:$PORT_B:$HALF"
wrk_parallel "$DURATION" "$TMP/run-2a.txt:$PORT_A:$HALF" "$TMP/run-2b.txt:$PORT_B:$HALF"
disturbed "$label"
wrk_parse "$TMP/run-2a.txt"
a_rps=$RPS a_reqs=$REQS a_p50=$P50 a_p99=$P99 a_err=$(errors "$label, instance A")
wrk_parse "$TMP/run-2b.txt"
b_rps=$RPS b_reqs=$REQS b_p50=$P50 b_p99=$P99 b_err=$(errors "$label, instance B")
[[ $a_err == 0 ]] || FAILED=1
[[ $b_err == 0 ]] || FAILED=1
sum_rps=$(awk -v a="$a_rps" -v b="$b_rps" 'BEGIN { printf "%.0f", a + b }')
sum_reqs=$((a_reqs + b_reqs))
tot_err=0
[[ $a_err == 0 && $b_err == 0 ]] || tot_err="**see A and B**"
ROWS+=("| **$label: total** | **$sum_rps** | — | — | **$(ratio "$sum_rps" "$BASE_RPS")** | $tot_err | $(cpu_per_req "$GW_TICKS" "$sum_reqs") | $(cpu_per_req "$PG_TICKS" "$sum_reqs") | $BUSY% ($OTHERS%) |")
ROWS+=("| &nbsp;&nbsp;instance A, $HALF conns | $(printf '%.0f' "$a_rps") | $(ms "$a_p50") | $(ms "$a_p99") | $(ratio "$a_rps" "$BASE_RPS") | $a_err | | | |")
ROWS+=("| &nbsp;&nbsp;instance B, $HALF conns | $(printf '%.0f' "$b_rps") | $(ms "$b_p50") | $(ms "$b_p99") | $(ratio "$b_rps" "$BASE_RPS") | $b_err | | | |")
log "  A $(printf '%.0f' "$a_rps") rps + B $(printf '%.0f' "$b_rps") rps = $sum_rps rps, machine ${BUSY}% busy"
for n in a b; do kill -0 "${GW_PID[$n]}" 2>/dev/null || die "gateway $n died"; done

# What the run left in the shared store: one usage record per request?
usage_rows=$(psql_run "SELECT count(*) FROM $SCHEMA.usage" 2>/dev/null || echo '?')

# ---- report --------------------------------------------------------------
if ((DISTURBED)); then
    NOTES+=("- **other processes took more than 10% of the machine during a measured run: these numbers are disturbed, run again on a quiet machine**")
fi
NOTES+=("- every instance, the mock upstream (1 worker), wrk and PostgreSQL share the machine's $ncpu CPUs; nothing is pinned (load.sh pins its one gateway alone on CPU 0, which cannot be done for two gateways plus PostgreSQL on 2 cores), so each row measures what the whole machine serves, with the load generator and the upstream competing for the same CPUs. Two instances on one machine cannot add capacity here: the \"2 instances\" row shows the cost of the shared PostgreSQL store and of running two processes, not horizontal scaling.")
NOTES+=("- gateway CPU µs/req is the user+system time of the running gateway process(es) over the requests completed; PostgreSQL CPU µs/req is the same for all PostgreSQL server processes (backends, WAL writer, …); \"machine busy\" is the share of all CPUs busy during the run, and in brackets the share used by processes other than the gateways, PostgreSQL, the mock and wrk (other work on the machine disturbing the run).")
NOTES+=("- the 2-instance run has two wrk processes (CONNS/2 connections and $WRK_THREADS thread(s) each) against one wrk for the single-instance rows; p50/p99 are per wrk, the total has no merged percentile.")
[[ $usage_rows == '?' ]] || NOTES+=("- the PostgreSQL schema held $usage_rows usage rows at the end of the run: a gateway folds calls of the same minute, user, token, model and status into one record and writes them in batches, and with no [limits] configured nothing is reserved per call, so the request path itself makes no store write (see the PostgreSQL CPU per request).")
for n in sled a b; do
    f=$TMP/gw-$n.stderr.log
    # (the start-up hint "no users yet" comes before the script adds its user)
    w=$(plain_log "$f" | awk '($2 == "WARN" || $2 == "ERROR") && !/no users yet/' | wc -l)
    if ((w > 0)); then
        NOTES+=("- gateway $n logged $w WARN/ERROR lines; most frequent:")
        while IFS= read -r line; do NOTES+=("  - \`$line\`"); done < <(log_summary "$f" 3 | sed 's/^ *//' | tr '`' "'" | cut -c1-300)
    fi
done
{
    echo "# Gatehouse load benchmark: two instances on PostgreSQL"
    echo
    echo "\`bash benches/load-multi.sh\` — $(date -u '+%Y-%m-%d %H:%M UTC'), $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' (dirty)'), $ncpu CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), PostgreSQL $(psql_run 'SHOW server_version' 2>/dev/null | cut -d' ' -f1) on the same machine. Non-stream chat completions (\`mock/m\`) with one gateway token, wrk $WRK_THREADS thread(s) per process, $DURATION per run after a $WARMUP warm-up; GATEHOUSE_LOG=warn; default [store] pool_size (16 per instance). Ratio: rps against the 1-instance sled baseline of this run."
    echo
    echo "| scenario | rps | p50 | p99 | ratio vs sled | errors | gateway CPU µs/req | PostgreSQL CPU µs/req | machine busy (others) |"
    echo "|---|---:|---:|---:|---:|---|---:|---:|---:|"
    printf '%s\n' "${ROWS[@]}"
    echo
    printf '%s\n' "${NOTES[@]}"
} >"$RESULTS"
echo
cat "$RESULTS"
echo
log "written to ${RESULTS#"$ROOT"/}"
if ((FAILED)); then
    log "some requests failed"
    exit 1
fi
