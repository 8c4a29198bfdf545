#!/usr/bin/env bash
# bench/sim.sh - the overlay at internet scale in the simulator (make bench-sim).
# Runs parley-sim at 100k users / 1k supernodes through the 2007-style login
# storm and the 2010-style cascade, then at 1M users / 10k supernodes, and
# prints each run's look-up success, recovery and membership traffic per
# supernode beside the targets. Takes long (about an hour on 2 cores, most of
# it the 1M run: 45 min) and needs about 19 GiB: a benchmark, not a CI test.
# BENCH_SIM_BIG=0 skips the 1M run.
set -u
B=${PARLEY_BUILD:-build/release}
SIM="$B/parley-sim"
field() { printf '%s' "$2" | sed -n "s/.*\"$1\":\([-0-9.]*\).*/\1/p"; }
show() { # TITLE SUMMARY
    local s=$2
    printf '%s\n' "$1"
    printf '  look-ups %s, %s%% found (target >= 99.9%% at 1M), p50 %s ms, p99 %s ms\n' \
        "$(field lookups "$s")" "$(field found_pct "$s")" "$(field p50_ms "$s")" "$(field p99_ms "$s")"
    printf '  membership traffic %s kbit/s per supernode (target <= 5)\n' "$(field membership_kbit_per_sn "$s")"
    printf '  busiest supernode %s clients of %s; %s supernodes up at the end, %s crashed\n' \
        "$(field busiest_ever "$s")" "$(field capacity "$s")" "$(field supernodes_alive "$s")" \
        "$(field supernodes_crashed "$s")"
    [ "$(field recovery_s "$s")" != "" ] && [ "$(field recovery_s "$s")" != "-1.0" ] &&
        printf '  back to >= 99%% and staying there %s virtual s after the event (target <= 60), worst window %s%%\n' \
            "$(field recovery_s "$s")" "$(field worst_window_pct "$s")"
    printf '  %s s of CPU\n' "$(field cpu_s "$s")"
}
for scenario in storm cascade; do
    s=$("$SIM" --users 100000 --supernodes 1000 --duration 150 --event-at 70 --lookups-per-s 1000 \
        --scenario "$scenario" --json | tail -1)
    show "parley-sim 100k users, 1k supernodes, $scenario at 70 s:" "$s"
done
if [ "${BENCH_SIM_BIG:-1}" != 0 ]; then
    s=$("$SIM" --users 1000000 --supernodes 10000 --duration 120 --lookups-per-s 1000 --watchers 1000 --json | tail -1)
    show "parley-sim 1M users, 10k supernodes, steady:" "$s"
fi
