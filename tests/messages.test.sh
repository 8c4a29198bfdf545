#!/usr/bin/env bash
# messages.test.sh - chat and voicemail as real processes on loopback: a
# signing authority, 5 supernodes and two users (parleyd), driven with the
# parley CLI.
# Shown: chat both ways while online (delivered directly, receipts, order,
# no duplicates, unread counts, read receipts), history and numbering that
# survive a daemon restart; offline chat through the replicated mailbox with
# one of the recipient's replicas killed (kill -9) before he logs in: all 3
# arrive, once, in order, and the sender learns it; a voicemail left for an
# offline user survives the same, is announced at login, listed, played to
# a WAV that matches what was left, kept across a restart without being
# fetched again, and deleted on every replica; and nothing a supernode
# stores or sends contains the plaintext of a message or of the voice.
set -u
B=${PARLEY_BUILD:-build/release}
CA="$B/parley-ca"
PL="$B/parley"
PD="$B/parleyd"
SCAN="$B/tests/tools/pl_plainscan"
Q="$B/parley-quality"
T=$(mktemp -d /tmp/pl-messages-test.XXXXXX)
PIDS=()
passed=0
failed=0
N_SN=5
PORT=$((20000 + ($$ % 20000)))
NET=127.0.$((40 + ($$ % 50)))   # supernodes at $NET.1-5, users at $NET.11-12
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    [ -n "${PL_KEEP:-}" ] && echo "     (kept $T)" || rm -rf "$T"
}
trap cleanup EXIT
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; shift; for l in "$@"; do echo "     $l"; done; }
expect() { # NAME PATTERN TEXT
    if printf '%s' "$3" | grep -qE -- "$2"; then ok "$1"; else bad "$1" "no /$2/ in: $3"; fi
}
wait_line() { # FILE PATTERN [TRIES of 50 ms]
    for _ in $(seq "${3:-200}"); do grep -q -- "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
    return 1
}
# Runs a command until its output matches, for up to TRIES × 100 ms.
wait_for() { # TRIES PATTERN CMD...
    local tries=$1 pat=$2 out
    shift 2
    for _ in $(seq "$tries"); do
        out=$("$@" 2>&1) && printf '%s' "$out" | grep -qE -- "$pat" && return 0
        sleep 0.1
    done
    return 1
}
finish() { echo "PL-TEST-SUMMARY $passed $failed"; exit 0; }
key_of() { "$PL" --home "$T/$1" --json show | sed -n 's/.*"fingerprint":"\([0-9a-f]*\)".*/\1/p'; }
pl() { local u=$1; shift; "$PL" --home "$T/$u" "$@"; }
json_count() { grep -o "$1" | wc -l; }
# A history on one line, not marking anything read.
hist() { "$PL" --home "$T/$1" chat history "$2" --keep-unread | tr '\n' ' '; }

# ---- the authority, the supernodes, alice and bob ------------------------------------------
FP=$("$CA" init --dir "$T/ca") || { bad "ca init"; finish; }
"$CA" serve --dir "$T/ca" --listen 127.0.0.1:0 --rate 1000 --burst 1000 >"$T/ca.out" 2>>"$T/ca.log" &
PIDS+=($!)
wait_line "$T/ca.out" '^listening' || { bad "ca start" "$(cat "$T/ca.log")"; finish; }
CA_ADDR=$(awk '/^listening/{print $2}' "$T/ca.out")
for u in super1 super2 super3 super4 super5 alice bob; do
    pl "$u" keygen >/dev/null && pl "$u" register "$u" --ca "$CA_ADDR" --ca-key "$FP" >/dev/null ||
        { bad "register $u"; finish; }
done
: >"$T/supernodes"
for i in $(seq 1 $N_SN); do echo "$(key_of "super$i") $NET.$i:$PORT" >>"$T/supernodes"; done

# Everything on the wire between our processes, for the plaintext scan.
CAPTURE=0
if command -v tcpdump >/dev/null; then
    tcpdump -i lo -U -s 0 -w "$T/wire.pcap" "net $NET.0/24" >/dev/null 2>"$T/tcpdump.log" &
    TCPDUMP=$!
    PIDS+=($TCPDUMP)
    wait_line "$T/tcpdump.log" 'listening on' 60 && CAPTURE=1
