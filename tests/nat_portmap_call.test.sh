#!/usr/bin/env bash
# nat_portmap_call.test.sh - the port-mapped candidate in parleyd, against a
# real home router (miniupnpd, Debian's miniupnpd-nftables) in the NAT lab
# (tests/netlab/lab.sh). hana lives behind a port-restricted cone whose
# router runs miniupnpd; sam lives behind a symmetric NAT. A symmetric
# caller cannot punch through a filtering NAT (its NAT gives every
# destination a new port, so the callee's checks go to the wrong one), so:
#  - with --no-portmap, hana publishes no port-mapped candidate and sam's
#    call to her is relayed by the supernode;
#  - with port mapping (the default) over NAT-PMP, hana's daemon asks the
#    router, publishes the external address as a port-mapped candidate
#    (parley lookup shows it, parley status shows the lease), and the same
#    call goes direct to that address; hana's call to sam goes direct too;
#  - the same over UPnP IGD (miniupnpd with NAT-PMP off);
#  - when hana's daemon stops, the router's forwarding rule is gone;
#  - sofia's router is symmetric and maps ports: the address her supernode
#    sees has a port of its own, so only the published port-mapped
#    candidate tells sam where to go, and his call to her goes direct.
# Needs root, nftables and miniupnpd; without them it fails (CI runs it as root).
set -u
B=${PARLEY_BUILD:-build/release}
B=$(cd "$B" 2>/dev/null && pwd || echo "$B")
CA="$B/parley-ca"
PL="$B/parley"
PD="$B/parleyd"
STUN="$B/tests/tools/pl_stun"
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/netlab/lab.sh"
. "$HERE/netlab/igd.sh"
passed=0
failed=0
CA_PID=
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; shift; for l in "$@"; do echo "     $l"; done; }
expect() { if printf '%s' "$3" | grep -qE -- "$2"; then ok "$1"; else bad "$1" "no /$2/ in: $3"; fi; }
wait_line() { for _ in $(seq "${3:-200}"); do grep -qE "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done; return 1; }
jfield() { printf '%s' "$2" | grep -o "\"$1\":\"[^\"]*\"" | tail -1 | cut -d'"' -f4; }
num() { printf '%s' "$2" | grep -o "\"$1\":[-0-9.e]*" | tail -1 | cut -d: -f2; }
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }
finish() {
    [ -n "$CA_PID" ] && kill "$CA_PID" 2>/dev/null && wait "$CA_PID" 2>/dev/null
    igd_stop_all
    local prefix=${LAB_PREFIX:-}
    [ -n "${KEEP:-}" ] && [ -n "${LAB_DIR:-}" ] && cp -r "$LAB_DIR" /tmp/nat_portmap_call.kept
    lab_down
    if [ -n "$prefix" ]; then
        left=$(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$prefix" || true)
        [ -z "$left" ] && ok "no namespace of the lab is left" || bad "no namespace of the lab is left" "$left"
    fi
    echo "PL-TEST-SUMMARY $passed $failed"
    exit 0
}

for tool in "$CA" "$PL" "$PD" "$STUN"; do [ -x "$tool" ] || { bad "$tool is built"; finish; }; done
[ -x "$MINIUPNPD" ] || { bad "miniupnpd is installed" "scripts/setup.sh installs miniupnpd-nftables"; finish; }
lab_init || { bad "the lab cannot run here: $LAB_ERROR"; finish; }
T=$LAB_DIR
chmod 755 "$T"

# ---- identities, registered on loopback before the lab exists -------------------------------------
FP=$("$CA" init --dir "$T/ca") || { bad "ca init"; finish; }
"$CA" serve --dir "$T/ca" --listen 127.0.0.1:0 --rate 1000 --burst 1000 >"$T/ca.out" 2>>"$T/ca.log" &
CA_PID=$!
wait_line "$T/ca.out" '^listening' || { bad "ca start"; finish; }
CA_ADDR=$(awk '/^listening/{print $2}' "$T/ca.out")
for u in sn1 hana sam sofia; do
    "$PL" --home "$T/$u" keygen >/dev/null && "$PL" --home "$T/$u" register "$u" --ca "$CA_ADDR" --ca-key "$FP" >/dev/null ||
        { bad "register $u"; finish; }
done
kill "$CA_PID"; wait "$CA_PID" 2>/dev/null; CA_PID=
key_of() { "$PL" --home "$T/$1" --json show | sed -n 's/.*"fingerprint":"\([0-9a-f]*\)".*/\1/p'; }

# ---- the lab --------------------------------------------------------------------------------------
P=203.0.113.10
A=198.51.100.10
build() {
    lab_internet || return 1
    lab_public sn1 $P $A || return 1
    lab_home home port-restricted || return 1
    lab_home sym symmetric || return 1
    lab_home symh symmetric || return 1
}
build || { bad "the lab is built" "$LAB_ERROR"; finish; }
WAN=$(lab_wan home)
LAN=$(lab_addr home)
WAN3=$(lab_wan symh)
LAN3=$(lab_addr symh)
ok "lab: a supernode at $P; hana's home (port-restricted cone, router $WAN), sam's and sofia's (symmetric NATs)"

# ---- the home routers: miniupnpd (tests/netlab/igd.sh; docs/nat.md 4.6) -------------------------------
lab_spawn sn1 "$T/stun.out" "$STUN" server --primary $P:3478 --alternate $A:3479
wait_line "$T/stun.out" '^ready' 100
rules() { igd_rules home-gw; }
rule_gone() {
    if rules | grep -q "dnat ip to $LAN:$HANA_PORT"; then bad "and the router's rule is gone" "$(rules)"
    else ok "and the router's rule for $HANA_PORT is gone"; fi
}
igd_start home-gw both $P $A || { bad "miniupnpd starts on hana's router" "$LAB_ERROR"; finish; }
# The lab's symmetric NAT (masquerade fully-random) also renumbers the
# router's own packets, which a real router does not do: miniupnpd's STUN
# test would see a NAT in front of it and refuse to map. Its own address is
# left as it is.
lab_exec symh-gw nft insert rule ip pl_nat postrouting oifname wan ip saddr "$(lab_wan symh)" accept
igd_start symh-gw both $P $A || { bad "miniupnpd starts on sofia's router" "$LAB_ERROR"; finish; }
ok "miniupnpd runs on hana's and sofia's routers (NAT-PMP and UPnP IGD)"

# ---- the supernode and sam ------------------------------------------------------------------------------
echo "$(key_of sn1) $P:7400" >"$T/sn.list"
start() { # HOST USER LOG ARGS...: sets PID_<USER>
    local host=$1 u=$2 log=$3
    shift 3
    lab_spawn "$host" "$log" "$PD" --home "$T/$u" "$@"
    eval "PID_$u=$LAB_PID"
    wait_line "$log" '^listening' || { bad "$u starts" "$(tail -3 "$log")"; return 1; }
}
start sn1 sn1 "$T/sn1.log" --role supernode --listen $P:7400 --alt-listen $A:7401 --bootstrap-file "$T/sn.list" || finish
start sym sam "$T/sam.log" --bootstrap-file "$T/sn.list" --auto-answer --answer-from tone:550 || finish
wait_line "$T/sam.log" 'record published' 200 || { bad "sam attaches and publishes" "$(tail -3 "$T/sam.log")"; finish; }
wait_line "$T/sam.log" 'NAT discovery' 100
expect "sam is behind a symmetric NAT (address-and-port-dependent mapping)" 'mapping address-and-port-dependent' \
    "$(grep 'NAT discovery' "$T/sam.log")"
expect "sam's router offers no mapping: his daemon says so and goes on" 'port mapping: none' "$(cat "$T/sam.log")"

# start_hana RUN ARGS...: hana's daemon in her home, log $T/hana-RUN.log; sets HANA_PORT.
start_hana() {
    local run=$1
    shift
    HLOG="$T/hana-$run.log"
    start home hana "$HLOG" --bootstrap-file "$T/sn.list" --auto-answer --answer-from tone:660 "$@" || return 1
    HANA_PORT=$(awk '/^listening/{split($2, a, ":"); print a[2]; exit}' "$HLOG")
    wait_line "$HLOG" 'record published' 200 || { bad "hana attaches and publishes ($run)" "$(tail -3 "$HLOG")"; return 1; }
}
stop_hana() {
    "$PL" --home "$T/hana" stop >/dev/null 2>&1
    for _ in $(seq 100); do kill -0 "$PID_hana" 2>/dev/null || break; sleep 0.05; done
    ! kill -0 "$PID_hana" 2>/dev/null
}
# call FROM TO: a 2 s call with tones; prints the caller's final JSON.
call() { timeout 30 "$PL" --home "$T/$1" --json call "$2" --tone 440 --duration 2 2>&1; }
# callee_path USER: the path of the user's last call, kind/transport/via.
callee_path() {
    local j
    j=$("$PL" --home "$T/$1" --json calls 2>/dev/null)
    echo "$(jfield kind "$j")/$(jfield transport "$j")/$(jfield via "$j")"
}
# lookup_has USER TYPE: sam looks the user up until a candidate of TYPE shows (5 s).
lookup_until() {
    local out
    for _ in $(seq 25); do
        out=$("$PL" --home "$T/sam" lookup "$1" 2>&1)
        printf '%s' "$out" | grep -qE "$2" && break
        sleep 0.2
    done
    printf '%s' "$out"
}

# ---- 1. without the mapping: relayed -------------------------------------------------------------------
start_hana nomap --no-portmap || finish
out=$("$PL" --home "$T/hana" status 2>&1)
expect "--no-portmap: status says port mapping is off" '^portmap +off: --no-portmap' "$out"
out=$(lookup_until hana 'server-reflexive')
expect "hana's record has her server-reflexive address, no port-mapped one" "reachable +$WAN:$HANA_PORT udp \(server-reflexive\)" "$out"
j=$(call sam hana)
rc=$?
kind=$(jfield kind "$j")
expect "without the mapping, sam (symmetric) -> hana (port-restricted): answered, relayed by the supernode (exit $rc)" \
    "^0 relayed/udp/$P:7400\$" "$rc $kind/$(jfield transport "$j")/$(jfield via "$j")"
echo "     hana's side: $(callee_path hana); packets received: sam $(num packets_received "$j")"
stop_hana || bad "hana's daemon stops"

# ---- 2. NAT-PMP: mapped, published, direct ------------------------------------------------------------
t0=$(date +%s%N)
start_hana natpmp || finish
wait_line "$HLOG" 'port mapping: natpmp maps' 100
mapped_line=$(grep 'port mapping: natpmp maps' "$HLOG")
expect "hana's daemon asks the router by NAT-PMP and publishes $WAN:$HANA_PORT" \
    "natpmp maps $WAN:$HANA_PORT to our UDP port $HANA_PORT, lease 7200 s \([0-9]+ ms\); published as a port-mapped candidate" \
    "$mapped_line"
echo "     $(printf '%s' "$mapped_line" | sed 's/^[^ ]* parleyd: //')"
expect "the router holds the forwarding rule $WAN:$HANA_PORT -> $LAN:$HANA_PORT" "dport $HANA_PORT dnat ip to $LAN:$HANA_PORT" "$(rules)"
out=$("$PL" --home "$T/hana" status 2>&1)
expect "parley status shows the mapping: protocol, external address, lease" \
    "^portmap +natpmp $WAN:$HANA_PORT, lease 7200 s \([0-9]+ s left\), published" "$out"
out=$(lookup_until hana 'port-mapped')
published_ms=$(ms_since "$t0")
expect "sam's look-up of hana shows the port-mapped candidate (start to look-up: $published_ms ms)" \
    "reachable +$WAN:$HANA_PORT udp \(port-mapped\)" "$out"
j=$(call sam hana)
rc=$?
expect "with the mapping, the same call sam -> hana goes direct to the mapped address (exit $rc)" \
    "^0 direct/udp/$WAN:$HANA_PORT\$" "$rc $(jfield kind "$j")/$(jfield transport "$j")/$(jfield via "$j")"
echo "     hana's side: $(callee_path hana); packets received: sam $(num packets_received "$j")"
j=$(call hana sam)
rc=$?
expect "and hana -> sam goes direct too: sam's checks reach her through the mapping (exit $rc)" \
    "^0 direct/udp/" "$rc $(jfield kind "$j")/$(jfield transport "$j")/$(jfield via "$j")"
t1=$(date +%s%N)
stop_hana || bad "hana's daemon stops"
stop_ms=$(ms_since "$t1")
expect "on a clean stop hana's daemon releases the mapping (stop took $stop_ms ms)" 'port mapping: released \(ok' "$(cat "$HLOG")"
rule_gone

# ---- 3. UPnP IGD only ------------------------------------------------------------------------------
igd_start home-gw upnp $P $A || { bad "miniupnpd restarts with UPnP only" "$LAB_ERROR"; finish; }
start_hana upnp || finish
wait_line "$HLOG" 'port mapping: (upnp maps|none)' 200
mapped_line=$(grep 'port mapping: upnp maps' "$HLOG")
expect "UPnP only: hana's daemon finds the IGD and publishes $WAN:$HANA_PORT" \
    "upnp maps $WAN:$HANA_PORT to our UDP port $HANA_PORT, lease 7200 s \([0-9]+ ms\); published" "$mapped_line"
echo "     $(printf '%s' "$mapped_line" | sed 's/^[^ ]* parleyd: //')"
out=$(lookup_until hana 'port-mapped')
expect "sam sees the port-mapped candidate" "reachable +$WAN:$HANA_PORT udp \(port-mapped\)" "$out"
j=$(call sam hana)
rc=$?
expect "sam -> hana goes direct to the UPnP mapping (exit $rc)" \
    "^0 direct/udp/$WAN:$HANA_PORT\$" "$rc $(jfield kind "$j")/$(jfield transport "$j")/$(jfield via "$j")"
expect "the router holds the UPnP rule" "dport $HANA_PORT dnat ip to $LAN:$HANA_PORT" "$(rules)"
stop_hana || bad "hana's daemon stops"
expect "on stop the UPnP mapping is released" 'port mapping: released \(ok' "$(cat "$HLOG")"
rule_gone

# ---- 4. a symmetric home router that maps ports ------------------------------------------------------
# Behind a symmetric NAT the address the supernode sees has a port of its
# own (one per destination), so only the published port-mapped candidate
# tells a caller where the router forwards: sam (symmetric too) reaches
# sofia directly there.
SLOG="$T/sofia.log"
start symh sofia "$SLOG" --bootstrap-file "$T/sn.list" --auto-answer --answer-from tone:660 || finish
SOFIA_PORT=$(awk '/^listening/{split($2, a, ":"); print a[2]; exit}' "$SLOG")
wait_line "$SLOG" 'record published' 200 || { bad "sofia attaches and publishes" "$(tail -3 "$SLOG")"; finish; }
wait_line "$SLOG" 'port mapping: natpmp maps' 100
expect "sofia's daemon gets $WAN3:$SOFIA_PORT from her symmetric router" "natpmp maps $WAN3:$SOFIA_PORT to our UDP port" \
    "$(grep 'port mapping' "$SLOG")"
out=$(lookup_until sofia 'port-mapped')
expect "her record: the port-mapped candidate" "reachable +$WAN3:$SOFIA_PORT udp \(port-mapped\)" "$out"
srflx=$(printf '%s' "$out" | sed -n 's/^reachable *\([0-9.:]*\) udp (server-reflexive)/\1/p')
expect "and a server-reflexive one on another port ($srflx)" "^$WAN3:[0-9]+\$" "$(printf '%s' "$srflx" | grep -v ":$SOFIA_PORT\$")"
j=$(call sam sofia)
rc=$?
expect "sam (symmetric) -> sofia (symmetric, mapped): direct to the mapped address (exit $rc)" \
    "^0 direct/udp/$WAN3:$SOFIA_PORT\$" "$rc $(jfield kind "$j")/$(jfield transport "$j")/$(jfield via "$j")"
"$PL" --home "$T/sofia" stop >/dev/null 2>&1
for _ in $(seq 100); do kill -0 "$PID_sofia" 2>/dev/null || break; sleep 0.05; done
expect "on stop sofia's mapping is released" 'port mapping: released \(ok' "$(cat "$SLOG")"
finish
