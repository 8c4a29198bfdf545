#!/usr/bin/env bash
# session.test.sh - secure sessions between registered users, as real
# processes on loopback: a CA, users registered through the CLI, one user
# answering with `parley listen`, others calling with `parley ping`.
# Shown: a session between two certified users carries an encrypted
# message and its echo; the wrong key, an identity "minted" by another CA
# and a revoked user all get no session.
set -u
B=${PARLEY_BUILD:-build/release}
CA="$B/parley-ca"
PL="$B/parley"
T=$(mktemp -d /tmp/pl-session-test.XXXXXX)
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
run() { # NAME EXPECTED_EXIT CMD...
    local name=$1 want=$2
    shift 2
    "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    OUT=$(cat "$T/out")
    ERR=$(cat "$T/err")
    if [ "$rc" -eq "$want" ]; then ok "$name"; else bad "$name" "exit $rc, wanted $want" "stdout: $OUT" "stderr: $ERR"; fi
}
expect() { # NAME PATTERN TEXT
    if printf '%s' "$3" | grep -qE -- "$2"; then ok "$1"; else bad "$1" "no /$2/ in: $3"; fi
}
wait_line() { # FILE PATTERN
    for _ in $(seq 200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
    return 1
}
finish() { echo "PL-TEST-SUMMARY $passed $failed"; exit 0; }

start_ca() { # DIR OUTFILE -> sets CA_ADDR
    "$CA" serve --dir "$1" --listen 127.0.0.1:0 >"$2" 2>>"$T/ca.log" &
    PIDS+=($!)
    wait_line "$2" '^listening' || return 1
    CA_ADDR=$(awk '/^listening/{print $2}' "$2")
}
start_listener() { # USER -> sets LISTEN_ADDR, LISTEN_PID
    "$PL" --home "$T/$1" --json listen --listen 127.0.0.1:0 >"$T/$1.listen" 2>&1 &
    LISTEN_PID=$!
    PIDS+=($LISTEN_PID)
    wait_line "$T/$1.listen" '"listening"' || return 1
    LISTEN_ADDR=$(sed -n 's/.*"addr":"\([^"]*\)".*/\1/p' "$T/$1.listen" | head -1)
}
key_of() { "$PL" --home "$T/$1" --json show | sed -n 's/.*"fingerprint":"\([0-9a-f]*\)".*/\1/p'; }

FP=$("$CA" init --dir "$T/ca") || { bad "ca init"; finish; }
start_ca "$T/ca" "$T/ca.out" || { bad "ca start" "$(cat "$T/ca.log")"; finish; }
for u in alice bob mallory; do
    "$PL" --home "$T/$u" keygen >/dev/null
    run "register $u" 0 "$PL" --home "$T/$u" register "$u" --ca "$CA_ADDR" --ca-key "$FP"
done
# An identity "minted elsewhere": a second authority with a user named bob2
# whose CLI pins that other authority.
ROGUE_FP=$("$CA" init --dir "$T/rogue")
start_ca "$T/rogue" "$T/rogue.out" || { bad "rogue ca start"; finish; }
CA_ADDR_R=$CA_ADDR
CA_ADDR=$(awk '/^listening/{print $2}' "$T/ca.out")
"$PL" --home "$T/rogue-user" keygen >/dev/null
run "register with the other authority" 0 "$PL" --home "$T/rogue-user" register bob2 --ca "$CA_ADDR_R" --ca-key "$ROGUE_FP"

start_listener bob || { bad "bob listens" "$(cat "$T/bob.listen")"; finish; }
BOB_KEY=$(key_of bob)
MALLORY_KEY=$(key_of mallory)

run "alice reaches bob" 0 "$PL" --home "$T/alice" --json ping "$LISTEN_ADDR" --peer-key "$BOB_KEY" "hello bob"
expect "the session is with the certified bob" '"peer":"bob"' "$OUT"
expect "the echo came back through the session" '"reply":"hello bob"' "$OUT"
sleep 0.2
expect "bob saw alice, by her certified name" '"event":"session","peer":"alice"' "$(cat "$T/bob.listen")"
expect "bob got the message" '"event":"message","peer":"alice","text":"hello bob"' "$(cat "$T/bob.listen")"

run "a second user reaches bob too" 0 "$PL" --home "$T/mallory" --json ping "$LISTEN_ADDR" --peer-key "$BOB_KEY" "hi"
expect "bob answered mallory as bob" '"peer":"bob"' "$OUT"

run "calling bob's address with someone else's key gets no session" 5 \
    "$PL" --home "$T/alice" ping "$LISTEN_ADDR" --peer-key "$MALLORY_KEY" --timeout 2
expect "and says so in one line" '^parley: ping: no secure session with 127\.0\.0\.1:[0-9]+ \(no answer in 2\.0 s\)$' "$ERR"

run "an identity minted by another authority gets no session" 5 \
    "$PL" --home "$T/rogue-user" ping "$LISTEN_ADDR" --peer-key "$BOB_KEY" --timeout 2
expect "bob never reported a session with it" '^0$' "$(grep -c '"peer":"bob2"' "$T/bob.listen")"

run "the operator revokes alice" 0 "$CA" revoke --dir "$T/ca" alice
run "bob fetches the revocation list" 0 "$PL" --home "$T/bob" crl
kill "$LISTEN_PID" 2>/dev/null; wait "$LISTEN_PID" 2>/dev/null
start_listener bob || { bad "bob listens again"; finish; }
run "revoked alice gets no session" 5 "$PL" --home "$T/alice" ping "$LISTEN_ADDR" --peer-key "$BOB_KEY" --timeout 2
run "mallory still does" 0 "$PL" --home "$T/mallory" ping "$LISTEN_ADDR" --peer-key "$BOB_KEY" "still here"
finish
