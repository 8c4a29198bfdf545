#!/usr/bin/env bash
# call.bench.sh [BUILD] - calls between real daemons on loopback: figures,
# not pass/fail (make bench runs it). About three minutes.
#
#  1. dial to ringing: `parley call` until the callee's phone rings, look-up,
#     relay allocation, session and invite included, with no session to the
#     callee beforehand (cold); six calls, each after the last one's state
#     is gone;
#  2. one-way delay the software adds (mouth to ear, minus the network's):
#     a direct call on loopback (no network delay), and a call through
#     parley-impair with 30 ms of uniform jitter each way (its mean, 15 ms,
#     is the network's);
#  3. speech scores (STOI, concealed audio, R) through parley-impair at 0%,
#     5% and 10% random loss and 5% loss in bursts (mean 3 datagrams), each
#     way;
#  4. CPU per call end: the daemon's CPU time during a call (WAV in, WAV
#     out, Opus, jitter buffer, AES-GCM, paths) minus the same time idle:
#     from just before the dial to 9 s later, while both sides still send
#     speech (the files are 10 s long); both talk at once (double talk),
#     then, in a second call, take turns as in a conversation; and double
#     talk again at full band (--voice-band full), beside the default,
#     wideband;
#  5. a peer beside us: the same call between two baresip instances
#     (bench/peer_baresip.sh), with its default Opus complexity and with
#     ours, CPU measured the same way, delay and speech scores too.
#
# PERF=FILE records the caller's daemon with perf during the direct call.
# FULL=0 leaves out the call at full band (4c).
# PEER=0 leaves the peer out.
#
# The impaired calls run alice in privacy mode, attached to her supernode
# through parley-impair, so that all of her call's datagrams cross it (her
# own supernode's relay); bob is on loopback directly.
set -u
B=${1:-${PARLEY_BUILD:-build/release}}
CA="$B/parley-ca"
PL="$B/parley"
PD="$B/parleyd"
Q="$B/parley-quality"
IMP="$B/parley-impair"
SPEECH="$B/speech"
T=$(mktemp -d /tmp/pl-call-bench.XXXXXX)
PIDS=()
PORT=$((20000 + ($$ % 20000)))
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT
wait_line() { for _ in $(seq "${3:-200}"); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done; return 1; }
num() { printf '%s' "$2" | grep -o "\"$1\":[-0-9.e]*" | head -1 | cut -d: -f2; }
key_of() { "$PL" --home "$T/$1" --json show | sed -n 's/.*"fingerprint":"\([0-9a-f]*\)".*/\1/p'; }
die() { echo "call.bench: $*" >&2; exit 1; }

tests/media/make_speech.sh "$SPEECH" || die "no test speech"
S1="$SPEECH/talker1.wav"
S2="$SPEECH/talker2.wav"
FP=$("$CA" init --dir "$T/ca") || die "ca init"
"$CA" serve --dir "$T/ca" --listen 127.0.0.1:0 --rate 1000 --burst 1000 >"$T/ca.out" 2>>"$T/ca.log" &
PIDS+=($!)
wait_line "$T/ca.out" '^listening' || die "ca"
CA_ADDR=$(awk '/^listening/{print $2}' "$T/ca.out")
for u in super1 super2 alice bob; do
    "$PL" --home "$T/$u" keygen >/dev/null && "$PL" --home "$T/$u" register "$u" --ca "$CA_ADDR" --ca-key "$FP" >/dev/null ||
        die "register $u"
done
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
stop_user() { # USER PID
    "$PL" --home "$T/$1" stop >/dev/null 2>&1
    wait "$2" 2>/dev/null
}
SUPER_PIDS=()
for i in 1 2; do
    start "super$i" --role supernode --listen "127.0.0.$((i + 1)):$PORT" --bootstrap-file "$T/supernodes"
    SUPER_PIDS+=("$LAST_PID")
