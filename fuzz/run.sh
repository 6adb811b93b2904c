#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 60) and reports, per target, the
# executions and any crash. Exit status: 0 when nothing crashed (or there is no nightly
# toolchain, which cargo-fuzz needs: then it says so and skips), 1 on a crash or a failed build.
#
#   bash fuzz/run.sh [--dev] [SECONDS_PER_TARGET]
#
# Seeds come from fuzz/corpus/<target>/ (committed, never written to); what libFuzzer learns
# goes to fuzz/work/<target>/ and is reused by the next run; crashes are written to
# fuzz/artifacts/<target>/ (both git-ignored).
#
# --dev is CI's short run: an unoptimized build (`cargo fuzz build --dev`, about 2 min from
# scratch on 2 CPUs instead of 6-8 min for the optimized one) whose targets run 20-80 times
# slower, from the seeds alone: what it learns goes to a temporary directory and is dropped (a
# grown fuzz/work/ could take an unoptimized target longer than its time just to load).
# Reproduce a crash with
#   cargo +nightly fuzz run -s none <target> fuzz/artifacts/<target>/crash-…
# and shrink it with `cargo +nightly fuzz tmin -s none <target> <file>`.
set -uo pipefail
cd "$(dirname "$0")"

usage="usage: bash fuzz/run.sh [--dev] [SECONDS_PER_TARGET]  (a positive whole number, default 60)"
dev=false
if [ "${1:-}" = "--dev" ]; then
  dev=true
  shift
fi
seconds=${1:-60}
if [ "$#" -gt 1 ] || ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "$usage" >&2
  exit 2
fi

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "fuzz: no nightly toolchain (cargo-fuzz needs -Zsanitizer); skipping."
  echo "      install one with: rustup toolchain install nightly"
  exit 0
fi

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked || { echo "fuzz: installing cargo-fuzz failed" >&2; exit 1; }
fi

# No AddressSanitizer: switchyard forbids unsafe code, and without it the first build takes about
# half as long (8 min instead of 15 on 2 CPUs) and the targets run faster. Panics, failed
# assertions, overflow checks (debug assertions are on) and stack overflows are still caught.
flags=(--sanitizer none)
# -timeout: an input running this long is a hang, reported like a crash.
timeout=10
work=work
if $dev; then
  flags+=(--dev)
  timeout=30
  work=$(mktemp -d) || exit 1
  trap 'rm -rf "$work"' EXIT
fi

# One build for every target, so a build failure is reported as such (not as a crash).
start=$SECONDS
cargo +nightly fuzz build "${flags[@]}" || { echo "fuzz: build failed" >&2; exit 1; }
echo "fuzz: built in $((SECONDS - start)) s"

targets=$(cargo +nightly fuzz list)
# libFuzzer runs one process per target: run as many targets at once as there are CPUs
# (FUZZ_JOBS to choose), each for SECONDS, and report them in order once all are done.
jobs_max=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
if ! [[ "$jobs_max" =~ ^[1-9][0-9]*$ ]]; then
  echo "fuzz: FUZZ_JOBS must be a positive whole number, not '$jobs_max'" >&2
  exit 2
fi
run_target() {
  local target=$1 dict=()
  [ -f "dict/$target.dict" ] && dict=("-dict=dict/$target.dict")
  cargo +nightly fuzz run "${flags[@]}" "$target" "$work/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout="$timeout" -print_final_stats=1 "${dict[@]}" \
    >"$work/$target.log" 2>&1
  echo "$?" >"$work/$target.status"
}
echo
running=0
for target in $targets; do
  mkdir -p "$work/$target" "artifacts/$target"
  rm -f "$work/$target.status"
  if [ "$running" -ge "$jobs_max" ]; then
    wait -n
    running=$((running - 1))
  fi
  echo "fuzz: $target for ${seconds} s"
  run_target "$target" &
  running=$((running + 1))
done
wait

crashed=()
summary=()
for target in $targets; do
  log="$work/$target.log"
  status=$(cat "$work/$target.status" 2>/dev/null || echo "unknown")
  runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -n 1)
  if [ -z "$runs" ]; then
    runs=$(grep -Eo '^#[0-9]+' "$log" | tail -n 1 | tr -d '#')
  fi
  corpus=$(find "$work/$target" -type f | wc -l)
  line="$target: ${runs:-0} executions in ${seconds} s, corpus ${corpus} inputs"
  if [ "$status" != 0 ]; then
    line="$line, CRASH (exit $status)"
    crashed+=("$target")
    grep -E "panicked at|^thread '|ERROR: libFuzzer|SUMMARY|Test unit written to|^Output of" "$log" | head -n 20
    grep -A3 "panicked at" "$log" | head -n 12
    if $dev; then
      echo "  last lines of its log (a temporary file):"
      tail -n 40 "$log"
    else
      echo "  full log: fuzz/$log"
    fi
  fi
  echo "$line"
  summary+=("$line")
done

echo
echo "fuzz summary:"
printf '  %s\n' "${summary[@]}"
if [ "${#crashed[@]}" -ne 0 ]; then
  echo "fuzz: crashes in: ${crashed[*]} (inputs under fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz: no crashes."
