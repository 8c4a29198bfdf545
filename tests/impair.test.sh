#!/usr/bin/env bash
# impair.test.sh - the impairment relay on real UDP over loopback.
# A probe sends numbered datagrams through parley-impair to an echo; the
# echo stamps each one's arrival and sends it back through the relay. Shown:
# clean forwarding; fixed delay per direction; random and bursty loss at the
# configured rate and burst length; reordering from jitter (and none with
# --jitter-fifo); explicit reordering; duplication; the rate limit; two
# clients at once; a bounded queue that counts its drops; the same seed
# giving the same run; statistics on SIGTERM.
set -u
B=${PARLEY_BUILD:-build/release}
IMP="$B/parley-impair"
T=$(mktemp -d /tmp/pl-impair-test.XXXXXX)
PIDS=()
passed=0
failed=0
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; shift; for l in "$@"; do echo "     $l"; done; }
finish() { echo "PL-TEST-SUMMARY $passed $failed"; exit 0; }
wait_line() { # FILE PATTERN
    for _ in $(seq 200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
    return 1
}
# num FIELD JSON: the first number after "FIELD":
num() { printf '%s' "$2" | grep -o "\"$1\":[-0-9.e]*" | head -1 | cut -d: -f2; }
# obj NAME JSON: the text of the object "NAME":{...} (no nested objects inside)
obj() { printf '%s' "$2" | sed -n "s/.*\"$1\":{\([^}]*\)}.*/\1/p"; }
# check NAME AWK-CONDITION VALUES...: passes when the condition on $1, $2... holds
check() {
    local name=$1 cond=$2
    shift 2
    if awk -v a="${1:-}" -v b="${2:-}" -v c="${3:-}" "BEGIN { exit !($cond) }"; then ok "$name ($*)"; else bad "$name" "values: $*" "condition: $cond"; fi
}

# One echo serves every test; each test starts its own relay.
"$IMP" echo --listen 127.0.0.1:0 --json >"$T/echo.out" 2>&1 &
PIDS+=($!)
wait_line "$T/echo.out" '"listening"' || { bad "echo starts" "$(cat "$T/echo.out")"; finish; }
ECHO_ADDR=$(sed -n 's/.*"addr":"\([^"]*\)".*/\1/p' "$T/echo.out" | head -1)

RELAY_PID=
start_relay() { # OPTIONS... -> RELAY_ADDR, RELAY_PID, RELAY_OUT
    RELAY_OUT="$T/relay.$RANDOM.out"
    "$IMP" --listen 127.0.0.1:0 --to "$ECHO_ADDR" --json "$@" >"$RELAY_OUT" 2>"$RELAY_OUT.err" &
    RELAY_PID=$!
    PIDS+=($RELAY_PID)
    wait_line "$RELAY_OUT" '"listening"' || return 1
    RELAY_ADDR=$(sed -n 's/.*"event":"listening","addr":"\([^"]*\)".*/\1/p' "$RELAY_OUT" | head -1)
}
stop_relay() { # -> STATS (the relay's JSON statistics line)
    kill -TERM "$RELAY_PID" 2>/dev/null
    wait "$RELAY_PID" 2>/dev/null
    STATS=$(grep '"event":"stats"' "$RELAY_OUT" | tail -1)
}
probe() { # OPTIONS... -> P (the probe's JSON line)
    P=$("$IMP" probe --to "$RELAY_ADDR" --json "$@")
}

# --- clean forwarding
start_relay --seed 1 || { bad "relay starts" "$(cat "$RELAY_OUT.err")"; finish; }
ok "relay prints a parseable listening line ($RELAY_ADDR)"
probe --count 200 --interval-ms 1 --wait-ms 500
check "a clean relay forwards every datagram and every reply" 'a == 200 && b == 0' "$(num replies "$P")" "$(num loss_pct "$P")"
# The loop wakes in whole milliseconds; a shared machine adds scheduling noise.
check "and adds no delay to speak of (p50 up and down < 2 ms)" 'a < 2 && b < 2' \
    "$(num p50_ms "$(obj up "$P")")" "$(num p50_ms "$(obj down "$P")")"
stop_relay
check "statistics come out on SIGTERM, counting both directions" 'a == 200 && b == 200 && c == 1' \
    "$(num forwarded "$(obj up "$STATS")")" "$(num forwarded "$(obj down "$STATS")")" "$(num seen "$(obj clients "$STATS")")"

# --- fixed delay, per direction
start_relay --up-delay-ms 40 --down-delay-ms 15
probe --count 100 --interval-ms 5 --wait-ms 500
UP=$(obj up "$P"); DOWN=$(obj down "$P")
check "up delay is 40 ms (min >= 40, p50 < 42.5)" 'a >= 40 && b < 42.5' "$(num min_ms "$UP")" "$(num p50_ms "$UP")"
check "down delay is 15 ms (min >= 15, p50 < 17.5)" 'a >= 15 && b < 17.5' "$(num min_ms "$DOWN")" "$(num p50_ms "$DOWN")"
check "fixed delay reorders nothing" 'a == 0 && b == 0' "$(num up_late "$P")" "$(num down_late "$P")"
stop_relay
check "the relay's own delay figures agree" 'a == 40 && b == 15' \
    "$(num delay_mean_ms "$(obj up "$STATS")")" "$(num delay_mean_ms "$(obj down "$STATS")")"
check "timer lateness is about a millisecond (mean < 1.5 ms)" 'a < 1.5' "$(num late_mean_ms "$(obj up "$STATS")")"

# --- random loss, up only
start_relay --seed 11 --up-loss 10
probe --count 2000 --interval-ms 0.5 --wait-ms 300
LOSS=$(num loss_pct "$P")
# 2000 datagrams at 10%: the standard error is 0.67 points.
check "10% random loss measures 10 +- 3%" 'a >= 7 && a <= 13' "$LOSS"
check "independent losses come mostly alone (mean run < 1.3)" 'a < 1.3' "$(num loss_run_mean "$P")"
stop_relay
check "every loss was the relay's random loss, upstream" 'a == 2000 - b && c == 0' \
    "$(num dropped_loss "$(obj up "$STATS")")" "$(num replies "$P")" "$(num dropped_loss "$(obj down "$STATS")")"

# --- Gilbert-Elliott burst loss
start_relay --seed 12 --burst-loss 8 --burst-len 5 --down-burst-loss 0
probe --count 4000 --interval-ms 0.5 --wait-ms 300
check "8% burst loss measures 8 +- 5% (bursts make the count lumpy: se ~1.4 points)" 'a >= 3 && a <= 13' "$(num loss_pct "$P")"
check "bursts average 5 datagrams (3.5..7)" 'a >= 3.5 && a <= 7' "$(num loss_run_mean "$P")"
stop_relay

# --- jitter reorders; --jitter-fifo does not
start_relay --seed 13 --up-delay-ms 10 --up-jitter-ms 20
probe --count 500 --interval-ms 2 --wait-ms 300
# Uniform 20 ms at 2 ms spacing: (J-T)^2/2J^2 = 40% of adjacent pairs swap;
# a large share of datagrams arrive after a later one.
JL=$(num up_late "$P")
check "uniform jitter of 20 ms at 2 ms spacing reorders many (> 100 of 500)" 'a > 100 && b == 0' "$JL" "$(num down_late "$P")"
check "and spreads the up delay over [10, 30] ms (min, p95, p50)" 'a >= 10 && b > 27 && b < 35 && c > 17 && c < 24' \
    "$(num min_ms "$(obj up "$P")")" "$(num p95_ms "$(obj up "$P")")" "$(num p50_ms "$(obj up "$P")")"
stop_relay
start_relay --seed 13 --up-delay-ms 10 --up-jitter-ms 20 --up-jitter-fifo
probe --count 500 --interval-ms 2 --wait-ms 300
check "the same jitter with --jitter-fifo keeps order" 'a == 0 && b == 500' "$(num up_late "$P")" "$(num replies "$P")"
stop_relay
start_relay --seed 14 --down-jitter-ms 8 --down-jitter-dist pareto
probe --count 500 --interval-ms 2 --wait-ms 500
check "Pareto jitter (mean 8 ms) on the way down: heavy tail, p99 well above mean" 'b > 2.5 * a && c > 0' \
    "$(num mean_ms "$(obj down "$P")")" "$(num p99_ms "$(obj down "$P")")" "$(num down_late "$P")"
stop_relay

# --- explicit reordering
start_relay --seed 15 --up-reorder 10 --up-reorder-gap-ms 20 --up-delay-ms 5
probe --count 1000 --interval-ms 1 --wait-ms 300
# A held datagram is overtaken by the ~19 sent after it, so it (and only it)
# reaches the echo after a later one.
stop_relay
check "10% reordering: the held ones arrive late (relay held a, echo saw b late)" \
    'b >= 0.9 * a && b <= a && a >= 70 && a <= 130' "$(num reordered "$(obj up "$STATS")")" "$(num up_late "$P")"

# --- duplication
start_relay --seed 16 --down-dup 10
probe --count 1000 --interval-ms 0.5 --wait-ms 300
check "10% duplication on the way down: 10 +- 3% duplicate replies" 'a >= 70 && a <= 130' "$(num duplicate_replies "$P")"
stop_relay
check "counted by the relay as duplicated" 'a == b' "$(num duplicated "$(obj down "$STATS")")" "$(num duplicate_replies "$P")"

# --- rate limit
start_relay --up-rate-kbit 200 --up-rate-queue-ms 100
probe --count 1000 --interval-ms 1 --size 200 --wait-ms 500
stop_relay
FWD=$(num forwarded "$(obj up "$STATS")")
# 228 bytes on the wire at 200 kbit/s: 9.12 ms each, so ~1.1 s of sending
# plus the 100 ms backlog passes ~120 of the 1000 offered.
check "a 200 kbit/s limit passes about 200 kbit/s (forwarded ~120 of 1000)" 'a >= 95 && a <= 145' "$FWD"
check "and tail-drops the rest, with at most 100 ms (+ timer slack) of backlog" 'a + b == 1000 && c <= 112' \
    "$FWD" "$(num dropped_rate "$(obj up "$STATS")")" "$(num delay_max_ms "$(obj up "$STATS")")"

# --- two clients at once, each gets its own replies
start_relay --delay-ms 5
"$IMP" probe --to "$RELAY_ADDR" --json --count 300 --interval-ms 1 --wait-ms 500 >"$T/p1" &
P1=$!
"$IMP" probe --to "$RELAY_ADDR" --json --count 300 --interval-ms 1 --wait-ms 500 >"$T/p2" &
P2=$!
wait $P1 $P2
stop_relay
check "two clients at once each get all their replies" 'a == 300 && b == 300 && c == 2' \
    "$(num replies "$(cat "$T/p1")")" "$(num replies "$(cat "$T/p2")")" "$(num seen "$(obj clients "$STATS")")"
check "and nothing foreign crossed between them" 'a == 0 && b == 0' "$(num foreign "$(cat "$T/p1")")" "$(num foreign "$(cat "$T/p2")")"

# --- a bounded queue
start_relay --queue 16 --up-delay-ms 200
probe --count 100 --interval-ms 0.1 --wait-ms 400
stop_relay
check "a 16-slot queue holding 200 ms drops and counts the overflow" 'a == 16 && b == 84' \
    "$(num forwarded "$(obj up "$STATS")")" "$(num dropped_queue_full "$(obj up "$STATS")")"

# --- the same seed gives the same run
start_relay --seed 99 --up-loss 20 --up-burst-loss 5 --up-burst-len 4
probe --count 1000 --interval-ms 0.5 --wait-ms 300
R1="$(num replies "$P") $(num loss_runs "$P") $(num loss_run_max "$P")"
stop_relay
start_relay --seed 99 --up-loss 20 --up-burst-loss 5 --up-burst-len 4
probe --count 1000 --interval-ms 0.5 --wait-ms 300
R2="$(num replies "$P") $(num loss_runs "$P") $(num loss_run_max "$P")"
stop_relay
if [ "$R1" = "$R2" ]; then ok "the same seed loses the same datagrams (replies, runs, longest: $R1)"; else bad "same seed, same run" "$R1 vs $R2"; fi

# --- bad settings are refused
"$IMP" --listen 127.0.0.1:0 --to "$ECHO_ADDR" --loss 150 >/dev/null 2>"$T/err"
rc=$?
check "a loss of 150% is refused with a usage error" 'a == 2' "$rc"
"$IMP" --listen 127.0.0.1:0 --to "$ECHO_ADDR" --burst-loss 60 --burst-len 1 >/dev/null 2>"$T/err"
check "a burst loss no Gilbert-Elliott chain can make is refused" 'a == 2' "$?"

kill -TERM "${PIDS[0]}"; wait "${PIDS[0]}" 2>/dev/null
ES=$(grep '"event":"stats"' "$T/echo.out")
check "the echo counted what reached it and nothing foreign" 'a > 10000 && b == 0' "$(num received "$ES")" "$(num foreign "$ES")"
finish
