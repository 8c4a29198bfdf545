#!/usr/bin/env bash
# overlay.test.sh - the overlay as real processes on loopback: a signing
# authority, 5 supernodes and 20 nodes (parleyd), each at its own 127.x
# address, driven with the parley CLI.
# Shown: every node finds every other by name; two supernodes killed with
# kill -9 cost their clients one re-attach and every record stays
# resolvable (the recovery time is printed); an identity from another
# authority and a revoked user cannot attach; contacts and presence work.
set -u
B=${PARLEY_BUILD:-build/release}
CA="$B/parley-ca"
PL="$B/parley"
PD="$B/parleyd"
T=$(mktemp -d /tmp/pl-overlay-test.XXXXXX)
PIDS=()
passed=0
failed=0
N_SN=5
N_NODES=20
# A port range of our own, so that parallel runs do not collide.
PORT=$((20000 + ($$ % 20000)))
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; shift; for l in "$@"; do echo "     $l"; done; }
expect() { # NAME PATTERN TEXT
    if printf '%s' "$3" | grep -qE -- "$2"; then ok "$1"; else bad "$1" "no /$2/ in: $3"; fi
}
wait_line() { # FILE PATTERN [TRIES of 50 ms]
    for _ in $(seq "${3:-200}"); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
    return 1
}
finish() { echo "PL-TEST-SUMMARY $passed $failed"; exit 0; }
key_of() { "$PL" --home "$T/$1" --json show | sed -n 's/.*"fingerprint":"\([0-9a-f]*\)".*/\1/p'; }
now_ms() { date +%s%3N; }

# ---- the authority and the users ---------------------------------------------------------
FP=$("$CA" init --dir "$T/ca") || { bad "ca init"; finish; }
"$CA" serve --dir "$T/ca" --listen 127.0.0.1:0 --rate 1000 --burst 1000 >"$T/ca.out" 2>>"$T/ca.log" &
PIDS+=($!)
wait_line "$T/ca.out" '^listening' || { bad "ca start" "$(cat "$T/ca.log")"; finish; }
CA_ADDR=$(awk '/^listening/{print $2}' "$T/ca.out")
SNS=() NODES=()
for i in $(seq 1 $N_SN); do SNS+=("super$i"); done
for i in $(seq -w 1 $N_NODES); do NODES+=("user$i"); done
for u in "${SNS[@]}" "${NODES[@]}" eve; do
    "$PL" --home "$T/$u" keygen >/dev/null &&
        "$PL" --home "$T/$u" register "$u" --ca "$CA_ADDR" --ca-key "$FP" >/dev/null ||
        { bad "register $u"; finish; }
done
ok "registered ${#SNS[@]} supernode operators and $((${#NODES[@]} + 1)) users"

# ---- supernodes --------------------------------------------------------------------------
: >"$T/supernodes"
for i in $(seq 1 $N_SN); do
    echo "$(key_of "super$i") 127.0.0.$((i + 1)):$PORT" >>"$T/supernodes"
done
declare -A PID_OF
start_daemon() { # USER ARGS...
    local u=$1
    shift
    "$PD" --home "$T/$u" "$@" >"$T/$u.out" 2>>"$T/$u.log" &
    PID_OF[$u]=$!
    PIDS+=($!)
    wait_line "$T/$u.out" '^listening' || { bad "$u starts" "$(tail -5 "$T/$u.log")"; return 1; }
}
for i in $(seq 1 $N_SN); do
    start_daemon "super$i" --role supernode --listen "127.0.0.$((i + 1)):$PORT" --bootstrap-file "$T/supernodes" ||
        finish
done
ok "5 supernodes listen on 127.0.0.2-6"
sleep 2
out=$("$PL" --home "$T/super5" status)
expect "supernodes find each other by gossip" 'supernodes +5 alive of 5 known' "$out"
# Supernodes answer standard STUN Binding requests on their address.
out=$(timeout 3 turnutils_stunclient -p "$PORT" 127.0.0.3 2>&1)
expect "a supernode answers coturn's STUN client with the reflexive address" 'UDP reflexive addr: 127\.0\.0\.1:[0-9]+' "$out"

# ---- nodes: each bootstraps from the supernodes, starting at a different one --------------
for i in $(seq 1 $N_NODES); do
    u=${NODES[$((i - 1))]}
    # Rotate the list so the nodes spread over the supernodes.
    { tail -n +$(((i - 1) % N_SN + 1)) "$T/supernodes"; head -n $(((i - 1) % N_SN)) "$T/supernodes"; } >"$T/$u.boot"
    start_daemon "$u" --listen "127.0.1.$i:0" --bootstrap-file "$T/$u.boot" || finish
done
attached=0
for u in "${NODES[@]}"; do
    wait_line "$T/$u.log" 'record published on 3 replicas' 100 && attached=$((attached + 1))
done
if [ "$attached" -eq $N_NODES ]; then ok "20 nodes attached and published on 3 replicas each"
else bad "20 nodes attached and published on 3 replicas each" "only $attached"; fi

out=$("$PL" --home "$T/user01" status)
expect "status shows the supernode and the address seen" 'supernode +super[0-9] at 127\.0\.0\.[2-6]' "$out"
expect "status shows online" 'state +online \(attached\)' "$out"
expect "status shows the NAT type found by discovery through the supernodes" 'nat +none' "$out"

