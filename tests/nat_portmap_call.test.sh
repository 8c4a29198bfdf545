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
#    call goes direct to that address; hana's call to sam goes direct too
#    (her offer carries the candidate);
#  - the same over UPnP IGD (miniupnpd with NAT-PMP off);
#  - when hana's daemon stops, the router's forwarding rule is gone.
# Needs root, nftables and miniupnpd; without them it fails (CI runs it as root).
set -u
B=${PARLEY_BUILD:-build/release}
B=$(cd "$B" 2>/dev/null && pwd || echo "$B")
CA="$B/parley-ca"
PL="$B/parley"
PD="$B/parleyd"
STUN="$B/tests/tools/pl_stun"
MINIUPNPD=${MINIUPNPD:-/usr/sbin/miniupnpd}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/netlab/lab.sh"
passed=0
failed=0
CA_PID=
IGD_PID=
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; shift; for l in "$@"; do echo "     $l"; done; }
expect() { if printf '%s' "$3" | grep -qE -- "$2"; then ok "$1"; else bad "$1" "no /$2/ in: $3"; fi; }
wait_line() { for _ in $(seq "${3:-200}"); do grep -qE "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done; return 1; }
jfield() { printf '%s' "$2" | grep -o "\"$1\":\"[^\"]*\"" | tail -1 | cut -d'"' -f4; }
num() { printf '%s' "$2" | grep -o "\"$1\":[-0-9.e]*" | tail -1 | cut -d: -f2; }
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }
finish() {
    [ -n "$CA_PID" ] && kill "$CA_PID" 2>/dev/null && wait "$CA_PID" 2>/dev/null
    stop_igd
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
for u in sn1 hana sam; do
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
}
build || { bad "the lab is built" "$LAB_ERROR"; finish; }
WAN=$(lab_wan home)
LAN=$(lab_addr home)
LAN_NET=${LAN%.*}.0/24
ok "lab: a supernode at $P; hana's home (port-restricted cone, router $WAN), sam's home (symmetric NAT)"

# ---- the home router: miniupnpd (set up as in tests/portmap.test.sh, docs/nat.md 4.6) ------------------
# miniupnpd counts the lab's documentation ranges as reserved and maps only
# once its own STUN test (against pl_stun) finds nothing filtering in front.
lab_spawn sn1 "$T/stun.out" "$STUN" server --primary $P:3478 --alternate $A:3479
wait_line "$T/stun.out" '^ready' 100
cat >"$T/igd.nft" <<EOF
table inet pl_igd {
    chain forward { type filter hook forward priority filter; policy accept; jump igd_forward; }
    chain igd_forward { }
    chain prerouting { type nat hook prerouting priority dstnat; policy accept; jump igd_prerouting; }
    chain postrouting { type nat hook postrouting priority srcnat; policy accept; jump igd_postrouting; }
    chain igd_prerouting { }
    chain igd_postrouting { }
}
EOF
lab_exec home-gw nft insert rule inet pl_filter input iifname wan ip saddr "{ $P, $A }" udp sport "{ 3478, 3479 }" accept
GW_LAN=${LAN%.*}.1
start_igd() { # both | upnp
    local natpmp=yes
    [ "$1" = upnp ] && natpmp=no
    stop_igd
    rm -f "$T/igd.leases"
    lab_exec home-gw nft delete table inet pl_igd 2>/dev/null
    lab_exec home-gw nft -f "$T/igd.nft" || return 1
    cat >"$T/igd.conf" <<EOF
ext_ifname=wan
listening_ip=lan
http_port=0
enable_natpmp=$natpmp
enable_upnp=yes
ext_perform_stun=yes
ext_stun_host=$P
ext_stun_port=3478
ipv6_disable=yes
secure_mode=yes
system_uptime=no
lease_file=$T/igd.leases
upnp_table_name=pl_igd
upnp_nat_table_name=pl_igd
upnp_forward_chain=igd_forward
upnp_nat_chain=igd_prerouting
upnp_nat_postrouting_chain=igd_postrouting
uuid=3c1f0a55-6d2e-4a8b-9f10-7e6d5c4b3a29
allow 1024-65535 $LAN_NET 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
EOF
    lab_exec home-gw "$MINIUPNPD" -f "$T/igd.conf" -P "$T/igd.pid" || return 1
    local ready
    for _ in $(seq 100); do
        ready=1
        [ "$natpmp" = yes ] && ! lab_exec home-gw ss -Hlun | grep -q "$GW_LAN:5351" && ready=0
        ! lab_exec home-gw ss -Hltn | grep -q '%lan:' && ready=0
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
    IGD_PID=
    rm -f "$T/igd.pid"
}
rules() { lab_exec home-gw nft list chain inet pl_igd igd_prerouting 2>&1; }
rule_gone() {
    if rules | grep -q "dnat ip to $LAN:$HANA_PORT"; then bad "and the router's rule is gone" "$(rules)"
    else ok "and the router's rule for $HANA_PORT is gone"; fi
}
start_igd both || { bad "miniupnpd starts on hana's router" "$(lab_exec home-gw ss -Hlun 2>&1)"; finish; }
ok "miniupnpd runs on hana's router (NAT-PMP and UPnP IGD)"

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
expect "and hana -> sam goes direct too: her offer carries the mapped candidate (exit $rc)" \
    "^0 direct/udp/" "$rc $(jfield kind "$j")/$(jfield transport "$j")/$(jfield via "$j")"
t1=$(date +%s%N)
stop_hana || bad "hana's daemon stops"
stop_ms=$(ms_since "$t1")
expect "on a clean stop hana's daemon releases the mapping (stop took $stop_ms ms)" 'port mapping: released \(ok' "$(cat "$HLOG")"
rule_gone

# ---- 3. UPnP IGD only ------------------------------------------------------------------------------
start_igd upnp || { bad "miniupnpd restarts with UPnP only"; finish; }
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
finish
