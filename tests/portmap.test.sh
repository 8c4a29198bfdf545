#!/usr/bin/env bash
# portmap.test.sh - port mapping (src/io/portmap.c) against a real home
# router: miniupnpd (Debian's miniupnpd-nftables, UPnP IGD and NAT-PMP) on
# a lab router whose NAT is plain masquerade (port-restricted), with its
# own nftables table for the rules it adds. Shown, through the real NAT:
#  - without a mapping a public host's datagram does not reach the LAN host;
#    with a NAT-PMP mapping, and with a UPnP IGD mapping, it does;
#  - short leases are renewed (new flows still get in after twice the
#    lease), the mapping is removed on release (the router's rule goes and
#    new flows stop), and a lease nobody renews ends at the router;
#  - clear failures: refused (the router's permission rules), conflict (the
#    external port belongs to another LAN host), no router (a home without
#    miniupnpd, a router that offers the other protocol only);
#  - without "exact port" a conflict is settled with another port, which
#    works too; with both protocols NAT-PMP is used, with one router
#    protocol the other is found;
#  - the event loop keeps running while the router is asked.
# Needs root, nftables and miniupnpd; without them it fails (CI runs it as
# root after scripts/setup.sh).
#
# miniupnpd refuses to map when its WAN address is private or reserved, and
# the lab's public ranges are documentation ranges, which it counts as
# reserved; unless it learns by STUN that nothing filters in front of it.
# So the lab runs our STUN server (pl_stun) on two addresses, the router lets
# the STUN answers in, and miniupnpd's own STUN test finds "no NAT, no
# filtering" and enables port forwarding.
set -u
B=${PARLEY_BUILD:-build/release}
PM="$B/tests/tools/pl_portmap"
PROBE="$B/tests/tools/pl_probe"
STUN="$B/tests/tools/pl_stun"
MINIUPNPD=${MINIUPNPD:-/usr/sbin/miniupnpd}
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
IGD_PID=""
finish() {
    local prefix=${LAB_PREFIX:-}
    stop_igd
    lab_down
    if [ -n "$prefix" ]; then
        left=$(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$prefix" || true)
        check "no namespace of the lab is left" "$([ -z "$left" ]; echo $?)" "left: $left"
    fi
    echo "PL-TEST-SUMMARY $passed $failed"
    exit 0
}

for t in "$PM" "$PROBE" "$STUN"; do
    [ -x "$t" ] || { bad "portmap: $t is built" "run make first"; finish; }
done
[ -x "$MINIUPNPD" ] || { bad "portmap: miniupnpd is installed" "scripts/setup.sh installs miniupnpd-nftables"; finish; }
if ! lab_init; then
    bad "portmap: the lab cannot run here: $LAB_ERROR"
    finish
fi
T=$LAB_DIR
P=203.0.113.10
A=198.51.100.10
PUB=203.0.113.20
build() {
    lab_internet || return 1
    lab_public stun1 $P $A || return 1
    lab_public pub $PUB || return 1
    lab_home up port-restricted || return 1
    lab_lan_host up up-b || return 1
    lab_lan_host up up-c || return 1
    lab_home plain port-restricted || return 1
}
if ! build; then
    bad "the lab is built" "$LAB_ERROR"
    finish
fi
WAN=$(lab_wan up)
LAN=$(lab_addr up)
LAN_B=$(lab_addr up-b)
LAN_C=$(lab_addr up-c)
GW_LAN=${LAN%.*}.1
LAN_NET=${LAN%.*}.0/24
ok "the lab is built (prefix $LAB_PREFIX): home 'up' $WAN with a LAN host $LAN and $LAN_B, home 'plain'"

lab_spawn stun1 "$T/stun.out" "$STUN" server --primary $P:3478 --alternate $A:3479
for _ in $(seq 100); do grep -q '^ready' "$T/stun.out" 2>/dev/null && break; sleep 0.02; done

# ---- the router's side: miniupnpd ----------------------------------------------------------
# Its rules go into a table of their own; the lab's forward chain already
# accepts what a DNAT let in ("ct status dnat accept"), so only the DNAT
# matters for reaching the LAN host.
cat >"$T/igd.nft" <<EOF
table inet pl_igd {
    chain forward {
        type filter hook forward priority filter; policy accept;
        jump igd_forward
    }
    chain igd_forward {
    }
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        jump igd_prerouting
    }
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        jump igd_postrouting
    }
    chain igd_prerouting {
    }
    chain igd_postrouting {
    }
}
EOF
# The STUN answers miniupnpd waits for, changed address and port included,
# would be dropped by the lab router's input chain.
lab_exec up-gw nft insert rule inet pl_filter input iifname wan ip saddr "{ $P, $A }" udp sport "{ 3478, 3479 }" accept

