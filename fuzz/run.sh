#!/usr/bin/env bash
# Runs each libFuzzer target for a number of seconds, starting from its seed
# corpus (fuzz/seeds/<target>/) and any regression inputs (fuzz/regressions/
# <target>/), and stops at the first crash. Prints one line per target and a
# closing "N passed, N failed".
set -u
build=$1; seconds=$2; shift 2
passed=0; failed=0
for f in "$@"; do
    name=$(basename "$f")
    corpus="$build/corpus-$name"
    mkdir -p "$corpus"
    dirs=("$corpus")
    [ -d "fuzz/seeds/$name" ] && dirs+=("fuzz/seeds/$name")
    [ -d "fuzz/regressions/$name" ] && dirs+=("fuzz/regressions/$name")
    log="$build/$name.log"
    if "$f" -max_total_time="$seconds" -max_len=4096 -artifact_prefix="$build/$name-" "${dirs[@]}" >"$log" 2>&1; then
        execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
        [ -z "$execs" ] && execs=$(grep -oE '#[0-9]+' "$log" | tail -1 | tr -d '#')
        echo "fuzz $name: ok ($execs runs in ${seconds}s)"
        passed=$((passed + 1))
    else
        echo "fuzz $name: FAILED, see $log"
        tail -40 "$log"
        failed=$((failed + 1))
    fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
