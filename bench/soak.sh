#!/usr/bin/env bash
# The fault suite at RELIABILITY.md's full length (issue #7), for the figures in BENCHMARKS.md.
#
# CI runs the same tests compressed (poll every 1 s, outages of 10–20 s, a few hundred
# messages). With VETRIC_SOAK=1 each test switches to the full length: R1 with a 60 s outage,
# R2 with 1,000 notifications and 40 SIGKILLs every 5–15 s (two instances for half the run),
# R4 at the production 10 s poll, R5 with a larger burst of sends under SIGTERM. Every
# scenario prints one line `FAULT_SUMMARY {json}` (keys include "scenario", and for R2
# "messages", "kills", "lost", "duplicates", "in_doubt"); this script runs the tests in a release build, one at a time (they would compete for the
# two cores otherwise), and prints those lines at the end.
#
# Usage (from anywhere; PostgreSQL at 127.0.0.1:5432, user postgres, as for `cargo test`):
#   bench/soak.sh                      # everything (about 15–20 minutes)
#   bench/soak.sh r2_notifications     # one test file (tests/<name>.rs)
#   SKIP_PLANTED=1 bench/soak.sh       # leave out the planted-bug runs (they prove the
#                                      # checker can fail; they do not change with VETRIC_SOAK)
# Loopback only; every process a test starts is stopped by the test itself.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/vetric-target}"
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
export VETRIC_SOAK=1

files=("$@")
if [ ${#files[@]} -eq 0 ]; then
  files=(fault_r1_r3 r2_notifications fault_r4 graceful_shutdown)
fi
args=()
for f in "${files[@]}"; do
  if [ -f "crates/vetric/tests/$f.rs" ]; then
    args+=(--test "$f")
  else
    echo "soak: no crates/vetric/tests/$f.rs; skipped" >&2
  fi
done
[ ${#args[@]} -gt 0 ] || { echo "soak: nothing to run" >&2; exit 2; }
filter=()
if [ "${SKIP_PLANTED:-0}" = 1 ]; then
  filter=(--skip r2_turns_red)
fi

log=$(mktemp "${TMPDIR:-/tmp}/vetric-soak.XXXXXX")
started=$(date +%s)
status=0
cargo test --release --locked -p vetric "${args[@]}" -- --nocapture --test-threads=1 \
  ${filter[@]+"${filter[@]}"} 2>&1 | tee "$log" || status=$?

echo
echo "== fault suite at full length (VETRIC_SOAK=1): $(( $(date +%s) - started )) s, exit $status =="
grep -E '^FAULT_SUMMARY ' "$log" | sed 's/^FAULT_SUMMARY //' \
  || echo "(no FAULT_SUMMARY lines: did the tests run?)"
echo "(full output: $log)"
exit "$status"
