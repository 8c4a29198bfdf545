# igd.sh - miniupnpd (Debian's miniupnpd-nftables: UPnP IGD and NAT-PMP) on
# a lab home router, for tests that need a router which maps ports. Sourced
# after lab.sh; docs/nat.md 4.6 explains the set-up:
#
#   igd_start ROUTER MODE STUN ALT [LINE...]
#       (re)starts miniupnpd on ROUTER (a home's "NAME-gw") offering MODE
#       (both, natpmp or upnp). miniupnpd counts the lab's documentation
#       ranges as reserved and maps only once its own STUN test finds nothing
#       filtering in front of it: a STUN server (tests/tools/pl_stun server
#       --primary STUN:3478 --alternate ALT:3479) must run, and the router's
#       input chain is opened to its answers. LINEs are added to the
#       configuration. Its rules go into a table of their own (pl_igd); the
#       lab's forward chain already accepts what a DNAT let in.
#   igd_stop ROUTER        stops it (by the pid in its pid file)
#   igd_rules ROUTER       the DNAT rules it holds now (nft's listing)
#   igd_stop_all           stops every miniupnpd igd_start started
#
# miniupnpd runs as a daemon (no -d): with -d it logs every step to stderr,
# so slowly that refusing a NAT-PMP request takes minutes.
MINIUPNPD=${MINIUPNPD:-/usr/sbin/miniupnpd}
declare -A IGD_PID=()
declare -A IGD_OPENED=()

igd_start() {
    local router=$1 mode=$2 stun=$3 alt=$4
    shift 4
    local natpmp=yes upnp=yes
    [ "$mode" = natpmp ] && upnp=no
    [ "$mode" = upnp ] && natpmp=no
    local lan=${LAB_HOST_ADDR[${router%-gw}]:-}
    [ -n "$lan" ] || { LAB_ERROR="igd: no home behind '$router'"; return 1; }
    local lan_net=${lan%.*}.0/24 gw_lan=${lan%.*}.1 dir="$LAB_DIR/igd-$router"
    igd_stop "$router"
    mkdir -p "$dir"
    rm -f "$dir/leases"
    if [ -z "${IGD_OPENED[$router]:-}" ]; then
        lab_exec "$router" nft insert rule inet pl_filter input iifname wan ip saddr "{ $stun, $alt }" \
            udp sport "{ 3478, 3479 }" accept || return 1
        IGD_OPENED[$router]=1
    fi
    lab_exec "$router" nft delete table inet pl_igd 2>/dev/null
    cat >"$dir/rules.nft" <<EOF
table inet pl_igd {
    chain forward { type filter hook forward priority filter; policy accept; jump igd_forward; }
    chain igd_forward { }
    chain prerouting { type nat hook prerouting priority dstnat; policy accept; jump igd_prerouting; }
    chain postrouting { type nat hook postrouting priority srcnat; policy accept; jump igd_postrouting; }
    chain igd_prerouting { }
    chain igd_postrouting { }
}
EOF
    lab_exec "$router" nft -f "$dir/rules.nft" || return 1
    {
        cat <<EOF
ext_ifname=wan
listening_ip=lan
http_port=0
enable_natpmp=$natpmp
enable_upnp=$upnp
ext_perform_stun=yes
ext_stun_host=$stun
ext_stun_port=3478
ipv6_disable=yes
secure_mode=yes
system_uptime=no
min_lifetime=1
max_lifetime=86400
lease_file=$dir/leases
upnp_table_name=pl_igd
upnp_nat_table_name=pl_igd
upnp_forward_chain=igd_forward
upnp_nat_chain=igd_prerouting
upnp_nat_postrouting_chain=igd_postrouting
uuid=$(cat /proc/sys/kernel/random/uuid)
EOF
        local line
        for line in "$@"; do echo "$line"; done
        echo "allow 1024-65535 $lan_net 1024-65535"
        echo "deny 0-65535 0.0.0.0/0 0-65535"
    } >"$dir/miniupnpd.conf"
    lab_exec "$router" "$MINIUPNPD" -f "$dir/miniupnpd.conf" -P "$dir/pid" || return 1
    local ready=0
    for _ in $(seq 100); do
        ready=1
        [ "$natpmp" = yes ] && ! lab_exec "$router" ss -Hlun | grep -q "$gw_lan:5351" && ready=0
        [ "$upnp" = yes ] && ! lab_exec "$router" ss -Hltn | grep -q '%lan:' && ready=0
        [ $ready = 1 ] && [ -s "$dir/pid" ] && break
        sleep 0.05
    done
    IGD_PID[$router]=$(cat "$dir/pid" 2>/dev/null)
    [ $ready = 1 ] && [ -n "${IGD_PID[$router]}" ] || { LAB_ERROR="igd: miniupnpd did not come up on $router"; return 1; }
}

igd_stop() {
    local router=$1 pid=${IGD_PID[$1]:-}
    [ -n "$pid" ] || return 0
    kill "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$pid" 2>/dev/null
    IGD_PID[$router]=
    rm -f "$LAB_DIR/igd-$router/pid"
}

igd_stop_all() {
    local r
    for r in "${!IGD_PID[@]}"; do igd_stop "$r"; done
}

igd_rules() { lab_exec "$1" nft list chain inet pl_igd igd_prerouting 2>&1; }
