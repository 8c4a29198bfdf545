#!/usr/bin/env bash
# call.test.sh - calls between real daemons on loopback: a signing
# authority, two supernodes, three users (parleyd), driven with the parley
# CLI. Shown:
#  - alice calls bob by name with speech from a WAV file; bob's daemon
#    answers by itself with other speech; both directions carry the speech:
#    parley-quality passes both recordings (its default thresholds fail
#    silence, noise, one-way audio and other speech), and fails a recording
#    held against the wrong talker;
#  - `parley call` prints ringing, the answer, the safety number and the
#    path, and one line with the reason at the end; `parley calls --json`
#    has the live statistics;
#  - rejected, busy, no answer, no such user, unreachable (offline): each
#    ends with its reason and its exit code;
#  - hold, resume, mute and unmute through the CLI, seen at the other end;
#    the caller's `parley call` follows the call on one connection and
#    shows the hold and the resume as they happen.
set -u
B=${PARLEY_BUILD:-build/release}
CA="$B/parley-ca"
PL="$B/parley"
PD="$B/parleyd"
Q="$B/parley-quality"
SPEECH="$B/speech"
T=$(mktemp -d /tmp/pl-call-test.XXXXXX)
PIDS=()
passed=0
failed=0
PORT=$((20000 + ($$ % 20000)))
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT
# KEEP=1: stop the processes but keep the files (logs, recordings) for a look.
[ -n "${KEEP:-}" ] && trap "for p in \${PIDS[@]}; do kill \$p; done" EXIT
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; shift; for l in "$@"; do echo "     $l"; done; }
expect() { # NAME PATTERN TEXT
    if printf '%s' "$3" | grep -qE -- "$2"; then ok "$1"; else bad "$1" "no /$2/ in: $3"; fi
}
check() { # NAME AWK-CONDITION VALUES...
    local name=$1 cond=$2
    shift 2
    if awk -v a="${1:-}" -v b="${2:-}" -v c="${3:-}" -v d="${4:-}" "BEGIN { exit !($cond) }"; then ok "$name ($*)"
    else bad "$name" "values: $*" "condition: $cond"; fi
}
wait_line() { # FILE PATTERN [TRIES of 50 ms]
    for _ in $(seq "${3:-200}"); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
    return 1
}
finish() { echo "PL-TEST-SUMMARY $passed $failed"; exit 0; }
key_of() { "$PL" --home "$T/$1" --json show | sed -n 's/.*"fingerprint":"\([0-9a-f]*\)".*/\1/p'; }
num() { printf '%s' "$2" | grep -o "\"$1\":[-0-9.e]*" | head -1 | cut -d: -f2; }
# calls_field USER FIELD: the field of the user's first call in `calls --json`
calls_json() { "$PL" --home "$T/$1" --json calls 2>/dev/null; }
state_of() { calls_json "$1" | grep -o '"state":"[^"]*"' | head -1 | cut -d'"' -f4; }
wait_state() { # USER STATE [TRIES of 50 ms]
    for _ in $(seq "${3:-100}"); do [ "$(state_of "$1")" = "$2" ] && return 0; sleep 0.05; done
    return 1
}

for tool in "$CA" "$PL" "$PD" "$Q"; do [ -x "$tool" ] || { bad "$tool is built"; finish; }; done
tests/media/make_speech.sh "$SPEECH" || { bad "make_speech.sh makes the test speech"; finish; }
S1="$SPEECH/talker1.wav"
S2="$SPEECH/talker2.wav"

# ---- the authority, the supernodes, the users ------------------------------------------------
FP=$("$CA" init --dir "$T/ca") || { bad "ca init"; finish; }
"$CA" serve --dir "$T/ca" --listen 127.0.0.1:0 --rate 1000 --burst 1000 >"$T/ca.out" 2>>"$T/ca.log" &
PIDS+=($!)
wait_line "$T/ca.out" '^listening' || { bad "ca start" "$(cat "$T/ca.log")"; finish; }
CA_ADDR=$(awk '/^listening/{print $2}' "$T/ca.out")
for u in super1 super2 alice bob carol dave; do
    "$PL" --home "$T/$u" keygen >/dev/null && "$PL" --home "$T/$u" register "$u" --ca "$CA_ADDR" --ca-key "$FP" >/dev/null ||
        { bad "register $u"; finish; }
done
: >"$T/supernodes"
for i in 1 2; do echo "$(key_of "super$i") 127.0.0.$((i + 1)):$PORT" >>"$T/supernodes"; done
start_daemon() { # USER ARGS...
    local u=$1
    shift
    "$PD" --home "$T/$u" "$@" >"$T/$u.out" 2>>"$T/$u.log" &
    PIDS+=($!)
    eval "PID_$u=$!"
    wait_line "$T/$u.out" '^listening' || { bad "$u starts" "$(tail -5 "$T/$u.log")"; return 1; }
}
for i in 1 2; do
    start_daemon "super$i" --role supernode --listen "127.0.0.$((i + 1)):$PORT" --bootstrap-file "$T/supernodes" || finish
