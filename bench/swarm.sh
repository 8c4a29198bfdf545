#!/usr/bin/env bash
# swarm.sh - a real parleyd supernode under a swarm of real clients on
# loopback (bench/swarm.c): idle clients one supernode process holds on one
# core, its memory per client, and look-ups per second per supernode core.
#
#   BENCH_SWARM_CLIENTS  clients attached to the supernode (200000)
#   BENCH_SWARM_RATE     attaches a second at most (1000)
#   BENCH_SWARM_IDLE_S   each idle window: keepalives only, then steady state (60)
#   BENCH_SWARM_LOOKUP_S each look-up window (15; 0 skips the look-ups)
#   BENCH_SWARM_SIM      also run bench_supernode (the simulator) with this many
#                        clients, to compare (0: skip)
#   BENCH_SWARM_KEEP=1   keep the work directory (homes, supernode logs)
#   PARLEY_BUILD         the build to run (build/release)
#
# Priorities: the clients (the heavy part: up to a core and ~4 GiB for
# 200,000) run at nice 19 and are what the kernel kills first if memory runs
# out; the supernode under test runs at the normal priority. A supernode at
# nice 10 beside other people's tests at nice 0 got a tenth of their share,
# fell tens of seconds behind its socket and lost its clients for silence:
# that measures the machine, not parleyd. Its figures are per CPU-second of
# the supernode process, so other load costs time, less so accuracy.
set -u
B=${PARLEY_BUILD:-build/release}
export PARLEY_BUILD=$B
for f in "$B/parleyd" "$B/parley" "$B/bench/swarm"; do
    [ -x "$f" ] || { echo "swarm.sh: no $f (run make first)" >&2; exit 1; }
done
"$B/bench/swarm" || exit 1
SIM=${BENCH_SWARM_SIM:-0}
if [ "$SIM" -gt 0 ]; then
    echo "the same on the simulator (bench_supernode, $SIM clients):"
    BENCH_SN_CLIENTS=$SIM nice -n 10 "$B/bench/bench_supernode" | sed 's/^/  /'
fi