fi

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
for i in $(seq 1 $N_SN); do
    start_daemon "super$i" --role supernode --listen "$NET.$i:$PORT" --bootstrap-file "$T/supernodes" || finish
done
sleep 1.5
# A user: bootstraps from the supernodes in the order given (alive first).
start_user() { # USER ADDR-LAST-OCTET [SUPERNODES TO PUT LAST...]
    local u=$1 a=$2
    shift 2
    : >"$T/$u.boot"
    for i in $(seq 1 $N_SN); do
        case " $* " in *" super$i "*) ;; *) sed -n "${i}p" "$T/supernodes" >>"$T/$u.boot" ;; esac
    done
    for s in "$@"; do sed -n "${s#super}p" "$T/supernodes" >>"$T/$u.boot"; done
    local before
    before=$(grep -c 'record published on' "$T/$u.log" 2>/dev/null)
    start_daemon "$u" --listen "$NET.$a:0" --bootstrap-file "$T/$u.boot" || return 1
    for _ in $(seq 100); do
        [ "$(grep -c 'record published on' "$T/$u.log")" -gt "${before:-0}" ] && return 0
        sleep 0.05
    done
    bad "$u attaches and publishes" "$(tail -5 "$T/$u.log")"
    return 1
}
stop_user() { # USER
    pl "$1" stop >/dev/null
    wait "${PID_OF[$1]}" 2>/dev/null
}
start_user alice 11 || finish
start_user bob 12 || finish
ok "a CA, 5 supernodes, alice and bob are up"

# ---- chat both ways while online -------------------------------------------------------------
pl bob --json chat follow alice >"$T/bob.follow" 2>&1 &
FOLLOW=$!
PIDS+=($FOLLOW)
wait_line "$T/bob.follow" '"following"' 40
pl alice chat follow --keep-unread >"$T/alice.follow" 2>&1 &
FOLLOW2=$!
PIDS+=($FOLLOW2)
wait_line "$T/alice.follow" '^following every conversation' 40
out=$(pl alice chat send bob "hello bob, MARKER-ONLINE-1")
expect "alice's first message goes directly (bob is online)" '^sent to bob \(#1, directly\)$' "$out"
for i in 2 3 4 5; do pl alice chat send bob "message $i MARKER-ONLINE-$i" >/dev/null || bad "send $i"; done
for i in 1 2 3; do pl bob chat send alice "reply $i MARKER-REPLY-$i" >/dev/null || bad "reply $i"; done
wait_for 50 '(delivered.*){5}' hist alice bob
hist=$(pl bob --json chat history alice)
seqs=$(printf '%s' "$hist" | grep -o '"dir":"in","seq":[0-9]*' | grep -o '[0-9]*$' | tr '\n' ' ')
expect "bob has alice's 5 messages once each, in order" '^1 2 3 4 5 $' "$seqs"
texts=$(printf '%s' "$hist" | grep -o 'MARKER-ONLINE-[0-9]' | tr '\n' ' ')
expect "with the texts as sent" '^MARKER-ONLINE-1 MARKER-ONLINE-2 MARKER-ONLINE-3 MARKER-ONLINE-4 MARKER-ONLINE-5 $' "$texts"
n=$(printf '%s' "$hist" | grep -o '"dir":"in"[^}]*"via":"direct"' | wc -l)
[ "$n" -eq 5 ] && ok "and they came directly, not through the mailbox" || bad "they came directly" "$hist"
n=$(grep -c '"event":"message"' "$T/bob.follow")
[ "$n" -eq 5 ] && ok "bob's follower saw 5 messages" || bad "bob's follower saw 5 messages" "saw $n: $(cat "$T/bob.follow")"
expect "followed in order" '^1 2 3 4 5 $' "$(grep '"event":"message"' "$T/bob.follow" | grep -o '"seq":[0-9]*' | grep -o '[0-9]*$' | tr '\n' ' ')"
out=$(pl alice chat list)
expect "alice's conversation list: bob, 3 unread, his last message" '^bob +3 unread .*reply 3 MARKER-REPLY-3$' "$out"
out=$(pl alice chat history bob)
expect "alice's history marks her messages delivered" '(\[(delivered|read)\].*){5}' "$(printf '%s' "$out" | tr '\n' ' ')"
expect "and shows bob's replies as new the first time" '(bob: reply [123] MARKER-REPLY-[123]  \[new\].*){3}' "$(printf '%s' "$out" | tr '\n' ' ')"
expect "reading them clears the unread count" '^bob +0 unread' "$(pl alice chat list)"
# Bob's follower showed him alice's messages: read receipts went back.
if wait_for 30 '(\[read\].*){5}' hist alice bob; then ok "bob's follower marked alice's messages read: alice sees [read]"
else bad "alice sees her messages read" "$(pl alice chat history bob)"; fi
if wait_for 30 '(\[read\].*){3}' hist bob alice; then ok "alice reading bob's replies sends him read receipts"
else bad "bob sees his replies read" "$(pl bob chat history alice)"; fi
kill "$FOLLOW" "$FOLLOW2" 2>/dev/null
wait "$FOLLOW" "$FOLLOW2" 2>/dev/null
f=$(cat "$T/alice.follow")
n=0
for p in 'to bob: hello bob, MARKER-ONLINE-1$' '^  -- #5 delivered to bob$' ' bob: reply 3 MARKER-REPLY-3$' '^  -- bob read up to #5$'; do
    printf '%s\n' "$f" | grep -qE -- "$p" && n=$((n + 1))