# ---- every node finds every other ----------------------------------------------------------
lookup_all() { # -> prints how many of the 380 look-ups found a verified record
    local dir=$T/lookups.$RANDOM
    mkdir -p "$dir"
    for a in "${NODES[@]}"; do
        (
            n=0
            for b in "${NODES[@]}"; do
                [ "$a" = "$b" ] && continue
                "$PL" --home "$T/$a" --json lookup "$b" 2>/dev/null | grep -q "\"name\":\"$b\"" && n=$((n + 1))
            done
            echo $n >"$dir/$a"
        ) &
    done
    wait_for_jobs
    cat "$dir"/* | awk '{s += $1} END {print s + 0}'
}
wait_for_jobs() { for j in $(jobs -p); do case " ${PIDS[*]} " in *" $j "*) ;; *) wait "$j" ;; esac; done; }
found=$(lookup_all)
if [ "$found" -eq 380 ]; then ok "every node finds every other (380 look-ups)"
else bad "every node finds every other (380 look-ups)" "found $found"; fi
out=$("$PL" --home "$T/user01" lookup user02)
expect "a look-up shows presence, supernode and address" 'reachable +127\.0\.1\.2:[0-9]+ udp' "$out"
"$PL" --home "$T/user01" lookup nobody-at-all >/dev/null 2>"$T/err"
rc=$?
[ $rc -eq 13 ] && ok "an unknown name is not found (exit 13)" || bad "an unknown name is not found (exit 13)" "exit $rc"
expect "and says so in one line" "^parley: lookup: no user 'nobody-at-all' in the directory$" "$(cat "$T/err")"
"$PL" --home "$T/user01" lookup 'Bad Name!' >/dev/null 2>&1
[ $? -eq 3 ] && ok "a bad name is refused (exit 3)" || bad "a bad name is refused (exit 3)"

# ---- contacts and presence -------------------------------------------------------------------
"$PL" --home "$T/user01" contacts add user02 >/dev/null && ok "user01 adds user02 as a contact" || bad "contacts add"
sleep 1
out=$("$PL" --home "$T/user01" contacts list)
expect "the contact shows online" '^user02 +online' "$out"
"$PL" --home "$T/user02" presence away "in a meeting" >/dev/null || bad "presence away"
sleep 1
out=$("$PL" --home "$T/user01" contacts list)
expect "user02's new presence reaches user01" '^user02 +away +in a meeting' "$out"
"$PL" --home "$T/user01" contacts add user02 >/dev/null 2>&1
[ $? -ne 0 ] && ok "adding a contact twice is refused" || bad "adding a contact twice is refused"

# ---- kill -9 two supernodes ------------------------------------------------------------------
t0=$(now_ms)
{ kill -9 "${PID_OF[super1]}" "${PID_OF[super2]}"; wait "${PID_OF[super1]}" "${PID_OF[super2]}"; } 2>/dev/null
victims=$(grep -l 'attached to supernode super[12] ' "$T"/user*.log | wc -l)
echo "     killed super1 and super2 (serving $victims of the 20 nodes)"
recovered=0
for _ in $(seq 30); do
    found=$(lookup_all)
    reattached=$(for u in "${NODES[@]}"; do "$PL" --home "$T/$u" --json status; done | grep -c '"online":true')
    if [ "$found" -eq 380 ] && [ "$reattached" -eq 20 ]; then recovered=$(now_ms); break; fi
    sleep 2
done
if [ "$recovered" -gt 0 ]; then
    ok "after kill -9 of two supernodes every node re-attached and every record resolves"
    echo "     recovery: $(((recovered - t0) / 1000)).$(((recovered - t0) % 1000 / 100)) s from kill -9 to 20 attached and 380 of 380 look-ups"
else
    bad "after kill -9 of two supernodes every node re-attached and every record resolves" "found $found, attached $reattached"
fi
out=$("$PL" --home "$T/super5" status)
expect "gossip noticed the two deaths" 'supernodes +3 alive of 5 known' "$out"
again=$(grep -h 'attached to supernode' "$T"/user*.log | wc -l)
expect "their clients re-attached once each (one re-attach, not a new bootstrap)" "^$((20 + victims))\$" "$again"

# ---- an impostor and a revoked user ------------------------------------------------------------
ROGUE_FP=$("$CA" init --dir "$T/rogue")
"$CA" serve --dir "$T/rogue" --listen 127.0.0.1:0 >"$T/rogue.out" 2>>"$T/rogue.log" &
PIDS+=($!)
wait_line "$T/rogue.out" '^listening'
ROGUE_ADDR=$(awk '/^listening/{print $2}' "$T/rogue.out")
"$PL" --home "$T/impostor" keygen >/dev/null
"$PL" --home "$T/impostor" register user03 --ca "$ROGUE_ADDR" --ca-key "$ROGUE_FP" >/dev/null
start_daemon impostor --listen 127.0.2.1:0 --bootstrap-file "$T/supernodes"
sleep 4
out=$("$PL" --home "$T/impostor" --json status)
expect "an identity from another authority cannot attach" '"online":false' "$out"
"$CA" revoke --dir "$T/ca" eve >/dev/null
for i in 3 4 5; do "$PL" --home "$T/super$i" crl >/dev/null; done
for i in 3 4 5; do
    kill "${PID_OF[super$i]}"
    wait "${PID_OF[super$i]}" 2>/dev/null
    start_daemon "super$i" --role supernode --listen "127.0.0.$((i + 1)):$PORT" --bootstrap-file "$T/supernodes"
done
start_daemon eve --listen 127.0.2.2:0 --bootstrap-file "$T/supernodes"
sleep 4
out=$("$PL" --home "$T/eve" --json status)
expect "a revoked user cannot attach" '"online":false' "$out"
finish
