#!/usr/bin/env bash
# sim.test.sh - the overlay at scale in the simulator (parley-sim): the same
# stacks the daemon runs, on the deterministic network and clock.
# Shown, at 3,000 users and 60 supernodes (the 100k/1k and 1M/10k runs are
# benchmarks: make bench-sim): the 2007-style login storm (half the
# users restart at once) and the 2010-style cascade (30% of the supernodes
# crash at once) both recover to >= 99% of look-ups answered within 60
# virtual seconds, no surviving supernode goes down or past its capacity,
# and a run is reproducible from its seed.
set -u
B=${PARLEY_BUILD:-build/release}
SIM="$B/parley-sim"
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; shift; for l in "$@"; do echo "     $l"; done; }
field() { printf '%s' "$2" | sed -n "s/.*\"$1\":\([-0-9.]*\).*/\1/p"; }
# True when A <= B as decimal numbers.
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }

run() { # SCENARIO [extra args] -> the JSON summary line
    "$SIM" --users 3000 --supernodes 60 --duration 110 --event-at 40 --scenario "$@" --json | tail -1
}

check_recovery() { # NAME SUMMARY
    local name=$1 s=$2 rec found worst
    rec=$(field recovery_s "$s")
    found=$(field found_pct "$s")
    worst=$(field worst_window_pct "$s")
    echo "     $name: recovery ${rec} s, worst 5 s window ${worst}% found, ${found}% over the run"
    if [ -n "$rec" ] && le 0 "$rec" && le "$rec" 60; then
        ok "$name: back to >= 99% resolvable within 60 virtual seconds"
    else
        bad "$name: back to >= 99% resolvable within 60 virtual seconds" "$s"
    fi
    if [ -n "$found" ] && le 99 "$found"; then ok "$name: >= 99% of all look-ups found"; else bad "$name: >= 99% found" "$s"; fi
    local busiest cap
    busiest=$(field busiest_ever "$s")
    cap=$(field capacity "$s")
    if [ -n "$busiest" ] && [ "$busiest" -lt "$cap" ]; then
        ok "$name: no supernode past its capacity (busiest $busiest of $cap clients)"
    else
        bad "$name: no supernode past its capacity" "$s"
    fi
}

storm=$(run storm)
check_recovery "login storm" "$storm"
alive=$(field supernodes_alive "$storm")
if [ "$alive" = 60 ]; then ok "login storm: all 60 supernodes still up"; else bad "login storm: all supernodes up" "$storm"; fi

cascade=$(run cascade)
check_recovery "cascade" "$cascade"
crashed=$(field supernodes_crashed "$cascade")
alive=$(field supernodes_alive "$cascade")
if [ "$crashed" = 18 ] && [ "$alive" = 42 ]; then
    ok "cascade: 18 of 60 crashed and none of the other 42 collapsed after"
else
    bad "cascade: 18 crashed, 42 still up" "$cascade"
fi

# The same seed gives the same run (CPU time aside); another seed does not.
small() { "$SIM" --users 1000 --supernodes 30 --duration 60 --event-at 30 --scenario cascade "$@" --json | tail -1; }
one=$(small)
again=$(small)
if [ -n "$one" ] && [ "$(printf '%s' "$again" | sed 's/,"cpu_s":[0-9]*//')" = "$(printf '%s' "$one" | sed 's/,"cpu_s":[0-9]*//')" ]; then
    ok "the same seed reproduces the run exactly"
else
    bad "the same seed reproduces the run exactly" "$one" "$again"
fi
other=$(small --seed 2)
if [ "$(printf '%s' "$other" | sed 's/,"cpu_s":[0-9]*//')" != "$(printf '%s' "$one" | sed 's/,"cpu_s":[0-9]*//')" ]; then
    ok "another seed gives another run"
else
    bad "another seed gives another run" "$other"
fi

echo "PL-TEST-SUMMARY $passed $failed"