done
[ $n -eq 4 ] && ok "alice's follower (for people) shows what she sent, the receipts, and bob's replies" ||
    bad "alice's follower shows lines and receipts" "$f"
pl alice chat send bob "$(head -c 641 /dev/zero | tr '\0' x)" >/dev/null 2>"$T/err"
rc=$?
[ $rc -eq 2 ] && ok "a text over 640 bytes is refused (exit 2)" || bad "a text over 640 bytes is refused (exit 2)" "exit $rc"
expect "in one line" '^parley: chat: the text is 641 bytes; a chat message holds at most 640$' "$(cat "$T/err")"
pl alice chat send nobody-here "hi" >/dev/null 2>"$T/err"
rc=$?
[ $rc -eq 13 ] && ok "a message to an unknown user is refused (exit 13)" || bad "unknown user: exit 13" "exit $rc"
expect "in one line" "^parley: chat: no user 'nobody-here' in the directory$" "$(cat "$T/err")"
"$PL" --home "$T/nobody" chat list >/dev/null 2>&1
[ $? -eq 12 ] && ok "no daemon: exit 12" || bad "no daemon: exit 12"

# ---- history and numbering survive a restart ------------------------------------------------------
before=$(pl bob --json chat history alice)
stop_user bob
start_user bob 12 || finish
after=$(pl bob --json chat history alice)
[ "$before" = "$after" ] && ok "bob's history is the same after his daemon restarts" || bad "history survives a restart" "$before" "$after"
pl alice chat send bob "after the restart MARKER-ONLINE-6" >/dev/null
pl bob chat send alice "me too MARKER-REPLY-4" >/dev/null
wait_for 50 'MARKER-ONLINE-6' pl bob chat history alice >/dev/null
hist=$(pl bob --json chat history alice)
expect "the numbering goes on: alice's next is #6 and bob takes it in order" '"dir":"in","seq":6,"text":"after the restart MARKER-ONLINE-6"' "$hist"
[ "$(printf '%s' "$hist" | json_count '"dir":"in"')" -eq 6 ] && ok "and nothing came twice" || bad "no duplicates after restart" "$hist"
wait_for 50 'me too MARKER-REPLY-4  \[(delivered|read)\]' hist bob alice ||
    bad "bob's #4 after his restart is delivered" "$(pl bob chat history alice)"
expect "bob's numbering goes on too (#4)" '"dir":"in","seq":4,"text":"me too MARKER-REPLY-4"' "$(pl alice --json chat history bob)"