done
cpu_ns() { awk '{print $1}' "/proc/$1/schedstat"; }
# CPU per call end, percent of one core: the rate from T1 to T2 (the call)
# less the rate from T0 to T1 (the same daemon idle). Arguments: the
# process's CPU ns at T0, T1, T2, then T0, T1, T2.
cpu_pct() {
    awk -v a0="$1" -v a1="$2" -v a2="$3" -v t0="$4" -v t1="$5" -v t2="$6" \
        'BEGIN { printf "%.2f", 100 * ((a2 - a1) / (t2 - t1) - (a1 - a0) / (t1 - t0)) }'
}
# restart alice|bob ARGS: (re)starts the user on their address with ARGS,
# with a fresh log so that the wait for the record sees this start's line;
# ALICE or BOB gets the new process.
declare -A LISTEN=([alice]=127.0.1.1:0 [bob]=127.0.1.2:0)
restart() {
    local u=$1 var=${1^^}
    shift
    [ -n "${!var:-}" ] && stop_user "$u" "${!var}"
    : >"$T/$u.log"
    start "$u" --listen "${LISTEN[$u]}" "$@"
    printf -v "$var" %s "$LAST_PID"
}
# score_pair ALICE-RECORDING BOB-RECORDING: parley-quality of each against
# the other side's speech (J1: what alice heard, J2: what bob heard), and
# PAIR_DELAY, the one-way delay: each recording starts when its side's
# media starts, and the callee's starts first (it answers, then the answer
# travels); that skew adds to one direction's measured delay and takes as
# much from the other's, so the mean of the two is the one-way delay.
# PAIR_STOI: alice->bob / bob->alice.
score_pair() {
    J1=$("$Q" "$S2" "$1" --json 2>/dev/null)
    J2=$("$Q" "$S1" "$2" --json 2>/dev/null)
    PAIR_DELAY=$(awk -v a="$(num delay_ms "$J2")" -v b="$(num delay_ms "$J1")" 'BEGIN{printf "%.1f", (a+b)/2}')
    PAIR_STOI="$(num stoi "$J2") / $(num stoi "$J1")"
}
# cpu_of_call FROM TO [OUT]: after 5 s of both daemons idle, alice calls bob
# with FROM as her audio and TO as her recording (OUT gets `parley call
# --json`); CA and CB get CPU per call end, alice's and bob's, over the
# first 9 s of the call. The window ends while both files still play: the
# same window as the peer's (bench/peer_baresip.sh), whose call ends with
# the caller's file.
cpu_of_call() {
    sleep 1
    a0=$(cpu_ns "$ALICE") b0=$(cpu_ns "$BOB") t0=$(date +%s%N)
    sleep 5
    a1=$(cpu_ns "$ALICE") b1=$(cpu_ns "$BOB") t1=$(date +%s%N)
    [ -n "${PERF:-}" ] && { perf record -F 2000 -g -p "$ALICE" -o "$PERF" -- sleep 9 >/dev/null 2>&1 & }
    PERF= # the first call's only
    "$PL" --home "$T/alice" --json call bob --from "$1" --to "$2" >"${3:-/dev/null}" 2>/dev/null &
    local call=$!
    sleep 9
    a2=$(cpu_ns "$ALICE") b2=$(cpu_ns "$BOB") t2=$(date +%s%N)
    wait "$call"
    CA=$(cpu_pct "$a0" "$a1" "$a2" "$t0" "$t1" "$t2")
    CB=$(cpu_pct "$b0" "$b1" "$b2" "$t0" "$t1" "$t2")
}

echo "== calls on loopback (bench/call.bench.sh)"

# ---- 1. dial to ringing -------------------------------------------------------------------------------
start alice --listen 127.0.1.1:0 --bootstrap-file "$T/supernodes"
ALICE=$LAST_PID
start bob --listen 127.0.1.2:0 --bootstrap-file "$T/supernodes.rev"
BOB=$LAST_PID
wait_line "$T/alice.log" 'record published' 200 && wait_line "$T/bob.log" 'record published' 200 || die "attach"
rings=()
for i in 1 2 3 4 5 6; do
    out=$("$PL" --home "$T/alice" --json call bob --timeout 0.5 2>/dev/null)
    rings+=("$(num dial_to_ringing_ms "$out")")
    sleep 4.5 # the last call's paths and session linger 4 s: the next one starts cold
