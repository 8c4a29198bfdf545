#!/usr/bin/env bash
# conference.bench.sh [BUILD] - a 10-party conference between real daemons
# on loopback: figures, not pass/fail (make bench runs it). About a minute.
#
#  1. a plain call first (alice calls bob, speech both ways): the one-way
#     delay the software adds, the reference for 3;
#  2. the host's CPU: alice hosts a conference with nine others (five
#     different talkers, looped to 30 s, and five tones, so that every leg
#     carries sound all the time); her daemon's CPU time over a window with
#     all ten connected, minus the same daemon idle, per participant (and
#     per leg), and a participant's daemon for comparison;
#  3. the delay mixing adds: the one-way delay between the host and a
#     participant (the host mixes its own voice in and the participant's
#     voice waits for the mixer's tick), and between two participants
#     (through the host: its jitter buffer, the mixer, one more encode),
#     each against the plain call's. Each figure is the mean of the two
#     directions' delays, which cancels the skew between the two ends'
#     media starts; on loopback the network adds nothing.
set -u
B=${1:-${PARLEY_BUILD:-build/release}}
CA="$B/parley-ca"
PL="$B/parley"
PD="$B/parleyd"
Q="$B/parley-quality"
SPEECH="$B/speech"
T=$(mktemp -d /tmp/pl-conf-bench.XXXXXX)
PIDS=()
CONF_PID=
PORT=$((20000 + ($$ % 20000)))
cleanup() {
    [ -n "$CONF_PID" ] && kill "$CONF_PID" 2>/dev/null
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT
wait_line() { for _ in $(seq "${3:-200}"); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done; return 1; }
num() { printf '%s' "$2" | grep -o "\"$1\":[-0-9.e]*" | head -1 | cut -d: -f2; }
key_of() { "$PL" --home "$T/$1" --json show | sed -n 's/.*"fingerprint":"\([0-9a-f]*\)".*/\1/p'; }
die() { echo "conference.bench: $*" >&2; exit 1; }
cpu_ns() { awk '{print $1}' "/proc/$1/schedstat"; }
connected() { "$PL" --home "$T/$1" --json conference 2>/dev/null | grep -o '"state":"connected"' | wc -l; }
# delay TALKER RECORDING: where the talker's speech sits in the recording (ms)
delay() { num delay_ms "$("$Q" "$SPEECH/talker$1.wav" "$2" --json --max-lag-ms 3000 --min-stoi off --max-dead-air off \
    --max-delay-ms off --min-r off 2>/dev/null)"; }
mean() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (a + b) / 2 }'; }

tests/media/make_speech.sh "$SPEECH" || die "no test speech"
for i in 1 2 3 4 5; do sox -D "$SPEECH/talker$i.wav" "$T/loop$i.wav" repeat 2 || die "sox"; done
FP=$("$CA" init --dir "$T/ca") || die "ca init"
"$CA" serve --dir "$T/ca" --listen 127.0.0.1:0 --rate 1000 --burst 1000 >"$T/ca.out" 2>>"$T/ca.log" &
CA_PID=$!
wait_line "$T/ca.out" '^listening' || die "ca"
CA_ADDR=$(awk '/^listening/{print $2}' "$T/ca.out")
USERS="alice bob carol dave erin frank grace heidi irene judy"
for u in super1 super2 $USERS; do
    "$PL" --home "$T/$u" keygen >/dev/null && "$PL" --home "$T/$u" register "$u" --ca "$CA_ADDR" --ca-key "$FP" >/dev/null ||
        die "register $u"
done
kill "$CA_PID"
wait "$CA_PID" 2>/dev/null
: >"$T/supernodes"
for i in 1 2; do echo "$(key_of "super$i") 127.0.0.$((i + 1)):$PORT" >>"$T/supernodes"; done
tac "$T/supernodes" >"$T/supernodes.rev"
start() { # USER ARGS...
    local u=$1
    shift
    "$PD" --home "$T/$u" "$@" >"$T/$u.out" 2>>"$T/$u.log" &
    PIDS+=($!)
    LAST_PID=$!
    wait_line "$T/$u.out" '^listening' || die "$u does not start: $(tail -3 "$T/$u.log")"
}
for i in 1 2; do start "super$i" --role supernode --listen "127.0.0.$((i + 1)):$PORT" --bootstrap-file "$T/supernodes"; done
# Parties 2-5 answer with talkers 2-5 (looped), 6-10 with tones.
n=1
for u in $USERS; do
    boot="$T/supernodes"
    [ $((n % 2)) -eq 0 ] && boot="$T/supernodes.rev"
    if [ $n -eq 1 ]; then
        start "$u" --listen "127.0.1.$n:0" --bootstrap-file "$boot"
        ALICE=$LAST_PID
    else
        src="$T/loop$n.wav"
        [ $n -gt 5 ] && src="tone:$((200 + 90 * n))"
        start "$u" --listen "127.0.1.$n:0" --bootstrap-file "$boot" --auto-answer --answer-from "$src" --answer-to "$T/rec$n.wav"
        [ "$u" = bob ] && BOB=$LAST_PID
    fi
    n=$((n + 1))
done
for u in $USERS; do wait_line "$T/$u.log" 'record published' 300 || die "$u does not attach"; done

echo "== a 10-party conference on loopback (bench/conference.bench.sh; load average $(cut -d" " -f1-3 /proc/loadavg): the delays include the machine's scheduling jitter, bench_conference has them without)"