# ---- offline chat through the mailbox, one replica killed ----------------------------------------------
mbox_held() { pl "$1" --json mailbox held "$2" 2>/dev/null; }
holders_of() { # NAME -> supernodes holding messages for NAME
    for i in $(seq 1 $N_SN); do
        [ -n "${DEAD[super$i]:-}" ] && continue
        mbox_held "super$i" "$1" | grep -q '"messages":[1-9]' && echo "super$i"
    done
}
declare -A DEAD
stop_user bob
alice_sn=$(pl alice --json status | sed -n 's/.*"supernode":{[^}]*"name":"\([^"]*\)".*/\1/p')
for i in 1 2 3; do
    out=$(pl alice chat send bob "offline $i MARKER-OFFLINE-$i")
    [ $i -eq 1 ] && expect "with bob offline, alice's message goes into his mailbox" '^sent to bob \(#7, into the mailbox\)$' "$out"
done
if wait_for 50 '(offline [123] MARKER-OFFLINE-[123]  \[stored\].*){3}' hist alice bob; then
    ok "alice's 3 messages are stored (a replica took each)"
else bad "alice's messages are stored" "$(pl alice chat history bob)"; fi
mapfile -t H < <(holders_of bob)
[ "${#H[@]}" -eq 3 ] && ok "bob's mailbox is on 3 supernodes (${H[*]})" || bad "bob's mailbox is on 3 supernodes" "${H[*]}"
for i in $(seq 1 $N_SN); do pl "super$i" mailbox dump "$T/dump-chat-super$i" >/dev/null; done
victim=""
for h in "${H[@]}"; do [ "$h" != "$alice_sn" ] && victim=$h && break; done
{ kill -9 "${PID_OF[$victim]}"; wait "${PID_OF[$victim]}"; } 2>/dev/null
DEAD[$victim]=1
echo "     killed $victim (kill -9), a replica of bob's mailbox; alice is on $alice_sn"
start_user bob 12 "$victim" || finish
if wait_for 80 'MARKER-OFFLINE-3' pl bob chat history alice --limit 3; then ok "bob logs in and gets the messages"
else bad "bob gets his offline messages" "$(tail -5 "$T/bob.log")"; fi
sleep 0.5
hist=$(pl bob --json chat history alice)
expect "all 3, in order (#7, #8, #9), from the mailbox" \
    '"seq":7,"text":"offline 1 MARKER-OFFLINE-1".*"via":"mailbox".*"seq":8,"text":"offline 2 MARKER-OFFLINE-2".*"seq":9,"text":"offline 3 MARKER-OFFLINE-3"' "$hist"
for i in 1 2 3; do
    c=$(printf '%s' "$hist" | json_count "MARKER-OFFLINE-$i")
    [ "$c" -eq 1 ] || bad "offline message $i exactly once" "$c copies"
done
[ "$(printf '%s' "$hist" | json_count '"dir":"in"')" -eq 9 ] && ok "exactly once each (9 from alice in all)" || bad "exactly once" "$hist"
if wait_for 80 '(MARKER-OFFLINE-[123]  \[(delivered|read)\].*){3}' hist alice bob; then
    ok "alice sees the 3 delivered (receipts from bob)"
else bad "alice sees the 3 delivered" "$(pl alice chat history bob)"; fi
sleep 1
left=$(for i in $(seq 1 $N_SN); do [ -z "${DEAD[super$i]:-}" ] && mbox_held "super$i" bob | grep -o '"messages":[0-9]*'; done | sort -u | tr '\n' ' ')
expect "bob's mailbox is empty on every live supernode (taken, then deleted)" '^"messages":0 $' "$left"

