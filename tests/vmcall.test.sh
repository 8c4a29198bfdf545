#!/usr/bin/env bash
# vmcall.test.sh - voicemail from a call, as real processes on loopback: a
# signing authority, 3 supernodes (every one a replica of every mailbox) and
# five users (parleyd), driven with the parley CLI.
# Shown: `parley call NAME --voicemail --from SPEECH.wav` leaves the speech
# as a voicemail when the callee is offline (daemon stopped), declines the
# call, or does not answer in time (alice's 3 s ring timeout); each callee
# then has exactly one voicemail from alice, which plays to a WAV that
# parley-quality scores against the speech that was sent. The call's JSON
# says "leaving", then the voicemail's id. A call that is answered leaves
# none, busy leaves none (documented), a call without --voicemail leaves
# none and says how to; hanging up while a tone is being recorded ends the
# voicemail and stores what was said until then; a full mailbox (a small
# --mailbox-quota on the supernodes) refuses it, in one line and exit 7.
set -u
B=${PARLEY_BUILD:-build/release}
CA="$B/parley-ca"
PL="$B/parley"
PD="$B/parleyd"
Q="$B/parley-quality"
T=$(mktemp -d /tmp/pl-vmcall-test.XXXXXX)
PIDS=()
passed=0
failed=0
PORT=$((20000 + ($$ % 20000)))
NET=127.0.$((100 + ($$ % 50)))   # supernodes at $NET.1-3, users at $NET.11-15
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    [ -n "${PL_KEEP:-}" ] && echo "     (kept $T)" || rm -rf "$T"
}
trap cleanup EXIT
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; shift; for l in "$@"; do echo "     $l"; done; }
expect() { # NAME PATTERN TEXT
    if printf '%s' "$3" | grep -qE -- "$2"; then ok "$1"; else bad "$1" "no /$2/ in: $3"; fi
}
check() { # NAME AWK-CONDITION VALUES...
    local name=$1 cond=$2
    shift 2
    if awk -v a="${1:-}" -v b="${2:-}" -v c="${3:-}" "BEGIN { exit !($cond) }"; then ok "$name ($*)"
    else bad "$name" "values: $*" "condition: $cond"; fi
}
wait_line() { # FILE PATTERN [TRIES of 50 ms]
    for _ in $(seq "${3:-200}"); do grep -q -- "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
    return 1
}
finish() { echo "PL-TEST-SUMMARY $passed $failed"; exit 0; }
key_of() { "$PL" --home "$T/$1" --json show | sed -n 's/.*"fingerprint":"\([0-9a-f]*\)".*/\1/p'; }
pl() { local u=$1; shift; "$PL" --home "$T/$u" "$@"; }
num() { printf '%s' "$2" | grep -o "\"$1\":[-0-9.e]*" | head -1 | cut -d: -f2; }
state_of() { pl "$1" --json calls 2>/dev/null | grep -o '"state":"[^"]*"' | head -1 | cut -d'"' -f4; }
wait_state() { # USER STATE [TRIES of 50 ms]
    for _ in $(seq "${3:-100}"); do [ "$(state_of "$1")" = "$2" ] && return 0; sleep 0.05; done
    return 1
}
vm_count() { pl "$1" --json voicemail list | grep -o '"id":' | wc -l; }
# Waits until USER has N voicemails (for up to TRIES × 100 ms).
wait_vm() { # USER N [TRIES]
    for _ in $(seq "${3:-100}"); do [ "$(vm_count "$1")" -eq "$2" ] && return 0; sleep 0.1; done
    return 1
}

for tool in "$CA" "$PL" "$PD" "$Q"; do [ -x "$tool" ] || { bad "$tool is built"; finish; }; done
SPEECH="$B/speech"
tests/media/make_speech.sh "$SPEECH" >/dev/null 2>&1 || { bad "make_speech.sh makes the test speech"; finish; }
# Four seconds of speech (half a second of silence, then a sentence): a
# call's audio goes to the voicemail at the pace of speech.
CLIP="$T/clip.wav"
sox "$SPEECH/talker1.wav" "$CLIP" trim 0 4.0 2>/dev/null || { bad "sox cuts the speech"; finish; }

# A small mailbox quota (24 KiB of voicemail per recipient, about 8 s of
# speech) so that a full mailbox is cheap to reach. Voicemail is stored
# on 3 replicas; on a loaded machine one may answer late, and the caller
# is told "2 of 3" (as in messages.test.sh).
# ---- the authority, the supernodes, the users -----------------------------------------------
FP=$("$CA" init --dir "$T/ca") || { bad "ca init"; finish; }
"$CA" serve --dir "$T/ca" --listen 127.0.0.1:0 --rate 1000 --burst 1000 >"$T/ca.out" 2>>"$T/ca.log" &
PIDS+=($!)
wait_line "$T/ca.out" '^listening' || { bad "ca start" "$(cat "$T/ca.log")"; finish; }
CA_ADDR=$(awk '/^listening/{print $2}' "$T/ca.out")
for u in super1 super2 super3 alice bob carol dave erin; do
    pl "$u" keygen >/dev/null && pl "$u" register "$u" --ca "$CA_ADDR" --ca-key "$FP" >/dev/null ||
        { bad "register $u"; finish; }
