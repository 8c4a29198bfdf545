#!/usr/bin/env bash
# natdisc.test.sh - NAT discovery (src/core/natdisc.c) and the STUN responder
# (src/core/stun.c) in the network lab, behind real Linux NATs.
# A STUN server (pl_stun server) with two public addresses and two ports;
# one home per lab NAT type. Shown:
#  - from every home's LAN host, discovery classifies the home's NAT as the
#    lab built it (mapping, filtering, hairpinning, UDP blocked, no NAT,
#    double NAT) and finds the home's public address;
#  - against a server with one address, mapping and filtering stay unknown,
#    and a second server at another address tells the mapping;
#  - Debian's STUN clients get correct answers from our responder: `stun`
#    (stun-client, RFC 3489 requests and tests) reports the home's public
#    address and the NAT behaviour the lab built, and turnutils_stunclient
#    (coturn, RFC 5389/5780) reports the public address and our
#    OTHER-ADDRESS.
# Needs root and nftables; without them it fails (CI runs it as root).
set -u
B=${PARLEY_BUILD:-build/release}
STUN="$B/tests/tools/pl_stun"
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/netlab/lab.sh"
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; shift; for l in "$@"; do echo "     $l"; done; }
check() { # NAME STATUS DETAIL...
    local name=$1 status=$2
    shift 2
    if [ "$status" -eq 0 ]; then ok "$name"; else bad "$name" "$@"; fi
}
finish() {
    local prefix=${LAB_PREFIX:-}
    lab_down
    if [ -n "$prefix" ]; then
        left=$(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$prefix" || true)
        check "no namespace of the lab is left" "$([ -z "$left" ]; echo $?)" "left: $left"
    fi
    echo "PL-TEST-SUMMARY $passed $failed"
    exit 0
}

[ -x "$STUN" ] || { bad "natdisc: $STUN is built" "run make first"; finish; }
if ! lab_init; then
    bad "natdisc: the lab cannot run here: $LAB_ERROR"
    finish
fi
T=$LAB_DIR
P=203.0.113.10
A=198.51.100.10
S2=192.0.2.30

# TYPE:HOME and what discovery must report: type, mapping, filtering, hairpin.
EI=endpoint-independent
AD=address-dependent
APD=address-and-port-dependent
EXPECT="
none:open open $EI $EI yes
full-cone:fc full-cone $EI $EI no
full-cone-hairpin:fch full-cone $EI $EI yes
restricted:rc restricted $EI $AD no
restricted-hairpin:rch restricted $EI $AD yes
port-restricted:pr port-restricted $EI $APD no
port-restricted-hairpin:prh port-restricted $EI $APD yes
symmetric:sym symmetric $APD $APD no
udp-blocked:ub udp-blocked unknown unknown unknown
double:dbl port-restricted $EI $APD no
"
build() {
    lab_internet || return 1
    lab_public stun1 $P $A || return 1
    lab_public stun2 $S2 || return 1
    local line
    while read -r line; do
        [ -n "$line" ] || continue
        set -- $line
        lab_home "${1#*:}" "${1%%:*}" || return 1
    done <<<"$EXPECT"
}
if ! build; then
    bad "the lab is built" "$LAB_ERROR"
    finish
fi
ok "the lab is built (prefix $LAB_PREFIX)"

start_server() { # HOST OUT ARGS...
    local host=$1 out=$2
    shift 2
    lab_spawn "$host" "$out" "$STUN" server "$@"
    for _ in $(seq 100); do grep -q '^ready' "$out" 2>/dev/null && return 0; sleep 0.02; done
    return 1
}
start_server stun1 "$T/stun1.out" --primary $P:3478 --alternate $A:3479 || { bad "the STUN server starts" "$(cat "$T/stun1.out")"; finish; }
start_server stun2 "$T/stun2.out" --primary $S2:3478 || { bad "the second STUN server starts" "$(cat "$T/stun2.out")"; finish; }
ok "STUN servers listen on $P:3478, $P:3479, $A:3478, $A:3479 and $S2:3478"

# field FILE KEY: the value of "KEY value" in a client's output.
field() { awk -v k="$2" '$1 == k {print $2; exit}' "$1"; }

# ---- discovery from every home, all at once -----------------------------------------
declare -A PIDS=()
while read -r line; do
    [ -n "$line" ] || continue
    set -- $line
    h=${1#*:}
    lab_spawn "$h" "$T/disc-$h" "$STUN" client --server $P:3478
    PIDS[$h]=$LAB_PID
done <<<"$EXPECT"
while read -r line; do
    [ -n "$line" ] || continue
    set -- $line
    type=${1%%:*} h=${1#*:}
    wait "${PIDS[$h]}"
    rc=$?
    out="$T/disc-$h"
    got="$(field "$out" type) $(field "$out" mapping) $(field "$out" filtering) $(field "$out" hairpin)"
    check "$type: discovery reports $2 (mapping $3, filtering $4, hairpin $5)" \
        "$([ $rc -eq 0 ] && [ "$got" = "$2 $3 $4 $5" ]; echo $?)" "exit $rc, got: $got" "$(cat "$out")"
    if [ "$type" = udp-blocked ]; then
        check "$type: UDP blocked, no mapped address" \
            "$([ "$(field "$out" udp-blocked)" = yes ] && [ "$(field "$out" mapped)" = "(none)" ]; echo $?)" "$(cat "$out")"
    else
        m=$(field "$out" mapped)
        check "$type: the mapped address $m is the home's public address" \
            "$([ "${m%:*}" = "$(lab_wan "$h")" ]; echo $?)" "$(cat "$out")"
    fi
done <<<"$EXPECT"
check "none: discovery sees no NAT" "$([ "$(field "$T/disc-open" nat)" = no ]; echo $?)" "$(cat "$T/disc-open")"
check "full-cone: discovery sees a NAT" "$([ "$(field "$T/disc-fc" nat)" = yes ]; echo $?)" "$(cat "$T/disc-fc")"

# ---- one-address servers ---------------------------------------------------------------
out="$T/one-address"
lab_exec fc "$STUN" client --server $S2:3478 --no-hairpin >"$out" 2>&1
check "a server without an alternate address: mapping and filtering unknown" \
    "$([ "$(field "$out" mapping) $(field "$out" filtering) $(field "$out" other)" = "unknown unknown (none)" ]; echo $?)" \
    "$(cat "$out")"
out="$T/two-servers-fc"
lab_exec fc "$STUN" client --server $S2:3478 --server2 $P:3478 --no-hairpin >"$out" 2>&1
check "two one-address servers: full-cone maps endpoint-independently" \
    "$([ "$(field "$out" mapping)" = $EI ]; echo $?)" "$(cat "$out")"
out="$T/two-servers-sym"
lab_exec sym "$STUN" client --server $S2:3478 --server2 $P:3478 --no-hairpin >"$out" 2>&1
check "two one-address servers: symmetric maps address-and-port-dependently" \
    "$([ "$(field "$out" mapping)" = $APD ]; echo $?)" "$(cat "$out")"

# ---- the responder, one request at a time -------------------------------------------------
for c in "none $P:3478" "port $P:3479" "ip $A:3478" "both $A:3479"; do
    set -- $c
    out="$T/binding-$1"
    args=()
    [ "$1" != none ] && args=(--change "$1")
    lab_exec open "$STUN" binding --server $P:3478 "${args[@]}" >"$out" 2>&1
    check "CHANGE-REQUEST $1: the answer comes from $2" \
        "$(grep -q "^mapped $(lab_addr open):[0-9]* from $2$" "$out"; echo $?)" "$(cat "$out")"
done
out="$T/binding-one-address"
lab_exec open "$STUN" binding --server $S2:3478 --change port >"$out" 2>&1
check "CHANGE-REQUEST to a one-address server: 420" "$(grep -q "^error 420 from $S2:3478$" "$out"; echo $?)" "$(cat "$out")"

# ---- Debian's STUN clients against our responder -------------------------------------------
# stun (stun-client 0.97, RFC 3489): its own classification must match the
# lab's NAT, which it can only get right if CHANGE-REQUEST, SOURCE-ADDRESS
# and CHANGED-ADDRESS are right.
if command -v stun >/dev/null 2>&1; then
    declare -A VPID=()
    VOVIDA="fc:Independent Mapping, Independent Filter
rc:Independent Mapping, Address Dependent Filter
pr:Independent Mapping, Port Dependent Filter
sym:Dependent Mapping
open:Open"
    while IFS=: read -r h want; do
        lab_spawn "$h" "$T/vovida-$h" timeout 20 stun -v $P
        VPID[$h]=$LAB_PID
    done <<<"$VOVIDA"
    while IFS=: read -r h want; do
        wait "${VPID[$h]}"
        out="$T/vovida-$h"
        check "stun (stun-client) from $h: the mapped address is $(lab_wan "$h")" \
            "$(grep -q "^MappedAddress = $(lab_wan "$h"):" "$out"; echo $?)" "$(tail -5 "$out")"
        check "stun (stun-client) from $h: reports '$want'" "$(grep -q "^Primary: $want" "$out"; echo $?)" \
            "$(grep '^Primary' "$out")"
    done <<<"$VOVIDA"
else
    bad "stun (stun-client) is installed" "scripts/setup.sh installs it"
fi
# turnutils_stunclient (coturn, RFC 5389 with RFC 5780 attributes). Its
# second request asks for RESPONSE-PORT, which our responder refuses with
# 420 as RFC 5780 says a server without it must; the client then waits for
# an answer that never comes, so it is stopped after a few seconds.
if command -v turnutils_stunclient >/dev/null 2>&1; then
    declare -A CPID=()
    for h in fc sym dbl; do
        lab_spawn "$h" "$T/coturn-$h" timeout 3 turnutils_stunclient -p 3478 $P
        CPID[$h]=$LAB_PID
    done
    for h in fc sym dbl; do
        out="$T/coturn-$h"
        wait "${CPID[$h]}"
        check "turnutils_stunclient from $h: the reflexive address is $(lab_wan "$h")" \
            "$(grep -q "UDP reflexive addr: $(lab_wan "$h"):[0-9]*$" "$out"; echo $?)" "$(cat "$out")"
        check "turnutils_stunclient from $h: OTHER-ADDRESS is $A:3479" \
            "$(grep -q "Other addr: : $A:3479$" "$out"; echo $?)" "$(cat "$out")"
    done
else
    bad "turnutils_stunclient (coturn) is installed" "scripts/setup.sh installs it"
fi

finish