done
printf '%s\n' "${rings[@]}" | sort -n >"$T/rings"
echo "dial to ringing (look-up, relay grant, handshake, invite; cold session), 6 calls:"
echo "  first $(printf '%.1f' "${rings[0]}") ms, median $(awk '{a[NR]=$1} END {printf "%.1f", (a[3]+a[4])/2}' "$T/rings") ms, max $(tail -1 "$T/rings") ms (target <= 100 ms)"

# ---- 2a and 4: a direct call, no impairment; CPU per call end -----------------------------------------------
restart bob --bootstrap-file "$T/supernodes.rev" --auto-answer --answer-from "$S2" --answer-to "$T/rec_bob.wav"
wait_line "$T/bob.log" 'record published' 200 || die "bob"
cpu_of_call "$S1" "$T/rec_alice.wav" "$T/call.json"
out=$(cat "$T/call.json")
call_s=$(num duration_s "$out")
CPU_A=$CA CPU_B=$CB
awk -v a0="$a0" -v a1="$a1" -v b0="$b0" -v b1="$b1" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v s="$call_s" -v ca="$CPU_A" -v cb="$CPU_B" 'BEGIN {
    printf "CPU per call end (%.1f s call, the first %.1f s; WAV in and out, crypto included; idle daemon subtracted):\n", s, (t2 - t1) / 1e9;
    printf "  caller %.2f%%, callee %.2f%% of one core (idle: %.3f%% and %.3f%%) (target <= 2%%)\n",
        ca, cb, 100 * (a1 - a0) / (t1 - t0), 100 * (b1 - b0) / (t1 - t0) }'
score_pair "$T/rec_alice.wav" "$T/rec_bob.wav"
DELAY=$PAIR_DELAY STOI=$PAIR_STOI
echo "one-way delay, direct on loopback (network ~0): the software adds $DELAY ms (target <= 45 ms)"
echo "  (measured $(num delay_ms "$J2") ms alice->bob and $(num delay_ms "$J1") ms bob->alice: the skew between the two media starts cancels in the mean)"
echo "  STOI $(num stoi "$J2") / $(num stoi "$J1"), R $(num r "$J2") / $(num r "$J1")"