# start_igd MODE: (re)starts miniupnpd with NAT-PMP and UPnP (both), or one.
start_igd() {
    local mode=$1 natpmp=yes upnp=yes
    [ "$mode" = natpmp ] && upnp=no
    [ "$mode" = upnp ] && natpmp=no
    stop_igd
    rm -f "$T/igd.leases"
    lab_exec up-gw nft delete table inet pl_igd 2>/dev/null
    lab_exec up-gw nft -f "$T/igd.nft" || return 1
    cat >"$T/igd.conf" <<EOF
ext_ifname=wan
listening_ip=lan
http_port=0
enable_natpmp=$natpmp
enable_upnp=$upnp
ext_perform_stun=yes
ext_stun_host=$P
ext_stun_port=3478
ipv6_disable=yes
secure_mode=yes
system_uptime=no
min_lifetime=1
max_lifetime=86400
lease_file=$T/igd.leases
upnp_table_name=pl_igd
upnp_nat_table_name=pl_igd
upnp_forward_chain=igd_forward
upnp_nat_chain=igd_prerouting
upnp_nat_postrouting_chain=igd_postrouting
uuid=8d3ff0c2-5a4e-4f7b-9a35-0d1c2b3a4e5f
allow 1024-65535 $LAN_NET 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
EOF
    # Without -d: as a daemon it logs only to syslog. With -d it logs every
    # step to stderr, so slowly that refusing a NAT-PMP request (it tries
    # every external port against the permission rules, logging each) takes
    # minutes.
    lab_exec up-gw "$MINIUPNPD" -f "$T/igd.conf" -P "$T/igd.pid" || return 1
    local i ready
    for i in $(seq 100); do
        ready=1
        [ "$natpmp" = yes ] && ! lab_exec up-gw ss -Hlun | grep -q "$GW_LAN:5351" && ready=0
        [ "$upnp" = yes ] && ! lab_exec up-gw ss -Hltn | grep -q '%lan:' && ready=0
        [ $ready = 1 ] && [ -s "$T/igd.pid" ] && break
        sleep 0.05
    done
    IGD_PID=$(cat "$T/igd.pid" 2>/dev/null)
    [ $ready = 1 ] && [ -n "$IGD_PID" ]
}
stop_igd() {
    [ -n "$IGD_PID" ] || return 0
    kill "$IGD_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$IGD_PID" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$IGD_PID" 2>/dev/null
    IGD_PID=""
    rm -f "$T/igd.pid"
}
rules() { lab_exec up-gw nft list chain inet pl_igd igd_prerouting 2>&1; }
has_rule() { rules | grep -q "dnat ip to $1\$"; }

