#!/usr/bin/env bash
# netlab.test.sh - the network lab (tests/netlab/lab.sh) checked against the
# kernel: every NAT type behaves as its name says, so later tests can trust
# it. One home per type behind one "internet"; a reflector (pl_probe) with
# two public addresses and two ports answers from the port or address a
# test asks for, which is how unsolicited packets are made.
# Shown, per type: the mapping (same or different outside port towards two
# destinations), the filtering (whether a packet from a new port, or a new
# address, of a contacted host gets in), hairpinning on and off, UDP blocked
# while TCP works, both layers of a double NAT, and a host without NAT
# seeing its own address. Afterwards none of the lab's namespaces is left.
# Needs root and nftables; without them it fails (CI runs it as root).
set -u
B=${PARLEY_BUILD:-build/release}
PROBE="$B/tests/tools/pl_probe"
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/netlab/lab.sh"
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; shift; for l in "$@"; do echo "     $l"; done; }
check() { # NAME CONDITION-STATUS DETAIL...
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

[ -x "$PROBE" ] || { bad "netlab: $PROBE is built" "run make first"; finish; }
if ! lab_init; then
    bad "netlab: the lab cannot run here: $LAB_ERROR"
    finish
fi
T=$LAB_DIR
A1=203.0.113.10
A2=198.51.100.10
# Homes, one per behaviour; "lan2" hosts share a router with a home's host.
build() {
    lab_internet || return 1
    lab_public refl $A1 $A2 || return 1
    lab_public other 192.0.2.20 || return 1
    local h
    for h in none:open full-cone:fc full-cone-hairpin:fch restricted:rc restricted-hairpin:rch \
        port-restricted:pr port-restricted-hairpin:prh symmetric:sym udp-blocked:ub double:dbl; do
        lab_home "${h#*:}" "${h%%:*}" || return 1
    done
    for h in fc fch rch pr prh sym; do lab_lan_host "$h" "$h-b" || return 1; done
}
if ! build; then
    bad "the lab is built" "$LAB_ERROR"
    finish
fi
ok "the lab is built (prefix $LAB_PREFIX, $(lab_namespaces | wc -l) namespaces)"
check "lab_public refuses an address outside the documentation ranges" \
    "$(lab_public bad 8.8.8.8 2>/dev/null; [ $? -ne 0 ]; echo $?)"
check "the internet has no default route: nothing leaves the lab" \
    "$([ -z "$(lab_exec inet ip route show default)" ]; echo $?)"

lab_spawn refl "$T/refl.out" "$PROBE" reflect --tcp $A1:3478 $A1:3479 $A2:3478 $A2:3479
for _ in $(seq 100); do grep -q '^ready' "$T/refl.out" 2>/dev/null && break; sleep 0.02; done
grep -q '^ready' "$T/refl.out" || { bad "the reflector starts" "$(cat "$T/refl.out")"; finish; }

# mapped OUTFILE TARGET: the address TARGET saw in a client run.
mapped() { awk -v t="$2" '$1 == "mapped" && $2 == t {print $3; exit}' "$1"; }
# got OUTFILE FROM: 0 when a datagram from FROM arrived.
got() { awk -v f="$2" '$1 == "recv" && $2 == f {found = 1} END {exit !found}' "$1"; }

# ---- mapping: one local port towards two destinations ---------------------------
mapping_test() { # HOME WANT(same|different)
    local h=$1 want=$2 out="$T/map-$1"
    lab_exec "$h" "$PROBE" client --bind 0.0.0.0:5000 $A1:3478 $A2:3478 >"$out" 2>&1
    local m1 m2 wan
    m1=$(mapped "$out" $A1:3478)
    m2=$(mapped "$out" $A2:3478)
    wan=$(lab_wan "$h")
    if [ -z "$m1" ] || [ -z "$m2" ]; then
        bad "$h: mapping towards two destinations" "$(cat "$out")"
        return
    fi
    if [ "${m1%:*}" != "$wan" ] || [ "${m2%:*}" != "$wan" ]; then
        bad "$h: mapped to its public address $wan" "saw $m1 and $m2"
        return
    fi
    if [ "$want" = same ]; then
        check "$h ($(lab_type "$h")): endpoint-independent mapping ($m1 towards both)" \
            "$([ "$m1" = "$m2" ]; echo $?)" "$m1 vs $m2"
    else
        check "$h ($(lab_type "$h")): address-and-port-dependent mapping ($m1, $m2)" \
            "$([ "$m1" != "$m2" ]; echo $?)" "$m1 vs $m2"
    fi
}
lab_type() { echo "${LAB_HOME_TYPE[$1]}"; }

# ---- filtering: unsolicited packets from a new port / new address ---------------
filtering_test() { # HOME NEWPORT(in|out) NEWADDR(in|out)
    local h=$1 want_port=$2 want_addr=$3 out="$T/filter-$1"
    lab_exec "$h" "$PROBE" client --bind 0.0.0.0:5001 --listen 0.4 \
        "$A1:3478,from=$A1:3479,from=$A2:3479" >"$out" 2>&1
    if [ -z "$(mapped "$out" $A1:3478)" ]; then
        bad "$h: the contacted host answers" "$(cat "$out")"
        return
    fi
    local p=out a=out
    got "$out" $A1:3479 && p=in
    got "$out" $A2:3479 && a=in
    check "$h ($(lab_type "$h")): a new port of the contacted address gets $want_port" \
        "$([ $p = "$want_port" ]; echo $?)" "$(cat "$out")"
    check "$h ($(lab_type "$h")): a new address gets $want_addr" \
        "$([ $a = "$want_addr" ]; echo $?)" "$(cat "$out")"
}

# ---- hairpinning: a LAN host reaches another through the public address ----------
# All homes at once: each LAN host learns its mapping and listens; then a
# second host on the same LAN sends to that public address.
declare -A HP_PID=() HP_MAP=()
hairpin_start() { # HOME
    lab_spawn "$1" "$T/hairpin-$1" "$PROBE" client --bind 0.0.0.0:6000 --listen 1.0 $A1:3478
    HP_PID[$1]=$LAB_PID
}
hairpin_send() { # HOME
    local h=$1 m=""
    for _ in $(seq 100); do
        m=$(mapped "$T/hairpin-$h" $A1:3478)
        [ -n "$m" ] && break
        sleep 0.02
    done
    HP_MAP[$h]=$m
    [ -n "$m" ] && lab_exec "$h-b" "$PROBE" send --bind 0.0.0.0:6001 --to "$m" --text hairpin --count 3
}
hairpin_check() { # HOME WANT(yes|no)
    local h=$1 want=$2 out="$T/hairpin-$1" m=${HP_MAP[$1]}
    wait "${HP_PID[$h]}" 2>/dev/null
    if [ -z "$m" ]; then
        bad "$h: hairpin set-up" "$(cat "$out")"
        return
    fi
    local from
    from=$(awk '$1 == "recv" && $3 == "hairpin" {print $2; exit}' "$out")
    if [ "$want" = yes ]; then
        check "$h ($(lab_type "$h")): hairpinning delivers LAN to LAN through $m" \
            "$([ -n "$from" ]; echo $?)" "$(cat "$out")"
        # RFC 4787 REQ-9: the hairpinned packet carries the sender's public
        # address, not its private one.
        [ -n "$from" ] && check "$h: the hairpinned packet comes from the public address ($from)" \
            "$([ "${from%:*}" = "$(lab_wan "$h")" ]; echo $?)" "from $from"
    else
        check "$h ($(lab_type "$h")): no hairpinning" "$([ -z "$from" ]; echo $?)" "$(cat "$out")"
    fi
}

mapping_test fc same
mapping_test rc same
mapping_test pr same
mapping_test sym different
mapping_test dbl same

filtering_test fc in in
filtering_test rc in out
filtering_test pr out out
filtering_test sym out out
filtering_test dbl out out
filtering_test open in in

HAIRPIN="fch:yes rch:yes prh:yes fc:no pr:no sym:no"
for h in $HAIRPIN; do hairpin_start "${h%:*}"; done
for h in $HAIRPIN; do hairpin_send "${h%:*}"; done
for h in $HAIRPIN; do hairpin_check "${h%:*}" "${h#*:}"; done

# ---- no NAT: the host sees its own address ----------------------------------------
out="$T/open"
lab_exec open "$PROBE" client --bind 0.0.0.0:5002 $A1:3478 $A2:3478 >"$out" 2>&1
own="$(lab_addr open):5002"
check "open (none): the reflector sees the host's own address $own" \
    "$([ "$(mapped "$out" $A1:3478)" = "$own" ] && [ "$(mapped "$out" $A2:3478)" = "$own" ]; echo $?)" "$(cat "$out")"

# ---- UDP blocked, TCP out works ---------------------------------------------------------
out="$T/ub"
lab_exec ub "$PROBE" client --bind 0.0.0.0:5000 --timeout 0.6 $A1:3478 >"$out" 2>&1
check "ub (udp-blocked): no UDP gets out" "$(grep -q "^nomapping $A1:3478" "$out"; echo $?)" "$(cat "$out")"
out="$T/ub-tcp"
lab_exec ub "$PROBE" tcp --to $A1:3478 >"$out" 2>&1
check "ub (udp-blocked): TCP gets out, translated to $(lab_wan ub)" \
    "$(grep -q "^tcp-ok $A1:3478 seen $(lab_wan ub):" "$out"; echo $?)" "$(cat "$out")"
out="$T/pr-tcp"
lab_exec pr "$PROBE" tcp --to $A2:3479 >"$out" 2>&1
check "pr (port-restricted): TCP gets out too" "$(grep -q "^tcp-ok $A2:3479 seen $(lab_wan pr):" "$out"; echo $?)" \
    "$(cat "$out")"

# ---- double NAT: both layers translate ---------------------------------------------------
# A reflector on the carrier's inside address shows the inner layer's
# translation (to the home router's 100.64 address); the public reflector
# shows the outer one (to the carrier's public address).
cgn_in=100.64.${LAB_HOME_IDX[dbl]}.1
lab_spawn dbl-cgn "$T/cgn-refl.out" "$PROBE" reflect $cgn_in:3478
for _ in $(seq 100); do grep -q '^ready' "$T/cgn-refl.out" 2>/dev/null && break; sleep 0.02; done
out="$T/dbl"
lab_exec dbl "$PROBE" client --bind 0.0.0.0:5003 $cgn_in:3478 $A1:3478 >"$out" 2>&1
inner=$(mapped "$out" $cgn_in:3478)
outer=$(mapped "$out" $A1:3478)
check "dbl (double): the home NAT maps to its carrier-grade address ($inner)" \
    "$([ "${inner%:*}" = "$(lab_addr dbl-gw)" ]; echo $?)" "$(cat "$out")"
check "dbl (double): the carrier NAT maps to the public address ($outer)" \
    "$([ "${outer%:*}" = "$(lab_wan dbl)" ] && [ "$(lab_wan dbl)" != "$(lab_addr dbl-gw)" ]; echo $?)" "$(cat "$out")"

# ---- full cone: a host never contacted gets in ---------------------------------------------
out="$T/fc-other"
lab_spawn fc "$out" "$PROBE" client --bind 0.0.0.0:5004 --listen 1.0 $A1:3478
pid=$LAB_PID
for _ in $(seq 100); do m=$(mapped "$out" $A1:3478); [ -n "$m" ] && break; sleep 0.02; done
lab_exec other "$PROBE" send --bind 192.0.2.20:7000 --to "$m" --text stranger --count 2
wait "$pid" 2>/dev/null
check "fc (full-cone): a host never contacted reaches the mapping" "$(got "$out" 192.0.2.20:7000; echo $?)" "$(cat "$out")"
out="$T/pr-other"
lab_spawn pr "$out" "$PROBE" client --bind 0.0.0.0:5004 --listen 1.0 $A1:3478
pid=$LAB_PID
for _ in $(seq 100); do m=$(mapped "$out" $A1:3478); [ -n "$m" ] && break; sleep 0.02; done
lab_exec other "$PROBE" send --bind 192.0.2.20:7000 --to "$m" --text stranger --count 2
wait "$pid" 2>/dev/null
check "pr (port-restricted): a host never contacted does not" "$(! got "$out" 192.0.2.20:7000; echo $?)" "$(cat "$out")"

finish