done
# alice and carol start at super1, bob and dave at super2: calls cross both.
tac "$T/supernodes" >"$T/supernodes.rev"
start_daemon alice --listen 127.0.1.1:0 --bootstrap-file "$T/supernodes" || finish
start_daemon bob --listen 127.0.1.2:0 --bootstrap-file "$T/supernodes.rev" --auto-answer \
    --answer-from "$S2" --answer-to "$T/rec2.wav" || finish
start_daemon carol --listen 127.0.1.3:0 --bootstrap-file "$T/supernodes" --ring-timeout 3 || finish
start_daemon dave --listen 127.0.1.4:0 --bootstrap-file "$T/supernodes.rev" || finish
for u in alice bob carol dave; do
    wait_line "$T/$u.log" 'record published' 200 || { bad "$u publishes its record" "$(tail -5 "$T/$u.log")"; finish; }
done
ok "a CA, two supernodes and four users (bob answers by himself) are up"

# ---- a call with speech both ways -------------------------------------------------------------------
out=$(timeout 40 "$PL" --home "$T/alice" call bob --from "$S1" --to "$T/rec.wav")
rc=$?
[ $rc -eq 0 ] && ok "parley call bob: exit 0 after a normal end" || bad "parley call bob exits 0" "exit $rc: $out"
expect "it shows the ringing with the time since dialing" '^ringing bob \([0-9]+ ms after dialing\)' "$out"
expect "it shows the answer" '^answered by bob after [0-9]+ ms' "$out"
expect "it shows the safety number: 12 groups of 5 digits" '^safety number ([0-9]{5} ){11}[0-9]{5}$' "$out"
expect "it shows the media path" '^path +direct over udp via 127\.0\.1\.2:[0-9]+' "$out"
expect "it says in one line how the call ended" '^call ended: hung up \(here\) after [0-9.]+ s; received [0-9]+ packets' "$out"
sn_a=$(printf '%s' "$out" | sed -n 's/^safety number //p')
sn_b=$(grep -o 'incoming call from alice; safety number [0-9 ]*' "$T/bob.log" | tail -1 | sed 's/.*safety number //')
[ -n "$sn_a" ] && [ "$sn_a" = "$sn_b" ] && ok "both ends show the same safety number" || bad "same safety number" "alice: $sn_a" "bob: $sn_b"
sleep 0.5
# Bob's speech at alice, alice's speech at bob.
J1=$("$Q" "$S2" "$T/rec.wav" --json 2>&1)
rc1=$?
J2=$("$Q" "$S1" "$T/rec2.wav" --json 2>&1)
rc2=$?
echo "     bob -> alice: STOI $(num stoi "$J1"), delay $(num delay_ms "$J1") ms, R $(num r "$J1"), dead air $(num dead_air "$J1")"
echo "     alice -> bob: STOI $(num stoi "$J2"), delay $(num delay_ms "$J2") ms, R $(num r "$J2"), dead air $(num dead_air "$J2")"
[ $rc1 -eq 0 ] && ok "bob's speech reaches alice: parley-quality passes" || bad "bob's speech reaches alice" "$J1"
[ $rc2 -eq 0 ] && ok "alice's speech reaches bob: parley-quality passes" || bad "alice's speech reaches bob" "$J2"
check "both directions: one-way delay (the mean of the two, which cancels the media start skew) under 100 ms" \
    '(a + b) / 2 < 100' "$(num delay_ms "$J1")" "$(num delay_ms "$J2")"
"$Q" "$S1" "$T/rec.wav" >/dev/null 2>&1
[ $? -eq 1 ] && ok "the scores are not trivially passed: alice's recording held against her own talker fails" ||
    bad "a recording against the wrong talker fails"
json=$("$PL" --home "$T/alice" --json calls)
expect "calls --json keeps the ended call with its reason and statistics" '"end":"hangup".*"stats":\{"rtt_ms":[0-9.]+,"loss_rx":0' "$json"

# ---- rejected, busy, no answer, unknown, offline ------------------------------------------------------
"$PL" --home "$T/carol" call alice --tone 440 >"$T/c1.out" 2>&1 &
cpid=$!
wait_state alice ringing || bad "alice's phone rings"
expect "calls shows the incoming call ringing" '"direction":"incoming","state":"ringing"' "$(calls_json alice)"
out=$("$PL" --home "$T/alice" reject)
expect "parley reject declines it" '^call [0-9]+ rejected' "$out"
wait $cpid
rc=$?
[ $rc -eq 14 ] && ok "the caller's parley call ends with exit 14 (rejected)" || bad "exit 14 for rejected" "exit $rc: $(cat "$T/c1.out")"
expect "and says so" '^call ended: rejected$' "$(cat "$T/c1.out")"