# ---- 1. a plain call, and the daemon idle -----------------------------------------------------------
sleep 1
a0=$(cpu_ns "$ALICE") t0=$(date +%s%N)
sleep 4
a1=$(cpu_ns "$ALICE") t1=$(date +%s%N)
idle=$(awk -v a="$((a1 - a0))" -v t="$((t1 - t0))" 'BEGIN { print a / t }')
"$PL" --home "$T/alice" call bob --from "$SPEECH/talker1.wav" --to "$T/call_alice.wav" >/dev/null 2>&1 ||
    die "the plain call failed"
d_ab=$(delay 1 "$T/rec2.wav")
d_ba=$(delay 2 "$T/call_alice.wav")
D2=$(mean "$d_ab" "$d_ba")
JB2=$("$PL" --home "$T/bob" --json calls 2>/dev/null | grep -o '"jitter_buffer_ms":[-0-9.e]*' | tail -1 | cut -d: -f2)
echo "plain call alice <-> bob: one-way delay $D2 ms (alice->bob $d_ab, bob->alice $d_ba; bob's jitter buffer $JB2 ms)"
sleep 1

# ---- 2. the conference: the host's CPU --------------------------------------------------------------------
"$PL" --home "$T/alice" conference bob carol dave erin frank grace heidi irene judy --from "$T/loop1.wav" \
    --to "$T/rec1.wav" >"$T/conf.out" 2>&1 &
CONF_PID=$!
t_start=$(date +%s%N)
for _ in $(seq 200); do [ "$(connected alice)" -eq 10 ] && break; sleep 0.1; done
[ "$(connected alice)" -eq 10 ] || die "not all ten connected: $("$PL" --home "$T/alice" conference)"
up_ms=$(( ($(date +%s%N) - t_start) / 1000000 ))
host=$("$PL" --home "$T/alice" --json conference | grep -o '"host":"[^"]*"' | head -1 | cut -d'"' -f4)
[ "$host" = alice ] || die "alice does not host ($host)"
sleep 1
a2=$(cpu_ns "$ALICE") b2=$(cpu_ns "$BOB") t2=$(date +%s%N)
sleep 10
a3=$(cpu_ns "$ALICE") b3=$(cpu_ns "$BOB") t3=$(date +%s%N)
echo "all ten connected $up_ms ms after 'parley conference' (nine calls at once)"
awk -v a2="$a2" -v a3="$a3" -v b2="$b2" -v b3="$b3" -v t2="$t2" -v t3="$t3" -v idle="$idle" 'BEGIN {
    host = (a3 - a2) / (t3 - t2); part = (b3 - b2) / (t3 - t2); net = host - idle;
    printf "host CPU over %.1f s with ten parties (nine legs: decode, jitter buffer, mix, nine Opus encodes, crypto, paths; idle subtracted):\n", (t3 - t2) / 1e9;
    printf "  %.2f%% of one core in all (idle daemon: %.3f%%)\n", 100 * net, 100 * idle;
    printf "  per participant (/10): %.2f%% of a core = %.1f ms of CPU per second; per leg (/9): %.2f%%\n", 10 * net, 1000 * net / 10, 100 * net / 9;
    printf "  a participant (bob, one leg) for comparison: %.2f%% of a core\n", 100 * (part - idle) }'
mixinfo=$("$PL" --home "$T/alice" --json conference)
echo "  the mixer's queues at the host (frames waiting per participant): $(printf '%s' "$mixinfo" | grep -o '"queued":[0-9]*' | cut -d: -f2 | tr '\n' ' ')"

# ---- 3. the delay mixing adds -----------------------------------------------------------------------------
# The talkers are looped to 30 s; the recordings are read while they run.
sleep 2
d_hb=$(delay 1 "$T/rec2.wav")  # alice (the host) -> bob
d_bh=$(delay 2 "$T/rec1.wav")  # bob -> alice
d_bc=$(delay 2 "$T/rec3.wav")  # bob -> carol, through the host
d_cb=$(delay 3 "$T/rec2.wav")  # carol -> bob
d_dc=$(delay 4 "$T/rec3.wav")  # dave -> carol
d_cd=$(delay 3 "$T/rec4.wav")  # carol -> dave
DH=$(mean "$d_hb" "$d_bh")
DP=$(mean "$d_bc" "$d_cb")
DP2=$(mean "$d_dc" "$d_cd")
echo "one-way delay in the conference (mean of both directions, loopback):"
echo "  host <-> participant (alice <-> bob):   $DH ms; the plain call $D2 ms: mixing adds $(awk -v a="$DH" -v b="$D2" 'BEGIN { printf "%.1f", a - b }') ms"
echo "  participant <-> participant, through the host: bob <-> carol $DP ms, carol <-> dave $DP2 ms;"
echo "    against the plain call the host adds $(awk -v a="$DP" -v c="$DP2" -v b="$D2" 'BEGIN { printf "%.1f", (a + c) / 2 - b }') ms (its jitter buffer, the mixer's alignment, one more encode)"
echo "  (measured: alice->bob $d_hb, bob->alice $d_bh, bob->carol $d_bc, carol->bob $d_cb, dave->carol $d_dc, carol->dave $d_cd ms)"
jb() { "$PL" --home "$T/$1" --json calls 2>/dev/null | grep -o '"jitter_buffer_ms":[-0-9.e]*' | cut -d: -f2 |
    awk '{ s += $1; n++ } END { if (n) printf "%.1f ms (%d legs)", s / n, n }'; }
echo "  the legs' jitter buffers (mean delay they add): the host's $(jb alice), bob's $(jb bob), carol's $(jb carol)"
kill -INT "$CONF_PID"
wait "$CONF_PID" 2>/dev/null
CONF_PID=