done
: >"$T/supernodes"
for i in 1 2 3; do echo "$(key_of "super$i") $NET.$i:$PORT" >>"$T/supernodes"; done
declare -A PID_OF
start_daemon() { # USER ARGS...
    local u=$1
    shift
    : >"$T/$u.out"
    "$PD" --home "$T/$u" "$@" >"$T/$u.out" 2>>"$T/$u.log" &
    PID_OF[$u]=$!
    PIDS+=($!)
    wait_line "$T/$u.out" '^listening' || { bad "$u starts" "$(tail -5 "$T/$u.log")"; return 1; }
}
for i in 1 2 3; do
    start_daemon "super$i" --role supernode --listen "$NET.$i:$PORT" --bootstrap-file "$T/supernodes" \
        --mailbox-quota 24576 || finish
done
# The supernodes find each other before users attach (each mailbox has
# its three replicas).
sleep 1.5
# alice gives up ringing after 3 s; dave answers by himself.
start_user() { # USER N ARGS...
    local u=$1 n=$2
    shift 2
    local before
    before=$(grep -c 'record published on' "$T/$u.log" 2>/dev/null)
    start_daemon "$u" --listen "$NET.$n:0" --bootstrap-file "$T/supernodes" "$@" || return 1
    for _ in $(seq 200); do
        [ "$(grep -c 'record published on' "$T/$u.log")" -gt "${before:-0}" ] && return 0
        sleep 0.05
    done
    bad "$u attaches and publishes" "$(tail -5 "$T/$u.log")"
    return 1
}
start_user alice 11 --ring-timeout 3 || finish
start_user bob 12 || finish
start_user carol 13 || finish
start_user dave 14 --auto-answer --answer-from tone:550 || finish
start_user erin 15 || finish
ok "a CA, 3 supernodes and five users are up (alice rings for 3 s, dave answers by himself)"

# Plays USER's only voicemail and scores it against the clip.
play_and_score() { # USER WHAT
    local u=$1 what=$2 list id out q rc
    list=$(pl "$u" voicemail list)
    expect "$u's voicemail list: one from alice, new ($what)" '^[0-9a-f]{8}  alice .* +[0-9.]+ s  \[new\]$' "$list"
    id=$(printf '%s' "$list" | awk 'NR == 1 {print $1}')
    out=$(pl "$u" voicemail play "$id" --to "$T/played-$u.wav")
    expect "$u plays it to a WAV" "^played voicemail from alice \([0-9.]+ s\) to $T/played-$u.wav$" "$out"
    q=$("$Q" "$CLIP" "$T/played-$u.wav" --min-stoi 0.8 --max-delay-ms 50 --min-correlation 0.8 --json 2>&1)
    rc=$?
    [ $rc -eq 0 ] && ok "what $u hears is what alice said ($what): STOI $(num stoi "$q"), delay $(num delay_ms "$q") ms, correlation $(num correlation "$q")" ||
        bad "what $u hears is what alice said ($what, parley-quality)" "$q"
}

# ---- offline: bob's daemon is stopped ---------------------------------------------------------------
pl bob stop >/dev/null
wait "${PID_OF[bob]}" 2>/dev/null
sleep 0.5
pl alice call bob --from "$CLIP" --voicemail >"$T/c-bob.out" 2>&1 &
cpid=$!
# While it records, the call's JSON says so.
json=""
for _ in $(seq 60); do
    json=$(pl alice --json calls 2>/dev/null)
    printf '%s' "$json" | grep -q '"voicemail":{"state":"leaving"' && break
    sleep 0.05
done
expect "the call's JSON says the call ended unreachable and it is leaving a voicemail" \
    '"end":"unreachable","reason":"unreachable \(offline\)".*"voicemail":\{"state":"leaving","to":"bob"' "$json"
wait $cpid
rc=$?
out=$(cat "$T/c-bob.out")
[ $rc -eq 0 ] && ok "parley call bob --voicemail: exit 0 once the voicemail is stored" || bad "offline: exit 0" "exit $rc: $out"
expect "it says the call ended (offline), then that it leaves a voicemail" \
    '^call ended: unreachable \(offline\)$' "$out"
