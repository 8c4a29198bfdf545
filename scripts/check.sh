#!/usr/bin/env bash
# Runs the three test passes and adds up their closing lines:
#   release tests, ASan+UBSan tests, a short run of every fuzzer.
# Ends with one "N passed, N failed" line for the whole check.
set -u
seconds=$1; shift
total_p=0; total_f=0
tally() { # LOGFILE
    local line
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$1" | tail -1)
    if [ -z "$line" ]; then total_f=$((total_f + 1)); return; fi
    set -- $line
    total_p=$((total_p + $1)); total_f=$((total_f + $3))
}
log=$(mktemp)
echo "=== tests (release)"
tests/run.sh build/release 2>&1 | tee "$log"; tally "$log"
echo "=== tests (ASan+UBSan)"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 tests/run.sh build/asan 2>&1 | tee "$log"; tally "$log"
echo "=== fuzzers, ${seconds}s each"
fuzz/run.sh build/fuzz "$seconds" "$@" 2>&1 | tee "$log"; tally "$log"
rm -f "$log"
echo "$total_p passed, $total_f failed"
[ "$total_f" -eq 0 ]
