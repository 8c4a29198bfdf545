#!/usr/bin/env bash
# Runs every test program (build/<variant>/tests/test_*) and every test script
# (tests/*.test.sh), adds up their results and ends with the line CI reads:
#   N passed, N failed
# A program that crashes or exits without a summary counts as one failure.
set -u
build=${1:-build/release}
export PARLEY_BUILD=$build
passed=0
failed=0
failed_names=()
for t in "$build"/tests/test_* tests/*.test.sh; do
    [ -e "$t" ] || continue
    case "$t" in *.o|*.d) continue ;; esac
    [ -x "$t" ] || continue
    name=$(basename "$t")
    echo "== $name"
    out=$(mktemp)
    timeout 600 "$t" > >(tee "$out") 2>&1
    rc=$?
    sleep 0.1
    line=$(grep '^PL-TEST-SUMMARY ' "$out" | tail -1)
    rm -f "$out"
    if [ -n "$line" ]; then
        set -- $line
        passed=$((passed + $2))
        failed=$((failed + $3))
        if [ "$3" -gt 0 ] || [ "$rc" -ne 0 ]; then
            failed_names+=("$name")
            [ "$3" -eq 0 ] && failed=$((failed + 1))
        fi
    else
        echo "  $name exited with status $rc and no summary"
        failed=$((failed + 1))
        failed_names+=("$name")
    fi
done
if [ ${#failed_names[@]} -gt 0 ]; then
    echo "failing: ${failed_names[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