expect "then that it is leaving one" '^leaving a voicemail for bob \(Ctrl-C ends it\)$' "$out"
expect "and where it went" '^voicemail left for bob: 4\.0 s, stored on [23] of 3 replicas \(id [0-9a-f]{8}\)$' "$out"
json=$(pl alice --json calls)
expect "the call's JSON then has the voicemail's id" '"voicemail":\{"state":"left","to":"bob","id":"[0-9a-f]{32,}","duration_s":4,' "$json"
expect "alice's log tells the story" 'leaving voicemail for bob' "$(cat "$T/alice.log")"
start_user bob 12 || finish
if wait_line "$T/bob.log" 'voicemail from alice (4.0 s, left .*) waiting' 200; then ok "bob logs in and is told of it"
else bad "bob is told of the voicemail" "$(tail -5 "$T/bob.log")"; fi
wait_vm bob 1 20
[ "$(vm_count bob)" -eq 1 ] && ok "bob has exactly one voicemail" || bad "bob has exactly one voicemail" "$(pl bob voicemail list)"
play_and_score bob "offline"

# ---- rejected: carol declines -----------------------------------------------------------------------------
pl alice call carol --from "$CLIP" --voicemail >"$T/c-carol.out" 2>&1 &
cpid=$!
wait_state carol ringing || bad "carol's phone rings"
pl carol reject >/dev/null
wait $cpid
rc=$?
out=$(cat "$T/c-carol.out")
[ $rc -eq 0 ] && ok "carol declines: alice's call leaves a voicemail (exit 0)" || bad "rejected: exit 0" "exit $rc: $out"
expect "after the reason" '^call ended: rejected$' "$out"
expect "and it was stored" '^voicemail left for carol: 4\.0 s, stored on [23] of 3 replicas' "$out"
wait_vm carol 1 || bad "carol gets the voicemail while online" "$(tail -3 "$T/carol.log")"
[ "$(vm_count carol)" -eq 1 ] && ok "carol has exactly one voicemail" || bad "carol has exactly one voicemail" "$(pl carol voicemail list)"
play_and_score carol "rejected"

# ---- no answer: erin lets it ring ------------------------------------------------------------------------
t0=$(date +%s%N)
out=$(pl alice call erin --from "$CLIP" --voicemail 2>&1)
rc=$?
el=$((($(date +%s%N) - t0) / 1000000))
[ $rc -eq 0 ] && ok "erin does not answer: after alice's 3 s ring timeout, a voicemail (exit 0, ${el} ms in all)" ||
    bad "no answer: exit 0" "exit $rc: $out"
expect "after the reason" '^call ended: no answer$' "$out"
expect "stored" '^voicemail left for erin: 4\.0 s, stored on [23] of 3 replicas' "$out"
wait_vm erin 1 || bad "erin gets the voicemail" "$(tail -3 "$T/erin.log")"
[ "$(vm_count erin)" -eq 1 ] && ok "erin has exactly one voicemail" || bad "erin has exactly one voicemail" "$(pl erin voicemail list)"
play_and_score erin "no answer"

# ---- answered, busy, and not asked: no voicemail ------------------------------------------------------
out=$(timeout 30 "$PL" --home "$T/alice" call dave --from "$CLIP" --voicemail 2>&1)
rc=$?
[ $rc -eq 0 ] && ok "dave answers alice's call (exit 0)" || bad "answered: exit 0" "exit $rc: $out"
expect "a normal call" '^call ended: hung up \(here\)' "$out"
if printf '%s' "$out" | grep -q voicemail; then bad "an answered call says nothing of voicemail" "$out"
else ok "and says nothing of voicemail"; fi
pl carol call dave --tone 440 --duration 8 >"$T/c-busy.out" 2>&1 &
bpid=$!
wait_state dave active || bad "dave takes carol's call"
out=$(pl alice call dave --from "$CLIP" --voicemail 2>&1)
rc=$?
[ $rc -eq 15 ] && ok "dave is in another call: busy (exit 15), no voicemail" || bad "busy: exit 15" "exit $rc: $out"
expect "and says why none was left" '^no voicemail: dave is in another call and can be called again$' "$out"
pl carol hangup >/dev/null 2>&1
wait $bpid
sleep 1
[ "$(vm_count dave)" -eq 0 ] && ok "dave has no voicemail (answered, busy)" || bad "dave has no voicemail" "$(pl dave voicemail list)"
out=$(pl alice call erin --from "$CLIP" 2>&1)
rc=$?
[ $rc -eq 16 ] && ok "without --voicemail an unanswered call leaves none (exit 16)" || bad "no --voicemail: exit 16" "exit $rc: $out"
expect "and says how to leave one" '^\(to leave a message: parley call erin --voicemail, or parley voicemail leave erin --from FILE.wav\)$' "$out"
sleep 1
[ "$(vm_count erin)" -eq 1 ] && ok "erin still has one voicemail" || bad "erin still has one voicemail" "$(pl erin voicemail list)"