# ---- 2b and 3: through parley-impair ----------------------------------------------------------------------------
stop_user alice "$ALICE"
IMP_ADDR=127.0.0.50:$PORT
SN1=$(head -1 "$T/supernodes")
# One supernode only from here: alice keeps a standby relay at a second
# supernode of hers and the path manager moves to it when it is better (as
# under jitter), and that relay would be a way around the impairment. So
# super2 stops, and bob attaches to super1.
stop_user super2 "${SUPER_PIDS[1]}"
echo "$SN1" >"$T/sn1_only"
restart bob --bootstrap-file "$T/sn1_only" --auto-answer --answer-from "$S2" --answer-to "$T/rec_bob.wav"
wait_line "$T/bob.log" 'record published' 200 || die "bob on super1"
impaired() { # LABEL IMPAIR-OPTIONS...
    local label=$1
    shift
    "$IMP" --listen "$IMP_ADDR" --to "127.0.0.2:$PORT" --seed 7 "$@" >"$T/imp.out" 2>"$T/imp.log" &
    local imp=$!
    PIDS+=($imp)
    wait_line "$T/imp.out" '^listening' || die "parley-impair"
    echo "${SN1%% *} $IMP_ADDR" >"$T/via_impair"
    rm -f "$T/alice.out" "$T/alice/hosts" # no host cache: she must attach through the impairment
    start alice --listen 127.0.1.1:0 --bootstrap-file "$T/via_impair" --private
    local ap=$LAST_PID
    wait_line "$T/alice.log" 'record published' 400 || die "alice through the impairment"
    "$PL" --home "$T/alice" --json status | grep -q "\"addr\":\"$IMP_ADDR\"" || die "alice is not attached through the impairment"
    sleep 1
    out=$("$PL" --home "$T/alice" --json call bob --from "$S1" --to "$T/rec_alice.wav" 2>/dev/null)
    local theirs
    theirs=$("$PL" --home "$T/bob" --json calls 2>/dev/null)
    # The receiver's own figures for the E-model: loss seen and audio concealed.
    local la ca lb cb
    la=$(num loss_rx "$out") ca=$(num concealed_fraction "$out")
    # Bob's entry for this call: the one with the highest id (his daemon
    # still lists the earlier impaired calls, ended, for a minute).
    theirs=$(printf '%s' "$theirs" | sed 's/{"id":/\n&/g' | grep '^{"id":' | sort -t: -k2 -n | tail -1)
    lb=$(num loss_rx "$theirs") cb=$(num concealed_fraction "$theirs")
    J1=$("$Q" "$S2" "$T/rec_alice.wav" --json --loss-pct "$(awk -v x="$la" 'BEGIN{print 100*x}')" \
        --concealed-fraction "$ca" 2>/dev/null)
    J2=$("$Q" "$S1" "$T/rec_bob.wav" --json --loss-pct "$(awk -v x="$lb" 'BEGIN{print 100*x}')" \
        --concealed-fraction "$cb" 2>/dev/null)
    printf '  %-25s one-way %5.1f ms | alice->bob: STOI %s, concealed %4.1f%%, R %5.1f | bob->alice: STOI %s, concealed %4.1f%%, R %5.1f (%s)\n' \
        "$label" "$(awk -v a="$(num delay_ms "$J2")" -v b="$(num delay_ms "$J1")" 'BEGIN{print (a+b)/2}')" \
        "$(num stoi "$J2")" "$(awk -v x="$cb" 'BEGIN{print 100*x}')" "$(num r "$J2")" \
        "$(num stoi "$J1")" "$(awk -v x="$ca" 'BEGIN{print 100*x}')" "$(num r "$J1")" \
        "$(printf '%s' "$out" | grep -o '"kind":"[a-z]*"' | cut -d'"' -f4) via $(printf '%s' "$out" | grep -o '"via":"[^"]*"' | cut -d'"' -f4)"
    stop_user alice "$ap"
    kill "$imp" 2>/dev/null
    wait "$imp" 2>/dev/null
}
echo "through parley-impair (alice's datagrams cross it both ways; relayed by her supernode):"
impaired "30 ms jitter (mean 15)" --jitter-ms 30
impaired "0% loss" --loss 0
impaired "5% random loss" --loss 5
impaired "10% random loss" --loss 10
impaired "5% loss in bursts of ~3" --burst-loss 5 --burst-len 3
echo "  (one-way: the mean of the two directions' delays; under jitter the software adds that minus the jitter's mean, 15 ms)"

# ---- 4b. CPU per call end in a conversation ------------------------------------------------------------------------
# The call above is double talk: both files speak at once, all the time, the
# worst case for the encoders. In a conversation people take turns: here
# alice speaks her first 5 s and then listens, bob listens and then speaks
# his first 5 s. The same window, measured the same way.
sox "$S1" "$T/turn_alice.wav" trim 0 5 pad 0 5 2>/dev/null && sox "$S2" "$T/turn_bob.wav" trim 0 5 pad 5 0 2>/dev/null ||
    die "sox: turn-taking files"