# ---- voicemail for an offline user, one replica killed ---------------------------------------------------
SPEECH="$B/speech"
tests/media/make_speech.sh "$SPEECH" >/dev/null 2>&1 || { bad "make_speech.sh"; finish; }
WAV="$SPEECH/talker2.wav"
stop_user bob
out=$(pl alice voicemail leave bob --from "$WAV")
# The first killed supernode may still be in the ring (gossip takes some
# seconds to declare it dead): then two of the three replicas answer.
expect "alice leaves bob a voicemail: stored on bob's replicas" '^voicemail for bob: [0-9.]+ s \([0-9]+ bytes\), stored on [23] of 3 replicas \(id [0-9a-f]{8}\)$' "$out"
mapfile -t H < <(holders_of bob)
[ "${#H[@]}" -ge 2 ] && ok "the voicemail is on bob's replicas (${H[*]})" || bad "the voicemail is on bob's replicas" "${H[*]}"
for i in $(seq 1 $N_SN); do [ -z "${DEAD[super$i]:-}" ] && pl "super$i" mailbox dump "$T/dump-vm-super$i" >/dev/null; done
victim=""
for h in "${H[@]}"; do [ "$h" != "$alice_sn" ] && victim=$h && break; done
{ kill -9 "${PID_OF[$victim]}"; wait "${PID_OF[$victim]}"; } 2>/dev/null
DEAD[$victim]=1
echo "     killed $victim (kill -9), holding the voicemail"
dead_list=$(for s in "${!DEAD[@]}"; do echo "$s"; done)
start_user bob 12 $dead_list || finish
if wait_line "$T/bob.log" 'voicemail from alice (.* s, left .*) waiting: parley voicemail play' 200; then
    ok "bob is told at login: $(grep -o 'voicemail from alice.*' "$T/bob.log" | tail -1)"
else bad "bob is told of the voicemail at login" "$(tail -5 "$T/bob.log")"; fi
expect "parley status shows it" 'voicemail +1 waiting \(1 new\)' "$(pl bob status)"
list=$(pl bob voicemail list)
expect "voicemail list shows it, new" '^[0-9a-f]{8}  alice .* +[0-9.]+ s  \[new\]$' "$list"
ID=$(printf '%s' "$list" | awk '{print $1}')
out=$(pl bob voicemail play "$ID" --to "$T/played.wav")
expect "bob plays it to a WAV" "^played voicemail from alice \([0-9.]+ s\) to $T/played.wav$" "$out"
q=$("$Q" "$WAV" "$T/played.wav" --min-stoi 0.8 --max-delay-ms 50 --min-correlation 0.8 2>&1)
rc=$?
[ $rc -eq 0 ] && ok "the played audio matches what alice left: $(printf '%s' "$q" | grep -iE 'stoi|correlation|delay' | tr -s ' ' | tr '\n' ';')" ||
    bad "the played audio matches what alice left (parley-quality)" "$q"
expect "and is marked heard" '^[0-9a-f]{8}  alice .* s$' "$(pl bob voicemail list)"
# Still in the store (until bob deletes it), and not fetched again by a restarted daemon.
mapfile -t H2 < <(holders_of bob)
[ "${#H2[@]}" -ge 2 ] && ok "the store keeps it until bob deletes it (${H2[*]})" || bad "the store keeps the voicemail" "${H2[*]}"
stop_user bob
# What bob decrypted, for the plaintext scan's needles (his copy is erased
# when he deletes it).
cp "$T/bob/messages.db" "$T/vm-copy.db"
start_user bob 12 $dead_list || finish
sleep 1
n=$(grep -c 'voicemail from alice' "$T/bob.log")
[ "$n" -eq 1 ] && ok "restarted, bob's daemon keeps it and does not fetch it again" || bad "not fetched again" "$n announcements"
expect "and says so at start" 'voicemail: 1 waiting \(0 new\)' "$(tail -20 "$T/bob.log")"
out=$(pl bob voicemail delete "$ID")
expect "bob deletes it; the store confirms" '^deleted voicemail [0-9a-f]{8} \([0-9] of [0-9] replicas keep the delete\)$' "$out"
sleep 0.5
left=$(for i in $(seq 1 $N_SN); do [ -z "${DEAD[super$i]:-}" ] && mbox_held "super$i" bob | grep -o '"messages":[0-9]*'; done | sort -u | tr '\n' ' ')
expect "the delete reached every replica: no supernode holds it" '^"messages":0 $' "$left"
tombs=$(for h in "${H2[@]}"; do mbox_held "$h" bob | grep -o '"tombstones":[0-9]*'; done | tr '\n' ' ')
expect "every replica that held it keeps bob's signed delete instead (${H2[*]})" '^("tombstones":[1-9][0-9]* )+$' "$tombs"
expect "voicemail list is empty" '^no voicemail$' "$(pl bob voicemail list)"
pl bob voicemail play "$ID" --to "$T/again.wav" >/dev/null 2>&1
[ $? -ne 0 ] && ok "a deleted voicemail does not play" || bad "a deleted voicemail does not play"