# ---- a hang-up ends the voicemail; what was said is kept --------------------------------------------------------
# A tone never ends: alice talks to erin's voicemail until she hangs up
# (Ctrl-C), about 2 s after it starts recording.
# (parley itself in the background, not a shell function: the signal goes to it)
"$PL" --home "$T/alice" call erin --tone 440 --voicemail >"$T/c-tone.out" 2>&1 &
cpid=$!
wait_line "$T/c-tone.out" '^leaving a voicemail for erin' 200 || bad "the tone call goes to voicemail" "$(cat "$T/c-tone.out")"
sleep 2
kill -INT $cpid
wait $cpid
rc=$?
out=$(cat "$T/c-tone.out")
[ $rc -eq 0 ] && ok "Ctrl-C while recording ends the voicemail and stores it (exit 0)" || bad "hang-up while recording: exit 0" "exit $rc: $out"
dur=$(printf '%s' "$out" | sed -n 's/^voicemail left for erin: \([0-9.]*\) s, stored.*/\1/p')
echo "     $(pl alice --json calls | grep -o '"duration_s":[0-9.]*,"bytes":[0-9]*' | tail -1)"
check "what was recorded until the hang-up is kept: about 2 s of tone" 'a >= 1.5 && a <= 3.5' "$dur"
wait_vm erin 2 || bad "erin gets the second voicemail" "$(pl erin voicemail list)"
expect "erin has it too, as long" "  alice .* +${dur:-x} s  \[new\]" "$(pl erin voicemail list)"

# The same from another terminal: `parley hangup` (no id) finds the call
# whose voicemail is recording.
"$PL" --home "$T/alice" call bob --tone 300 --voicemail >"$T/c-tone2.out" 2>&1 &
cpid=$!
wait_state bob ringing || bad "bob's phone rings"
pl bob reject >/dev/null
wait_line "$T/c-tone2.out" '^leaving a voicemail for bob' 200 || bad "the call goes to voicemail" "$(cat "$T/c-tone2.out")"
sleep 1
out=$(pl alice hangup)
expect "parley hangup ends the voicemail being recorded" '^call [0-9]+ hung up$' "$out"
wait $cpid
rc=$?
out=$(cat "$T/c-tone2.out")
dur=$(printf '%s' "$out" | sed -n 's/^voicemail left for bob: \([0-9.]*\) s, stored.*/\1/p')
[ $rc -eq 0 ] && check "and the caller's parley call reports it stored (exit 0): about 1 s" 'a >= 0.5 && a <= 2.5' "$dur" ||
    bad "hangup from another terminal: exit 0" "exit $rc: $out"
wait_vm bob 2 || bad "bob gets the second voicemail" "$(pl bob voicemail list)"

# ---- the caller's own --timeout counts as no answer ------------------------------------------------------------
sox "$CLIP" "$T/clip1.wav" trim 0 1.5 2>/dev/null
out=$(pl alice call bob --from "$T/clip1.wav" --timeout 1 --voicemail 2>&1)
rc=$?
[ $rc -eq 0 ] && ok "parley call --timeout 1 --voicemail: bob lets it ring, a voicemail is left (exit 0)" ||
    bad "--timeout with --voicemail: exit 0" "exit $rc: $out"
expect "from the whole file" '^voicemail left for bob: 1\.5 s, stored on [23] of 3 replicas' "$out"
wait_vm bob 3 || bad "bob gets the third voicemail" "$(pl bob voicemail list)"

# ---- a full mailbox: the voicemail is refused, and the caller is told ------------------------------------------
# Ten seconds of speech (about 30 KB) do not fit in carol's 24 KiB on any
# replica, whatever each holds already (a replica may have missed her
# first voicemail on a loaded machine).
pl alice call carol --from "$SPEECH/talker2.wav" --voicemail >"$T/c-quota.out" 2>"$T/c-quota.err" &
cpid=$!
wait_state carol ringing || bad "carol's phone rings"
pl carol reject >/dev/null
wait $cpid
rc=$?
[ $rc -eq 7 ] && ok "carol's mailbox is full: the call's voicemail is refused (exit 7)" ||
    bad "quota: exit 7" "exit $rc: $(cat "$T/c-quota.out" "$T/c-quota.err")"
expect "in one line" "^parley: call: no voicemail left for carol: carol's mailbox is full$" "$(cat "$T/c-quota.err")"
expect "the call's JSON says so" '"voicemail":\{"state":"failed","to":"carol","error":"quota","message":"carol.s mailbox is full"\}' \
    "$(pl alice --json calls)"
sleep 1
[ "$(vm_count carol)" -eq 1 ] && ok "carol still has exactly one voicemail" || bad "carol still has one voicemail" "$(pl carol voicemail list)"

finish
