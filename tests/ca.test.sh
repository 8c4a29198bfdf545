#!/usr/bin/env bash
# ca.test.sh - the signing authority and the CLI as real processes on loopback.
#
# A real `parley-ca serve` on 127.0.0.1 (a port the kernel picks), users made
# and registered with the real `parley` CLI: two registrations, a taken name,
# a bad name, a reserved name, a wrong passphrase, an unreachable CA, a
# TCP-only CA, renew/revoke/CRL, and kill -9 of the CA right after
# acknowledged registrations followed by a restart that still has them all.
set -u
B=${PARLEY_BUILD:-build/release}
CA="$B/parley-ca"
PL="$B/parley"
T=$(mktemp -d /tmp/pl-ca-test.XXXXXX)
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

# run NAME EXPECTED_EXIT CMD...: runs CMD, keeps stdout in $OUT, stderr in $ERR.
run() {
    local name=$1 want=$2
    shift 2
    "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    OUT=$(cat "$T/out")
    ERR=$(cat "$T/err")
    if [ "$rc" -eq "$want" ]; then ok "$name"; else bad "$name" "exit $rc, wanted $want" "stdout: $OUT" "stderr: $ERR"; fi
}
expect() { # NAME CONDITION-TEXT: passes when grep finds the pattern in the text
    local name=$1 pattern=$2 text=$3
    if printf '%s' "$text" | grep -qE -- "$pattern"; then ok "$name"; else bad "$name" "no /$pattern/ in: $text"; fi
}

# start_ca DIR PORT [extra]: starts a CA and sets CA_PID, ADDR.
start_ca() {
    local dir=$1 port=$2
    shift 2
    "$CA" serve --dir "$dir" --listen "127.0.0.1:$port" --rate 200 --burst 200 "$@" >"$T/ca.out" 2>>"$T/ca.log" &
    CA_PID=$!
    PIDS+=("$CA_PID")
    for _ in $(seq 100); do
        ADDR=$(awk '/^listening/{print $2}' "$T/ca.out" 2>/dev/null)
        [ -n "$ADDR" ] && return 0
        kill -0 "$CA_PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "CA did not start:"; cat "$T/ca.log"
    return 1
}

# ---- the authority ---------------------------------------------------------------
run "ca init prints the fingerprint" 0 "$CA" init --dir "$T/ca"
FP=$OUT
expect "fingerprint is 64 hex digits" '^[0-9a-f]{64}$' "$FP"
expect "CA directory is private" '^700$' "$(stat -c %a "$T/ca")"
expect "CA key file is private" '^600$' "$(stat -c %a "$T/ca/ca.key")"
run "ca fingerprint agrees" 0 "$CA" fingerprint --dir "$T/ca"
expect "same fingerprint" "^$FP\$" "$OUT"
run "second init refuses to overwrite the key" 1 "$CA" init --dir "$T/ca"

