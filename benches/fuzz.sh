#!/usr/bin/env bash
# Fuzzing: builds the cargo-fuzz targets under fuzz/ and runs each for a
# bounded time, starting from the seed corpus in fuzz/corpus/<target>/.
#
#   bash benches/fuzz.sh                          # every target, 60 s each
#   FUZZ_SECONDS=300 bash benches/fuzz.sh sse_stream translate
#
# Knobs (environment): FUZZ_SECONDS (60) per target; FUZZ_SANITIZER (none;
# `address` for ASan, slower); FUZZ_TARGET_DIR (fuzz/target).
#
# A stable toolchain is enough: RUSTC_BOOTSTRAP=1 lets it take the -Z flags
# cargo-fuzz passes. cargo-fuzz is installed from crates.io when missing.
# Targets are built with optimisations plus debug assertions and overflow
# checks, so an arithmetic overflow is a crash.
#
# Every target gets the dictionary fuzz/dict/numbers.dict (boundary numbers).
# What the fuzzer adds to a corpus goes to fuzz/work/corpus/<target>/ (not
# in git); a crash is saved to fuzz/artifacts/<target>/. Prints a markdown
# table (executions, executions/s, corpus size, result per target), also
# written to fuzz/work/summary.md, and exits non-zero if any target crashed.
# A crash found is kept as a regression: the input under
# fuzz/regressions/<target>/ (replayed by `cargo test --manifest-path
# fuzz/Cargo.toml`) and a Rust test next to the fixed code.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FUZZ=$ROOT/fuzz
SECONDS_EACH=${FUZZ_SECONDS:-60}
SANITIZER=${FUZZ_SANITIZER:-none}
TARGET_DIR=${FUZZ_TARGET_DIR:-$FUZZ/target}
WORK=$FUZZ/work
ALL=(gateway_token external_jwt headers config_toml sse_stream llms_import translate)
TARGETS=("${@:-${ALL[@]}}")

log() { printf '[fuzz] %s\n' "$*" >&2; }

export RUSTC_BOOTSTRAP=1
if ! command -v cargo-fuzz >/dev/null; then
    log "installing cargo-fuzz from crates.io"
    cargo install cargo-fuzz --locked
fi

cd "$ROOT"
FLAGS=(--fuzz-dir "$FUZZ" --sanitizer "$SANITIZER" --debug-assertions
    --codegen-units 16 --target-dir "$TARGET_DIR")
log "building ${TARGETS[*]} (sanitizer: $SANITIZER)"
for t in "${TARGETS[@]}"; do
    cargo fuzz build "${FLAGS[@]}" "$t"
done

mkdir -p "$WORK"
rows=()
failed=0
for t in "${TARGETS[@]}"; do
    mkdir -p "$WORK/corpus/$t" "$FUZZ/artifacts/$t"
    out=$WORK/$t.log
    log "$t: ${SECONDS_EACH}s"
    start=$(date +%s)
    # The first corpus directory receives new inputs; the seeds stay as they are.
    if cargo fuzz run "${FLAGS[@]}" "$t" "$WORK/corpus/$t" "$FUZZ/corpus/$t" -- \
        -max_total_time="$SECONDS_EACH" -print_final_stats=1 -timeout=10 \
        -rss_limit_mb=4096 -dict="$FUZZ/dict/numbers.dict" \
        -artifact_prefix="$FUZZ/artifacts/$t/" >"$out" 2>&1; then
        result=ok
    else
        result="CRASH (see $out)"
        failed=1
    fi
    took=$(($(date +%s) - start))
    stat() { grep -o "stat::$1: *[0-9]*" "$out" | awk '{s += $2} END {print s + 0}'; }
    execs=$(stat number_of_executed_units)
    if [[ $execs == 0 ]]; then # a crash: the last status line (#N ...)
        execs=$(grep -o '^#[0-9]*' "$out" | tail -n1 | tr -d '#')
    fi
    rate=$(stat average_exec_per_sec)
    corpus=$(find "$WORK/corpus/$t" "$FUZZ/corpus/$t" -type f | wc -l)
    artifact=$(grep -o "Test unit written to [^ ]*" "$out" | head -n1 | cut -d' ' -f5 || true)
    [[ -n $artifact ]] && result="CRASH: ${artifact#"$ROOT"/}"
    rows+=("| \`$t\` | $took | $execs | $rate | $corpus | $result |")
    log "$t: $execs executions in ${took}s, $result"
done

{
    echo "| target | seconds | executions | executions/s | corpus | result |"
    echo "| --- | ---: | ---: | ---: | ---: | --- |"
    printf '%s\n' "${rows[@]}"
} | tee "$WORK/summary.md"
exit "$failed"
