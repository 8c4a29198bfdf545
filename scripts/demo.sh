#!/usr/bin/env bash
# The main job on defaults: a local Parley network on loopback.
#
# It starts a signing authority and three supernodes (parleyd --role
# supernode, each at its own 127.0.0.x address), registers alice and bob
# through the CLI, starts their nodes (parleyd), and shows what the network
# does: both attach to supernodes after proving their keys, publish signed
# records on three replicas, find each other by name, follow each other's
# presence, and survive the loss of a supernode. Voice calls come with the
# calls milestone; this is the overlay they run on. Everything lives in a
# temporary directory removed at the end.
set -eu
cd "$(dirname "$0")/.."
scripts/setup.sh
make -s -j2 build/release/parley build/release/parley-ca build/release/parleyd
B=build/release
T=$(mktemp -d /tmp/parley-demo.XXXXXX)
PORT=${PARLEY_DEMO_PORT:-7400}
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$T"; }
trap cleanup EXIT

wait_for() { # FILE PATTERN: waits until FILE has a line matching PATTERN
    for _ in $(seq 300); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
    echo "demo: timed out waiting for '$2' in $1" >&2; cat "$1" >&2; return 1
}
say() { printf '\n== %s\n' "$*"; }
key_of() { $B/parley --home "$T/$1" --json show | sed -n 's/.*"fingerprint":"\([0-9a-f]*\)".*/\1/p'; }

say "signing authority"
FP=$($B/parley-ca init --dir "$T/ca")
echo "CA fingerprint (what nodes pin): $FP"
$B/parley-ca serve --dir "$T/ca" --listen 127.0.0.1:0 >"$T/ca.out" 2>"$T/ca.log" &
PIDS+=($!)
wait_for "$T/ca.out" '^listening'
CA_ADDR=$(awk '/^listening/{print $2}' "$T/ca.out")
echo "CA serving on $CA_ADDR (UDP and TCP)"

say "users register their names (keys proven to the authority)"
for u in super1 super2 super3 alice bob; do
    $B/parley --home "$T/$u" keygen >/dev/null
    $B/parley --home "$T/$u" register "$u" --ca "$CA_ADDR" --ca-key "$FP"
done

say "three supernodes"
for i in 1 2 3; do echo "$(key_of super$i) 127.0.0.$((i + 1)):$PORT"; done >"$T/supernodes"
cat "$T/supernodes"
declare -A PID_OF
for i in 1 2 3; do
    $B/parleyd --home "$T/super$i" --role supernode --listen "127.0.0.$((i + 1)):$PORT" \
        --bootstrap-file "$T/supernodes" >"$T/super$i.out" 2>"$T/super$i.log" &
    PID_OF[super$i]=$!
    PIDS+=($!)
    wait_for "$T/super$i.out" '^listening'
done

say "alice's and bob's nodes attach and publish their records"
$B/parleyd --home "$T/alice" --listen 127.0.1.1:0 --bootstrap-file "$T/supernodes" >"$T/alice.out" 2>"$T/alice.log" &
PIDS+=($!)
{ tail -n +2 "$T/supernodes"; head -n 1 "$T/supernodes"; } >"$T/bob.boot"
$B/parleyd --home "$T/bob" --listen 127.0.1.2:0 --bootstrap-file "$T/bob.boot" >"$T/bob.out" 2>"$T/bob.log" &
PIDS+=($!)
wait_for "$T/alice.log" 'record published'
wait_for "$T/bob.log" 'record published'
sed 's/^/  alice: /' "$T/alice.log"
$B/parley --home "$T/alice" status

say "alice looks bob up by name (the record is verified end to end)"
$B/parley --home "$T/alice" lookup bob

say "alice adds bob as a contact; bob goes away"
$B/parley --home "$T/alice" contacts add bob
sleep 0.5
$B/parley --home "$T/bob" presence away "making tea"
sleep 0.5
$B/parley --home "$T/alice" contacts list

say "alice chats with bob: end to end encrypted, straight to him while he is online"
$B/parley --home "$T/alice" chat send bob "Tea at five?"
$B/parley --home "$T/bob" chat send alice "Yes, see you then."
sleep 0.5
$B/parley --home "$T/bob" chat history alice
$B/parley --home "$T/alice" chat history bob

say "alice leaves bob a voicemail (sealed for his key, stored on his three replicas)"
espeak-ng -w "$T/hello.wav" "Hello Bob, this is Alice. The tea is ready." 2>/dev/null
$B/parley --home "$T/alice" voicemail leave bob --from "$T/hello.wav"
sleep 0.5
grep 'voicemail from' "$T/bob.log" | sed 's/^/  bob: /'
$B/parley --home "$T/bob" voicemail list
VM=$($B/parley --home "$T/bob" voicemail list | awk 'NR == 1 {print $1}')
$B/parley --home "$T/bob" voicemail play "$VM" --to "$T/heard.wav"
$B/parley --home "$T/bob" voicemail delete "$VM"

say "bob's supernode dies (kill -9); bob re-attaches to his standby"
BOB_SN=$($B/parley --home "$T/bob" --json status | sed -n 's/.*"supernode":{[^}]*"name":"\([a-z0-9]*\)".*/\1/p')
echo "bob is on $BOB_SN; killing it"
{ kill -9 "${PID_OF[$BOB_SN]}"; wait "${PID_OF[$BOB_SN]}"; } 2>/dev/null
t0=$(date +%s)
for _ in $(seq 90); do
    now_sn=$($B/parley --home "$T/bob" --json status | sed -n 's/.*"supernode":{[^}]*"name":"\([a-z0-9]*\)".*/\1/p')
    [ -n "$now_sn" ] && [ "$now_sn" != "$BOB_SN" ] && grep -q 'attached to supernode' <(tail -1 "$T/bob.log") && break
    sleep 1
done
echo "bob re-attached to $now_sn after $(($(date +%s) - t0)) s (the keepalive period is 30 s)"
$B/parley --home "$T/alice" lookup bob | head -3

say "the authority's accounts"
$B/parley-ca list --dir "$T/ca"
echo
echo "demo: done"
