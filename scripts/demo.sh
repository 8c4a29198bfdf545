#!/usr/bin/env bash
# The main job on defaults: a local Parley network on loopback.
#
# It starts a signing authority, makes two users (alice and bob) who
# register their names with it through the CLI, has bob answer secure
# sessions, and has alice open one to bob: a Noise IK handshake between
# two CA-certified identities over real UDP, then an encrypted message and
# its echo. (Voice calls come with the calls milestone; this is the spine
# they run on.) Everything lives in a temporary directory removed at the end.
set -eu
cd "$(dirname "$0")/.."
scripts/setup.sh
make -s -j2 build/release/parley build/release/parley-ca
B=build/release
T=$(mktemp -d /tmp/parley-demo.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$T"; }
trap cleanup EXIT

wait_for() { # FILE PATTERN: waits until FILE has a line matching PATTERN
    for _ in $(seq 200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
    echo "demo: timed out waiting for '$2' in $1" >&2; cat "$1" >&2; return 1
}

echo "== signing authority"
FP=$($B/parley-ca init --dir "$T/ca")
echo "CA fingerprint (what nodes pin): $FP"
$B/parley-ca serve --dir "$T/ca" --listen 127.0.0.1:0 >"$T/ca.out" 2>"$T/ca.log" &
PIDS+=($!)
wait_for "$T/ca.out" '^listening'
CA_ADDR=$(awk '/^listening/{print $2}' "$T/ca.out")
echo "CA serving on $CA_ADDR (UDP and TCP)"

for u in alice bob; do
    echo "== $u"
    $B/parley --home "$T/$u" keygen
    $B/parley --home "$T/$u" register "$u" --ca "$CA_ADDR" --ca-key "$FP"
done
$B/parley --home "$T/bob" show

echo "== bob answers secure sessions"
$B/parley --home "$T/bob" listen --listen 127.0.0.1:0 >"$T/bob.out" 2>&1 &
PIDS+=($!)
wait_for "$T/bob.out" '^listening'
BOB_ADDR=$(awk '/^listening/{print $3}' "$T/bob.out")
BOB_KEY=$($B/parley --home "$T/bob" --json show | sed -n 's/.*"fingerprint":"\([0-9a-f]*\)".*/\1/p')

echo "== alice opens a secure session to bob"
$B/parley --home "$T/alice" ping "$BOB_ADDR" --peer-key "$BOB_KEY" "hello bob, this is alice"
sleep 0.2
echo "== what bob saw"
cat "$T/bob.out"
echo "== the authority's accounts"
$B/parley-ca list --dir "$T/ca"
echo "demo: done"