"$PL" --home "$T/alice" call bob --tone 440 --duration 6 >"$T/a2.out" 2>&1 &
apid=$!
wait_state bob active || bad "bob takes alice's call"
out=$("$PL" --home "$T/carol" call bob --tone 550 2>&1)
rc=$?
[ $rc -eq 15 ] && ok "a third caller gets busy (exit 15)" || bad "busy: exit 15" "exit $rc: $out"
expect "and the reason busy" '^call ended: busy$' "$out"
wait $apid

t0=$(date +%s%N)
out=$("$PL" --home "$T/carol" call dave --tone 440 2>&1)
rc=$?
el=$((($(date +%s%N) - t0) / 1000000))
[ $rc -eq 16 ] && ok "nobody answers: no answer after carol's 3 s ring timeout (exit 16, ${el} ms)" ||
    bad "no answer: exit 16" "exit $rc: $out"
expect "and the reason no answer" '^call ended: no answer$' "$out"
expect "dave saw it as a missed call" 'ended: no answer' "$(cat "$T/dave.log")"

out=$("$PL" --home "$T/alice" call nobody-here 2>&1)
rc=$?
[ $rc -eq 13 ] && ok "an unknown name: exit 13" || bad "unknown name: exit 13" "exit $rc: $out"
expect "and the reason no such user" 'call ended: no such user' "$out"

# ---- hold, resume, mute, unmute ------------------------------------------------------------------------
"$PL" --home "$T/alice" call bob --tone 440 --duration 12 >"$T/a3.out" 2>&1 &
apid=$!
wait_state bob active || bad "bob takes alice's call"
# The daemon sends the call's record to `parley call` when it changes: the
# CLI does not ask again and again (each asking is a control request).
served() { num control_requests "$("$PL" --home "$T/alice" --json status)"; }
q1=$(served)
sleep 1
q2=$(served)
check "parley call asks the daemon nothing during the call (one request: this status)" 'b - a == 1' "$q1" "$q2"
rx() { num packets_received "$(calls_json "$1")"; }
out=$("$PL" --home "$T/alice" hold)
expect "parley hold" '^call [0-9]+ on hold' "$out"
sleep 0.4
json=$(calls_json bob)
expect "bob sees the call on hold by alice" '"state":"on hold","held_here":false,"held_there":true' "$json"
r1=$(rx bob)
sleep 1
r2=$(rx bob)
check "no voice reaches bob while on hold" 'a == b' "$r1" "$r2"
"$PL" --home "$T/alice" resume >/dev/null
sleep 1
r3=$(rx bob)
check "voice flows again after resume (50 packets a second)" 'c - b > 30' "$r1" "$r2" "$r3"
expect "alice's call is active again" '"state":"active"' "$(calls_json alice)"
"$PL" --home "$T/alice" mute >/dev/null
sleep 0.5
r4=$(rx bob)
sleep 1
r5=$(rx bob)
expect "calls shows alice muted" '"muted":true' "$(calls_json alice)"
check "muted: the tone stops, only comfort noise goes (under 10 packets a second)" 'b - a < 10' "$r4" "$r5"
"$PL" --home "$T/alice" unmute >/dev/null
sleep 1
r6=$(rx bob)
check "unmuted: 50 packets a second again" 'b - a > 30' "$r5" "$r6"
"$PL" --home "$T/alice" hangup >/dev/null
wait $apid
rc=$?
[ $rc -eq 0 ] && ok "parley hangup ends it (the call's exit 0)" || bad "hangup: exit 0" "exit $rc: $(cat "$T/a3.out")"
expect "bob's log has the hold and the hang-up" 'on hold \(by the other side\)' "$(cat "$T/bob.log")"
expect "alice's parley call showed the hold and the resume" 'on hold resumed call ended: hung up' "$(tr '\n' ' ' <"$T/a3.out")"

# ---- sound devices: none here, and the CLI says so in one line -------------------------------------------
out=$(timeout 20 "$PL" --home "$T/alice" call bob --device --duration 1 2>&1)
rc=$?
if [ $rc -ne 0 ]; then
    expect "--device without a sound card fails cleanly, in one line" "^parley: call: cannot use 'device' as the audio (source|sink): no sound device" "$out"
else
    ok "--device: this machine has a sound card (the call went through)"
fi

# ---- offline ------------------------------------------------------------------------------------------
"$PL" --home "$T/dave" stop >/dev/null
sleep 1
out=$("$PL" --home "$T/alice" call dave 2>&1)
rc=$?
[ $rc -eq 5 ] && ok "a user whose daemon stopped: unreachable at once (exit 5)" || bad "offline: exit 5" "exit $rc: $out"
expect "and the reason" 'call ended: unreachable \(offline\)' "$out"

finish