start_ca "$T/ca" 0 || { echo "PL-TEST-SUMMARY $passed $((failed + 1))"; exit 1; }
PORT=${ADDR##*:}

# ---- users ------------------------------------------------------------------------------
run "keygen alice" 0 "$PL" --home "$T/alice" keygen
run "keygen bob (json)" 0 "$PL" --home "$T/bob" --json keygen
expect "keygen json has the fingerprint" '"fingerprint":"[0-9a-f]{64}"' "$OUT"
echo "correct horse" >"$T/pass"
echo "wrong horse" >"$T/wrong"
run "keygen carol with a passphrase" 0 "$PL" --home "$T/carol" --passphrase-file "$T/pass" keygen
run "keygen refuses to overwrite" 10 "$PL" --home "$T/alice" keygen

run "alice registers over UDP" 0 "$PL" --home "$T/alice" --json register Alice --ca "$ADDR" --ca-key "$FP"
expect "alice's certificate is for 'alice'" '"name":"alice"' "$OUT"
expect "alice used UDP" '"transport":"udp"' "$OUT"
run "bob registers" 0 "$PL" --home "$T/bob" register bob --ca "$ADDR" --ca-key "$FP"
expect "bob's line says registered" '^registered bob: serial [0-9]+' "$OUT"

run "a taken name is refused (any case)" 4 "$PL" --home "$T/carol" --passphrase-file "$T/pass" register ALICE --ca "$ADDR" --ca-key "$FP"
expect "taken: one clear line" "^parley: register: the name 'ALICE' is already taken\$" "$ERR"
run "a bad name is refused" 3 "$PL" --home "$T/carol" register "bad name" --ca "$ADDR" --ca-key "$FP"
expect "bad name: one clear line" "^parley: register: 'bad name' is not a valid name: " "$ERR"
run "a reserved name is refused" 3 "$PL" --home "$T/carol" register admin --ca "$ADDR" --ca-key "$FP"
expect "reserved: one clear line" "^parley: register: the name 'admin' is reserved\$" "$ERR"
run "a wrong passphrase is refused" 6 "$PL" --home "$T/carol" --passphrase-file "$T/wrong" register carol --ca "$ADDR" --ca-key "$FP"
expect "wrong passphrase: one clear line" "^parley: register: wrong passphrase for " "$ERR"
run "no passphrase for a sealed key" 6 "$PL" --home "$T/carol" register carol --ca "$ADDR" --ca-key "$FP"
run "a CA key that is not the pinned one is refused" 9 "$PL" --home "$T/alice" register alice --ca "$ADDR" --ca-key "$(printf '%064d' 0)"
PARLEY_PASSPHRASE="correct horse" run "carol registers (passphrase from the environment)" 0 "$PL" --home "$T/carol" register carol --ca "$ADDR" --ca-key "$FP"

run "an unreachable CA is reported" 5 "$PL" --home "$T/bob" register bobby --force --ca 127.0.0.1:1 --ca-key "$FP"
expect "unreachable: one clear line" "^parley: register: cannot reach the signing authority at 127.0.0.1:1" "$ERR"

run "show alice (json)" 0 "$PL" --home "$T/alice" --json show
expect "show: registered and valid" '"name":"alice".*"status":"valid"' "$OUT"
run "show alice (text)" 0 "$PL" --home "$T/alice" show
expect "show: issuer and validity" 'issuer +[0-9a-f]{32}' "$OUT"

# ---- renew, revoke, CRL -----------------------------------------------------------------------
OLD=$("$PL" --home "$T/alice" --json show | grep -oE '"serial":[0-9]+')
sleep 1.1 # a renewal in the same second as the issue returns that certificate
run "alice renews" 0 "$PL" --home "$T/alice" --json renew
NEW=$(printf '%s' "$OUT" | grep -oE '"serial":[0-9]+')
if [ -n "$NEW" ] && [ "$NEW" != "$OLD" ]; then ok "renewal has a new serial"; else bad "renewal has a new serial" "$OLD -> $NEW"; fi
run "bob revokes his account" 0 "$PL" --home "$T/bob" revoke
run "bob's CRL check says revoked" 11 "$PL" --home "$T/bob" crl
expect "crl line" 'this identity.s certificate: revoked' "$OUT"
run "alice's CRL check says not revoked" 0 "$PL" --home "$T/alice" --json crl
expect "crl json" '"own_status":"not revoked"' "$OUT"
run "bob cannot renew a revoked account" 7 "$PL" --home "$T/bob" renew
expect "revoked: one clear line" "^parley: renew: the account 'bob' has been revoked\$" "$ERR"
run "operator revokes carol while the CA serves" 0 "$CA" revoke --dir "$T/ca" carol
run "carol's CRL (over TCP) shows it" 11 "$PL" --home "$T/carol" --transport tcp crl
run "bob's show reports the revocation" 0 "$PL" --home "$T/bob" show
expect "show: revoked" 'status +certificate revoked' "$OUT"

# ---- kill -9 right after acknowledged registrations -------------------------------------------
for u in dave erin frank; do
    "$PL" --home "$T/$u" keygen >/dev/null
done
run "dave registers" 0 "$PL" --home "$T/dave" register dave --ca "$ADDR" --ca-key "$FP"
run "erin registers" 0 "$PL" --home "$T/erin" register erin --ca "$ADDR" --ca-key "$FP"
run "frank registers" 0 "$PL" --home "$T/frank" register frank --ca "$ADDR" --ca-key "$FP"
kill -9 "$CA_PID"
{ wait "$CA_PID"; } 2>/dev/null
run "list after kill -9" 0 "$CA" list --dir "$T/ca" --json
for u in alice bob carol dave erin frank; do
    expect "$u survived kill -9" "\"name\":\"$u\"" "$OUT"
done
expect "six accounts" '"count":6' "$OUT"
expect "bob is still revoked" '"name":"bob","serial":[0-9]+,"status":"revoked"' "$OUT"

start_ca "$T/ca" "$PORT" || bad "CA restarts on its port"
run "restarted CA: frank's retransmit gets his certificate back" 0 "$PL" --home "$T/frank" --json register frank --ca "$ADDR" --ca-key "$FP"
expect "same name" '"name":"frank"' "$OUT"
"$PL" --home "$T/gina" keygen >/dev/null
run "restarted CA: dave's name is still taken" 4 "$PL" --home "$T/gina" register Dave --ca "$ADDR" --ca-key "$FP"
run "restarted CA: gina registers" 0 "$PL" --home "$T/gina" register gina --ca "$ADDR" --ca-key "$FP"
expect "CA logged registrations" 'registered gina serial' "$(cat "$T/ca.log")"
kill "$CA_PID"
wait "$CA_PID" 2>/dev/null

# ---- a CA that serves TCP only: the client falls back -------------------------------------------
run "init a second CA" 0 "$CA" init --dir "$T/ca2"
FP2=$OUT
start_ca "$T/ca2" 0 --no-udp || bad "TCP-only CA starts"
"$PL" --home "$T/hank" keygen >/dev/null
run "UDP unreachable: register falls back to TCP" 0 "$PL" --home "$T/hank" --json register hank --ca "$ADDR" --ca-key "$FP2"
expect "hank used TCP" '"transport":"tcp"' "$OUT"
kill "$CA_PID"
wait "$CA_PID" 2>/dev/null

echo "PL-TEST-SUMMARY $passed $failed"
[ "$failed" -eq 0 ]