# A fresh log for alice too, and no host cache: she last attached through
# parley-impair.
rm -f "$T/alice/hosts"
restart alice --bootstrap-file "$T/sn1_only"
restart bob --bootstrap-file "$T/sn1_only" --auto-answer --answer-from "$T/turn_bob.wav" --answer-to "$T/rec_bob_turns.wav"
wait_line "$T/alice.log" 'record published' 200 && wait_line "$T/bob.log" 'record published' 200 || die "attach"
cpu_of_call "$T/turn_alice.wav" "$T/rec_alice_turns.wav"
TURN_A=$CA TURN_B=$CB
echo "CPU per call end in a conversation (each speaks 5 s, then listens; the same window):"
echo "  caller $TURN_A%, callee $TURN_B% of one core (target <= 2%)"

# ---- 4c. double talk at full band ------------------------------------------------------------------------------
# Parley codes wideband by default (src/media/voice_codec.h); baresip below
# codes full band. The double-talk call again with both daemons at full band
# (--voice-band full) shows what the band costs, beside the peer.
if [ "${FULL:-1}" != 0 ]; then
    restart alice --bootstrap-file "$T/sn1_only" --voice-band full
    restart bob --bootstrap-file "$T/sn1_only" --voice-band full --auto-answer --answer-from "$S2" \
        --answer-to "$T/rec_bob_full.wav"
    wait_line "$T/alice.log" 'record published' 200 && wait_line "$T/bob.log" 'record published' 200 || die "attach"
    cpu_of_call "$S1" "$T/rec_alice_full.wav"
    FULL_A=$CA FULL_B=$CB
    score_pair "$T/rec_alice_full.wav" "$T/rec_bob_full.wav"
    FULL_DELAY=$PAIR_DELAY FULL_STOI=$PAIR_STOI
    echo "CPU per call end at full band (--voice-band full; double talk, the same window):"
    echo "  caller $FULL_A%, callee $FULL_B% of one core; STOI $FULL_STOI, one-way $FULL_DELAY ms"
fi

# ---- 5. a peer beside us: baresip ------------------------------------------------------------------------------
peer() { # LABEL OPUS-SETTINGS...
    local label=$1 k v
    shift
    unset P
    declare -gA P=()
    while read -r k v; do P[$k]=$v; done < <("$(dirname "$0")/peer_baresip.sh" "$T/baresip" "$PORT" "$S1" "$S2" "$Q" "$@")
    if [ -n "${P[missing]:-}" ]; then
        echo "  peer: ${P[missing]}"
        return 1
    fi
    printf '  %-70s %5s%%  %5s%%  %6s ms   %s / %s\n' "peer: baresip ${P[version]}, $label" "${P[cpu_caller]}" \
        "${P[cpu_callee]}" "${P[delay]}" "${P[stoi_ab]}" "${P[stoi_ba]}"
}
if [ "${PEER:-1}" != 0 ]; then
    echo "beside a peer (the same call on the same machine in the same run; CPU per call end over the same window, idle subtracted):"
    printf '  %-70s %6s  %6s  %9s   %s\n' "" caller callee "one-way" "STOI a->b / b->a"
    printf '  %-70s %5s%%  %5s%%  %6s ms   %s\n' "parley, opus complexity 5, wideband (voip, 32 kbit/s, FEC, DTX, gate)" "$CPU_A" "$CPU_B" "$DELAY" "$STOI"
    [ -n "${FULL_A:-}" ] && printf '  %-70s %5s%%  %5s%%  %6s ms   %s\n' "parley, the same at full band (--voice-band full)" \
        "$FULL_A" "$FULL_B" "$FULL_DELAY" "$FULL_STOI"
    peer "opus complexity 10 (its default; 28 kbit/s)" &&
        peer "opus complexity 5 (voip, 32 kbit/s, FEC, no DTX)" opus_complexity 5 opus_application voip \
            opus_bitrate 32000 opus_inbandfec yes
    echo "  (baresip: full band, SIP on loopback, SRTP AES_CM_128_HMAC_SHA1_80, aufile in, sndfile out, no sound card, jitter"
    echo "   buffer 5-10 frames (its default); its delay: sent-to-decoded per frame, median, plus the codec's lookahead;"
    echo "   no DTX: its jitter buffer releases a frame only when a packet arrives, so DTX's silences stall it)"
fi