# wait_line FILE REGEX SECONDS: true once a line matches.
wait_line() {
    local i
    for i in $(seq $((${3} * 20))); do
        grep -Eq "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}
send_pub() { lab_exec pub "$PROBE" send --bind "$PUB:$1" --to "$2" --text "$3" >/dev/null 2>&1; }
# arrives HOST BIND SRCPORT TO TEXT: whether a datagram from the public host
# reaches a fresh socket on HOST (the mapping, not our program, delivers it).
arrives() {
    local out="$T/arrive-$3"
    lab_spawn "$1" "$out" "$PROBE" wait --bind "$2" --timeout 1.5
    local pid=$LAB_PID
    sleep 0.2
    send_pub "$3" "$4" "$5"
    wait "$pid"
}
field() { sed -n "s/.*$2=\([^ ]*\).*/\1/p" "$1" | head -1; }

# No router at all, at once, beside everything else: the home 'plain'.
lab_spawn plain "$T/pm-none" "$PM" --bind "$(lab_addr plain):40000" --hold 0 --release-wait 1
NONE_PID=$LAB_PID

if ! start_igd both; then
    bad "miniupnpd starts on the home router" "$(lab_exec up-gw ss -Hlun 2>&1)"
    finish
fi
ok "miniupnpd runs on the home router (NAT-PMP and UPnP IGD)"

# ---- control: the NAT filters -------------------------------------------------------------------
arrives up "$LAN:40000" 5000 "$WAN:40000" no-mapping
rc=$?
check "without a mapping, a datagram from $PUB to $WAN:40000 does not reach $LAN:40000" "$([ $rc -ne 0 ]; echo $?)"

# ---- NAT-PMP: map, use, renew, release ---------------------------------------------------------
lease_cycle() { # PROTO PORT
    local proto=$1 port=$2 out="$T/pm-$1"
    lab_spawn up "$out" "$PM" --bind "$LAN:$port" --protocol "$proto" --lifetime 3 --hold 7
    local pid=$LAB_PID
    if ! wait_line "$out" '^(mapped|failed) ' 6; then
        bad "$proto: a mapping is granted" "$(cat "$out")"
        wait "$pid"
        return
    fi
    local t0=$(date +%s%N)
    check "$proto: the router maps $WAN:$port to $LAN:$port for 3 s" \
        "$(grep -q "^mapped $proto $WAN:$port lifetime=3 " "$out"; echo $?)" "$(cat "$out")"
    echo "     $(grep '^mapped' "$out")"
    check "$proto: the router holds a DNAT rule $port -> $LAN:$port" "$(has_rule "$LAN:$port"; echo $?)" "$(rules)"
    send_pub $((port + 1)) "$WAN:$port" "via-$proto"
    check "$proto: a datagram from $PUB to $WAN:$port reaches the LAN host through the NAT" \
        "$(wait_line "$out" "^recv $PUB:$((port + 1)) via-$proto\$" 2; echo $?)" "$(cat "$out")"
    # Twice the lease later, a new flow still gets in: renewals kept it.
    local now=$(date +%s%N)
    local left=$((6500 - (now - t0) / 1000000))
    [ $left -gt 0 ] && sleep "$(printf '%d.%03d' $((left / 1000)) $((left % 1000)))"
    send_pub $((port + 2)) "$WAN:$port" "later-$proto"
    check "$proto: 6.5 s later (over twice the lease) a new flow still arrives" \
        "$(wait_line "$out" "^recv $PUB:$((port + 2)) later-$proto\$" 2; echo $?)" "$(cat "$out")"
    local renewals=$(grep -c "^renewed $proto $WAN:$port lifetime=3 " "$out")
    check "$proto: the 3 s lease was renewed every 1.5 s ($renewals renewals)" "$([ "$renewals" -ge 3 ]; echo $?)" \
        "$(cat "$out")"
    wait "$pid"
    check "$proto: the program exits 0" "$?" "$(cat "$out")"
    check "$proto: on release the mapping is removed" "$(grep -q '^released ok ' "$out"; echo $?)" "$(cat "$out")"
    check "$proto: the router's rule for $port is gone" "$(! has_rule "$LAN:$port"; echo $?)" "$(rules)"
    arrives up "$LAN:$port" $((port + 3)) "$WAN:$port" "after-release"
    local rc=$?
    check "$proto: after release a new flow to $WAN:$port no longer arrives" "$([ $rc -ne 0 ]; echo $?)"
    local late=$(field "$out" max-lateness-ms)
    check "$proto: the event loop never waited on the router (max timer lateness ${late} ms < 50)" \
        "$([ -n "$late" ] && [ "$late" -lt 50 ]; echo $?)" "$(tail -1 "$out")"
}
lease_cycle natpmp 40010
lease_cycle upnp 40020

# ---- leases nobody renews end at the router ------------------------------------------------------
# The program is killed (no renewal, no release); the router must drop the
# mapping when its 3 s lease ends.
# One protocol at a time, checked at once after the kill: a UPnP mapping
# takes 2 s to make, longer than the slack a 3 s lease leaves, so the two
# cannot wait for each other.
for c in natpmp:40030 upnp:40040; do
    proto=${c%%:*} port=${c#*:}
    lab_spawn up "$T/pm-kill-$proto" "$PM" --bind "$LAN:$port" --protocol $proto --lifetime 3 --hold 30
    kpid=$LAB_PID
    wait_line "$T/pm-kill-$proto" '^(mapped|failed) ' 6
    kill -9 "$kpid" 2>/dev/null
    wait "$kpid" 2>/dev/null
    arrives up "$LAN:$port" $((port + 1)) "$WAN:$port" "orphan"
    check "$proto: with the program killed, the mapping still delivers until its lease ends" "$?" \
        "$(cat "$T/pm-kill-$proto")"
done
sleep 3.5
for c in natpmp:40030 upnp:40040; do
    proto=${c%%:*} port=${c#*:}
    check "$proto: 3 s unrenewed, the router removed its rule" "$(! has_rule "$LAN:$port"; echo $?)" "$(rules)"
    arrives up "$LAN:$port" $((port + 2)) "$WAN:$port" "expired"
    rc=$?
    check "$proto: and a new flow no longer arrives" "$([ $rc -ne 0 ]; echo $?)"
done

# ---- clear failures: refused, conflict --------------------------------------------------------------
# The router's rules allow only ports 1024-65535.
lab_spawn up "$T/pm-ref-natpmp" "$PM" --bind "$LAN:999" --protocol natpmp --hold 0 --release-wait 1
R1=$LAB_PID
lab_spawn up "$T/pm-ref-upnp" "$PM" --bind "$LAN:998" --protocol upnp --hold 0 --release-wait 1
R2=$LAB_PID
# Another LAN host holds external port 41000.
lab_spawn up-b "$T/pm-owner" "$PM" --bind "$LAN_B:41000" --protocol upnp --lifetime 60 --hold 12
OWNER=$LAB_PID
wait "$R1"
check "natpmp: a port the router's rules forbid: failed refused (result code 2)" \
    "$(grep -q '^failed refused proto=natpmp code=2 ' "$T/pm-ref-natpmp"; echo $?)" "$(cat "$T/pm-ref-natpmp")"
wait "$R2"
check "upnp: a port the router's rules forbid: failed refused (error 606)" \
    "$(grep -q '^failed refused proto=upnp code=606 ' "$T/pm-ref-upnp"; echo $?)" "$(cat "$T/pm-ref-upnp")"
if wait_line "$T/pm-owner" "^mapped upnp $WAN:41000 " 6; then
    ok "$LAN_B holds $WAN:41000"
    lab_spawn up "$T/pm-cf-upnp" "$PM" --bind "$LAN:41001" --external 41000 --exact --protocol upnp --hold 0 --release-wait 1
    C1=$LAB_PID
    lab_spawn up "$T/pm-cf-natpmp" "$PM" --bind "$LAN:41002" --external 41000 --exact --protocol natpmp --hold 0
    C2=$LAB_PID
    lab_spawn up "$T/pm-alt-upnp" "$PM" --bind "$LAN:41003" --external 41000 --protocol upnp --hold 3
    C3=$LAB_PID
    # From a third host: miniupnpd lets one LAN address's new mapping take
    # over that address's other mappings of the same external port.
    lab_spawn up-c "$T/pm-alt-natpmp" "$PM" --bind "$LAN_C:41004" --external 41000 --protocol natpmp --hold 3
    C4=$LAB_PID
    wait "$C1"
    check "upnp: the external port of another host's mapping, exactly: failed conflict (error 718)" \
        "$(grep -q '^failed conflict proto=upnp code=718 ' "$T/pm-cf-upnp"; echo $?)" "$(cat "$T/pm-cf-upnp")"
    wait "$C2"
    check "natpmp: the same: failed conflict (the router offered another port, given back)" \
        "$(grep -q '^failed conflict proto=natpmp ' "$T/pm-cf-natpmp" && grep -q '^released ok ' "$T/pm-cf-natpmp"; echo $?)" \
        "$(cat "$T/pm-cf-natpmp")"
    for proto in upnp natpmp; do
        out="$T/pm-alt-$proto"
        wait_line "$out" '^(mapped|failed) ' 5
        alt=$(sed -n "s/^mapped $proto $WAN:\([0-9]*\) .*/\1/p" "$out")
        check "$proto: not exactly: another external port ($alt)" "$([ -n "$alt" ] && [ "$alt" != 41000 ]; echo $?)" \
            "$(cat "$out")"
        if [ -n "$alt" ]; then
            lport=$([ $proto = upnp ] && echo "$LAN:41003" || echo "$LAN_C:41004")
            send_pub $((${lport#*:} + 100)) "$WAN:$alt" "alt-$proto"
            check "$proto: a datagram to $WAN:$alt reaches $lport" \
                "$(wait_line "$out" "^recv $PUB:$((${lport#*:} + 100)) alt-$proto\$" 2; echo $?)" "$(cat "$out")"
        fi
    done
    wait "$C3" "$C4"
else
    bad "$LAN_B holds $WAN:41000" "$(cat "$T/pm-owner")"
fi
kill "$OWNER" 2>/dev/null
wait "$OWNER" 2>/dev/null

# ---- which protocol ------------------------------------------------------------------------------------
lab_exec up "$PM" --bind "$LAN:40050" --hold 0 >"$T/pm-any" 2>&1
check "both offered: NAT-PMP is used first" "$(grep -q "^mapped natpmp $WAN:40050 " "$T/pm-any"; echo $?)" \
    "$(cat "$T/pm-any")"
wait "$NONE_PID"
out="$T/pm-none"
took=$(field "$out" took-ms)
check "a home without NAT-PMP or UPnP: failed no-router, in ${took} ms (< 3000)" \
    "$(grep -q '^failed no-router proto=none ' "$out" && [ -n "$took" ] && [ "$took" -lt 3000 ]; echo $?)" "$(cat "$out")"

if start_igd natpmp; then
    lab_exec up "$PM" --bind "$LAN:40060" --hold 0 >"$T/pm-only-natpmp-any" 2>&1
    check "a NAT-PMP-only router: found" "$(grep -q "^mapped natpmp $WAN:40060 " "$T/pm-only-natpmp-any"; echo $?)" \
        "$(cat "$T/pm-only-natpmp-any")"
    lab_exec up "$PM" --bind "$LAN:40061" --protocol upnp --hold 0 >"$T/pm-only-natpmp-upnp" 2>&1
    check "a NAT-PMP-only router asked by UPnP: failed no-router" \
        "$(grep -q '^failed no-router ' "$T/pm-only-natpmp-upnp"; echo $?)" "$(cat "$T/pm-only-natpmp-upnp")"
else
    bad "miniupnpd starts with NAT-PMP only"
fi
if start_igd upnp; then
    lab_exec up "$PM" --bind "$LAN:40070" --hold 0 >"$T/pm-only-upnp-any" 2>&1
    check "a UPnP-only router: found after NAT-PMP is not answered" \
        "$(grep -q "^mapped upnp $WAN:40070 " "$T/pm-only-upnp-any"; echo $?)" "$(cat "$T/pm-only-upnp-any")"
    echo "     $(grep '^mapped' "$T/pm-only-upnp-any")"
    lab_exec up "$PM" --bind "$LAN:40071" --protocol natpmp --hold 0 >"$T/pm-only-upnp-natpmp" 2>&1
    check "a UPnP-only router asked by NAT-PMP: failed no-router" \
        "$(grep -q '^failed no-router ' "$T/pm-only-upnp-natpmp"; echo $?)" "$(cat "$T/pm-only-upnp-natpmp")"
else
    bad "miniupnpd starts with UPnP only"
fi
finish