# ---- three minutes, and no more ---------------------------------------------------------------------------
S=("$SPEECH"/talker{1,2,3,4,5}.wav)
sox "${S[@]}" "${S[@]}" "${S[@]}" "${S[@]}" "$T/long.wav" trim 0 180.0 2>/dev/null &&
    sox "${S[@]}" "${S[@]}" "${S[@]}" "${S[@]}" "$T/toolong.wav" trim 0 181.0 2>/dev/null || bad "sox makes long speech"
pl alice voicemail leave bob --from "$T/toolong.wav" >/dev/null 2>"$T/err"
rc=$?
[ $rc -eq 2 ] && ok "a voicemail over three minutes is refused (exit 2)" || bad "over three minutes is refused (exit 2)" "exit $rc"
expect "in one line" '^parley: voicemail: .*toolong.wav is 181.0 s long; a voicemail holds at most 3 minutes$' "$(cat "$T/err")"
t0=$(date +%s%N)
out=$(pl alice voicemail leave bob --from "$T/long.wav")
t1=$(date +%s%N)
expect "three minutes are taken" '^voicemail for bob: 180.0 s \([0-9]+ bytes\), stored on [23] of 3 replicas' "$out"
echo "     a 3-minute voicemail: encoded, sealed and stored in $(((t1 - t0) / 1000000)) ms ($(printf '%s' "$out" | grep -o '[0-9]* bytes'))"
if wait_line "$T/bob.log" 'voicemail from alice (180.0 s' 200; then
    t2=$(date +%s%N)
    ok "bob, online, is told at once ($(((t2 - t1) / 1000000)) ms later)"
else bad "bob gets the 3-minute voicemail" "$(tail -3 "$T/bob.log")"; fi

# ---- what supernodes hold and send: no plaintext ---------------------------------------------------------
[ "$CAPTURE" = 1 ] && { sleep 0.5; kill "$TCPDUMP"; wait "$TCPDUMP" 2>/dev/null; }
TEXTS=(--text MARKER-ONLINE --text MARKER-REPLY --text MARKER-OFFLINE)
# Controls: the scanner finds the texts in bob's history, and the voice in
# the copy of his database that held the voicemail.
"$SCAN" "${TEXTS[@]}" "$T/bob/messages.db" "$T/bob/messages.db-wal" >"$T/scan-control" 2>&1
[ $? -eq 1 ] && ok "control: the scanner finds the chat texts in bob's own history" || bad "scanner control (text)" "$(cat "$T/scan-control")"
"$SCAN" --voicemail-db "$T/vm-copy.db" "$T/vm-copy.db" >"$T/scan-control" 2>&1
[ $? -eq 1 ] && ok "control: and the voice in bob's copy ($(head -1 "$T/scan-control" | cut -d' ' -f4-) packets)" ||
    bad "scanner control (voice)" "$(cat "$T/scan-control")"
dumps=("$T"/dump-*)
sizes=$(cat "${dumps[@]}" | wc -c)
"$SCAN" "${TEXTS[@]}" --voicemail-db "$T/vm-copy.db" "${dumps[@]}" >"$T/scan-dumps" 2>&1
rc=$?
[ $rc -eq 0 ] && ok "no chat text and no voice in what the supernodes stored (${#dumps[@]} dumps, $sizes bytes)" ||
    bad "no plaintext in the supernodes' stores" "$(cat "$T/scan-dumps")"
grep -q 'bob' "${dumps[@]}" && ok "(the dumps are real: they hold bob's box, by name)" || bad "the dumps hold bob's box"
if [ "$CAPTURE" = 1 ]; then
    "$SCAN" "${TEXTS[@]}" --voicemail-db "$T/vm-copy.db" "$T/wire.pcap" >"$T/scan-wire" 2>&1
    rc=$?
    [ $rc -eq 0 ] && ok "no chat text and no voice on the wire ($(wc -c <"$T/wire.pcap") bytes captured on lo)" ||
        bad "no plaintext on the wire" "$(cat "$T/scan-wire")"
else
    echo "     (tcpdump unavailable: the wire was not captured)"
fi
finish
