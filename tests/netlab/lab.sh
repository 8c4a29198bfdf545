# lab.sh - a network lab of namespaces, veth links and nftables NATs.
#
# Sourced by test scripts (bash). It builds an "internet" and homes behind
# real Linux NATs whose behaviour is chosen per home, runs programs inside
# them and tears everything down again. Topology, rules and the NAT types
# are described in docs/nat.md; in short:
#
#   lab_init                    start a lab: unique prefix, trap-based teardown
#   lab_internet                the internet: a bridge and router for the
#                               documentation ranges 203.0.113.0/24,
#                               198.51.100.0/24 and 192.0.2.0/24
#   lab_public HOST ADDR...     a host with one or more public addresses
#   lab_home NAME TYPE [WAN]    a home router NAME-gw with public address WAN
#                               (allocated when omitted) and NAT TYPE, and a
#                               LAN host NAME behind it
#   lab_lan_host HOME HOST      one more LAN host behind HOME's router
#   lab_exec HOST CMD...        runs CMD inside HOST
#   lab_spawn HOST OUT CMD...   starts CMD inside HOST in the background,
#                               output to file OUT; sets LAB_PID (call it
#                               directly, not in $(...)); lab_down kills it
#   lab_addr HOST               the host's (first) address
#   lab_wan HOME                the home's outermost public address
#   lab_ns HOST                 the namespace name behind HOST
#   lab_types                   the NAT types lab_home knows
#   lab_namespaces              the namespaces this lab created (and still has)
#   lab_down                    kills what lab_spawn started and deletes what
#                               the lab created, by name; safe to call twice
#
# Every function returns non-zero and sets LAB_ERROR when it fails. Nothing
# in the lab can reach an address outside the documentation ranges, RFC 1918
# and 100.64.0.0/10: no namespace has a route to anything else.
#
# NAT types (TYPE), in RFC 4787 terms (mapping / filtering):
#   none             no NAT: the host itself holds a public address
#   full-cone        endpoint-independent mapping, endpoint-independent filtering
#   restricted       endpoint-independent mapping, address-dependent filtering
#   port-restricted  endpoint-independent mapping, address-and-port-dependent
#                    filtering (plain masquerade)
#   symmetric        address-and-port-dependent mapping and filtering
#                    (masquerade fully-random)
#   udp-blocked      no UDP leaves the home; TCP goes out through masquerade
#   double           carrier-grade NAT (100.64.0.0/10) in front of the home
#                    NAT; both layers port-restricted
# The three endpoint-independent types take a "-hairpin" suffix
# (full-cone-hairpin, restricted-hairpin, port-restricted-hairpin): LAN hosts
# then reach each other through the home's public address. No other type
# hairpins.

# State, valid from the moment this file is sourced so that lab_down is
# always safe to call (scripts run with set -u).
LAB_PREFIX=""
LAB_DIR=""
LAB_ERROR=""
LAB_PID=""
LAB_NS=()
LAB_PIDS=()

LAB_TYPES="none full-cone full-cone-hairpin restricted restricted-hairpin port-restricted port-restricted-hairpin symmetric udp-blocked double"
LAB_NAT_TIMEOUT=${LAB_NAT_TIMEOUT:-300s}

lab_types() { echo "$LAB_TYPES"; }

_lab_fail() {
    LAB_ERROR="$*"
    echo "lab: $*" >&2
    return 1
}

# Runs a command, and on failure records it and its output in LAB_ERROR.
_lab_run() {
    local out
    if ! out=$("$@" 2>&1); then
        _lab_fail "failed: $* -- $out"
        return 1
    fi
}

lab_init() {
    LAB_ERROR=""
    if [ "$(id -u)" -ne 0 ]; then _lab_fail "needs root (network namespaces and nftables)"; return 1; fi
    local tool
    for tool in ip nft; do
        command -v "$tool" >/dev/null 2>&1 || { _lab_fail "needs '$tool' (scripts/setup.sh installs iproute2 and nftables)"; return 1; }
    done
    # A random prefix: parallel runs and other engineers never collide.
    LAB_PREFIX="pl$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')-"
    LAB_NS=()
    LAB_PIDS=()
    declare -gA LAB_HOST_NS=() LAB_HOST_ADDR=() LAB_HOME_WAN=() LAB_HOME_TYPE=() LAB_HOME_IDX=() LAB_PORTS=()
    LAB_HOMES=0
    LAB_BRIDGE_PORTS=0
    LAB_DIR=$(mktemp -d "/tmp/${LAB_PREFIX}XXXXXX")
    trap lab_down EXIT
    trap 'lab_down; exit 130' INT
    trap 'lab_down; exit 143' TERM
    if ! ip netns add "${LAB_PREFIX}probe" 2>/dev/null; then
        rm -rf "$LAB_DIR"
        _lab_fail "cannot create network namespaces"
        return 1
    fi
    ip netns del "${LAB_PREFIX}probe"
    return 0
}

lab_ns() { echo "${LAB_HOST_NS[$1]}"; }
lab_addr() { echo "${LAB_HOST_ADDR[$1]}"; }
lab_wan() { echo "${LAB_HOME_WAN[$1]}"; }
lab_exec() {
    local ns=${LAB_HOST_NS[$1]:-}
    [ -n "$ns" ] || { _lab_fail "no host '$1'"; return 1; }
    shift
    ip netns exec "$ns" "$@"
}
lab_spawn() {
    local host=$1 out=$2
    shift 2
    local ns=${LAB_HOST_NS[$host]:-}
    [ -n "$ns" ] || { _lab_fail "no host '$host'"; return 1; }
    ip netns exec "$ns" "$@" >"$out" 2>&1 &
    LAB_PID=$!
    LAB_PIDS+=("$LAB_PID")
}

lab_namespaces() {
    local ns
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
        case "$ns" in "${LAB_PREFIX:-no-lab-}"*) echo "$ns" ;; esac
    done
}

lab_down() {
    local pid ns i
    for pid in "${LAB_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${LAB_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    LAB_PIDS=()
    # The namespaces recorded, newest first, then any other carrying this
    # run's random prefix (one made in a subshell, whose record was lost).
    local all=()
    for ((i = ${#LAB_NS[@]} - 1; i >= 0; i--)); do all+=("${LAB_NS[$i]}"); done
    all+=($(lab_namespaces))
    for ns in "${all[@]}"; do
        # Anything still running inside (a command a test started with
        # lab_exec and left behind) would keep the namespace alive.
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null
    done
    LAB_NS=()
    [ -n "${LAB_DIR:-}" ] && rm -rf "$LAB_DIR"
    LAB_DIR=""
    return 0
}

# _lab_ns_add HOST: a namespace for HOST with loopback up and, like a
# fresh host, no forwarding.
_lab_ns_add() {
    local host=$1 ns="${LAB_PREFIX}$1"
    [ ${#ns} -le 32 ] || { _lab_fail "host name too long: $1"; return 1; }
    [ -z "${LAB_HOST_NS[$host]:-}" ] || { _lab_fail "host '$host' exists"; return 1; }
    _lab_run ip netns add "$ns" || return 1
    LAB_NS+=("$ns")
    LAB_HOST_NS[$host]=$ns
    _lab_run ip -n "$ns" link set lo up || return 1
    # Bridged frames must not go through the IP hooks (NOTES.md): with
    # br_netfilter on, a DNAT'ed frame can be sent back out the port it
    # came in on and lost.
    # (The bridge entries exist only while br_netfilter is loaded.)
    _lab_sysctl "$ns" net/bridge/bridge-nf-call-iptables=0 net/bridge/bridge-nf-call-ip6tables=0 \
        net/bridge/bridge-nf-call-arptables=0 2>/dev/null
    # The lab speaks IPv4 only for now: no link-local chatter, no DAD waits.
    _lab_sysctl "$ns" net/ipv6/conf/all/disable_ipv6=1 net/ipv6/conf/default/disable_ipv6=1 2>/dev/null
    return 0
}

# _lab_sysctl NS KEY=VALUE...: writes /proc/sys/KEY inside NS (KEY with
# slashes). No sysctl binary needed: a fresh Debian lacks procps.
_lab_sysctl() {
    local ns=$1
    shift
    ip netns exec "$ns" sh -c 'rc=0; for kv; do [ -e "/proc/sys/${kv%%=*}" ] && echo "${kv#*=}" >"/proc/sys/${kv%%=*}" || rc=1; done; exit $rc' _ "$@"
}

_lab_router_sysctls() {
    _lab_run _lab_sysctl "$1" net/ipv4/ip_forward=1 net/ipv4/conf/all/send_redirects=0 \
        net/ipv4/conf/default/send_redirects=0 net/ipv4/conf/all/rp_filter=0 net/ipv4/conf/default/rp_filter=0
}

# _lab_public_ok ADDR: one of the documentation ranges the internet carries.
_lab_public_ok() {
    case "$1" in
        203.0.113.*|198.51.100.*|192.0.2.*) return 0 ;;
    esac
    _lab_fail "$1 is not in 203.0.113.0/24, 198.51.100.0/24 or 192.0.2.0/24"
}

_lab_gateway() { echo "${1%.*}.1"; }

lab_internet() {
    [ -n "${LAB_PREFIX:-}" ] || { _lab_fail "lab_init first"; return 1; }
    _lab_ns_add inet || return 1
    local ns=${LAB_HOST_NS[inet]}
    _lab_run ip -n "$ns" link add br0 type bridge || return 1
    _lab_run ip -n "$ns" addr add 203.0.113.1/24 dev br0 || return 1
    _lab_run ip -n "$ns" addr add 198.51.100.1/24 dev br0 || return 1
    _lab_run ip -n "$ns" addr add 192.0.2.1/24 dev br0 || return 1
    _lab_run ip -n "$ns" link set br0 up || return 1
    _lab_router_sysctls "$ns" || return 1
    LAB_HOST_ADDR[inet]=203.0.113.1
}

# _lab_link NS1 IF1 NS2 IF2: a veth pair made directly inside the two
# namespaces, so no name is ever taken in the root namespace.
_lab_link() {
    _lab_run ip -n "$1" link add "$2" type veth peer name "$4" netns "$3" || return 1
    _lab_run ip -n "$1" link set "$2" up || return 1
    _lab_run ip -n "$3" link set "$4" up
}

# _lab_plug HOST IF: connects HOST's interface IF to the internet's bridge.
_lab_plug() {
    local inet=${LAB_HOST_NS[inet]:-}
    [ -n "$inet" ] || { _lab_fail "lab_internet first"; return 1; }
    LAB_BRIDGE_PORTS=$((LAB_BRIDGE_PORTS + 1))
    local port="p$LAB_BRIDGE_PORTS"
    _lab_link "${LAB_HOST_NS[$1]}" "$2" "$inet" "$port" || return 1
    _lab_run ip -n "$inet" link set "$port" master br0
}

lab_public() {
    local host=$1
    shift
    [ $# -ge 1 ] || { _lab_fail "lab_public HOST ADDR [ADDR...]"; return 1; }
    local a
    for a in "$@"; do _lab_public_ok "$a" || return 1; done
    _lab_ns_add "$host" || return 1
    local ns=${LAB_HOST_NS[$host]}
    _lab_plug "$host" eth0 || return 1
    for a in "$@"; do _lab_run ip -n "$ns" addr add "$a/24" dev eth0 || return 1; done
    _lab_run ip -n "$ns" route add default via "$(_lab_gateway "$1")" || return 1
    LAB_HOST_ADDR[$host]=$1
}

# The nftables rules of a home router. Arguments: TYPE WAN_IF WAN_ADDR LAN_IF
# LAN_NET. Filtering is enforced in the forward chain: replies to what went
# out (conntrack), plus what the prerouting DNAT let in (ct status dnat).
_lab_nat_rules() {
    local type=$1 wif=$2 waddr=$3 lif=$4 lnet=$5
    local base=${type%-hairpin} hairpin=0
    [ "$base" != "$type" ] && hairpin=1
    local masq="masquerade" eif="" adf_check="" adf_learn="" learn="" hp_dnat="" hp_snat="" udp_drop=""
    case "$base" in
        full-cone)
            eif="iifname \"$wif\" dnat ip to meta l4proto . th dport map @eim" ;;
        restricted)
            eif="iifname \"$wif\" th dport . ip saddr @adf dnat ip to meta l4proto . th dport map @eim"
            adf_learn="oifname \"$wif\" ct direction original meta l4proto { tcp, udp } update @adf { th sport . ip daddr }" ;;
        port-restricted) ;;
        symmetric) masq="masquerade fully-random" ;;
        udp-blocked) udp_drop="iifname \"$lif\" meta l4proto udp drop" ;;
        *) _lab_fail "unknown NAT type '$type' (known: $LAB_TYPES)"; return 1 ;;
    esac
    if [ -n "$eif" ] || [ "$hairpin" = 1 ]; then
        # The endpoint-independent mapping, learnt after source NAT (srcnat
        # + 1 sees the translated port): public (proto . port) -> LAN
        # (address . port).
        learn="oifname \"$wif\" ct direction original meta l4proto { tcp, udp } update @eim { meta l4proto . th sport : ct original ip saddr . ct original proto-src }"
    fi
    if [ "$hairpin" = 1 ]; then
        hp_dnat="iifname \"$lif\" ip daddr $waddr dnat ip to meta l4proto . th dport map @eim"
        hp_snat="oifname \"$lif\" ct status dnat ip saddr $lnet snat ip to $waddr"
    fi
    cat <<EOF
table ip pl_nat {
    map eim {
        type inet_proto . inet_service : ipv4_addr . inet_service
        flags dynamic,timeout
        timeout $LAB_NAT_TIMEOUT
    }
    set adf {
        type inet_service . ipv4_addr
        flags dynamic,timeout
        timeout $LAB_NAT_TIMEOUT
    }
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        $eif
        $hp_dnat
    }
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "$wif" $masq
        $hp_snat
    }
    chain learn {
        type filter hook postrouting priority srcnat + 1; policy accept;
        $learn
        $adf_learn
    }
}
table inet pl_filter {
    chain input {
        type filter hook input priority filter; policy accept;
        iifname "$wif" ct state established,related accept
        iifname "$wif" drop
    }
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        $udp_drop
        iifname "$lif" oifname "$wif" accept
        ct status dnat accept
    }
}
EOF
}

# _lab_router HOST WAN_IF WAN_ADDR/PREFIX GATEWAY LAN_ADDR/PREFIX TYPE:
# a NAT router namespace whose LAN side is the bridge "lan".
_lab_router() {
    local host=$1 wif=$2 wcidr=$3 gw=$4 lcidr=$5 type=$6
    local ns=${LAB_HOST_NS[$host]}
    _lab_run ip -n "$ns" addr add "$wcidr" dev "$wif" || return 1
    _lab_run ip -n "$ns" route add default via "$gw" || return 1
    _lab_run ip -n "$ns" link add lan type bridge || return 1
    _lab_run ip -n "$ns" addr add "$lcidr" dev lan || return 1
    _lab_run ip -n "$ns" link set lan up || return 1
    _lab_router_sysctls "$ns" || return 1
    local rules lnet="${lcidr%.*}.0/${lcidr#*/}"
    rules=$(_lab_nat_rules "$type" "$wif" "${wcidr%/*}" lan "$lnet") || return 1
    printf '%s\n' "$rules" >"$LAB_DIR/$host.nft"
    _lab_run ip netns exec "$ns" nft -f "$LAB_DIR/$host.nft"
}

# _lab_lan_attach ROUTER_HOST HOST ADDR/PREFIX GATEWAY: a host on the
# router's LAN bridge.
_lab_lan_attach() {
    local router=$1 host=$2 cidr=$3 gw=$4
    _lab_ns_add "$host" || return 1
    local rns=${LAB_HOST_NS[$router]} ns=${LAB_HOST_NS[$host]}
    LAB_PORTS[$router]=$((${LAB_PORTS[$router]:-0} + 1))
    local port="l${LAB_PORTS[$router]}"
    _lab_link "$ns" eth0 "$rns" "$port" || return 1
    _lab_run ip -n "$rns" link set "$port" master lan || return 1
    _lab_run ip -n "$ns" addr add "$cidr" dev eth0 || return 1
    _lab_run ip -n "$ns" route add default via "$gw" || return 1
    LAB_HOST_ADDR[$host]=${cidr%/*}
}

lab_home() {
    local name=$1 type=$2 wan=${3:-}
    case " $LAB_TYPES " in *" $type "*) ;; *) _lab_fail "unknown NAT type '$type' (known: $LAB_TYPES)"; return 1 ;; esac
    LAB_HOMES=$((LAB_HOMES + 1))
    local k=$LAB_HOMES
    [ "$k" -le 99 ] || { _lab_fail "too many homes"; return 1; }
    [ -n "$wan" ] || wan="203.0.113.$((100 + k))"
    _lab_public_ok "$wan" || return 1
    LAB_HOME_TYPE[$name]=$type
    LAB_HOME_IDX[$name]=$k
    LAB_HOME_WAN[$name]=$wan
    if [ "$type" = none ]; then
        lab_public "$name" "$wan"
        return
    fi
    local gw=$(_lab_gateway "$wan") router="$name-gw"
    _lab_ns_add "$router" || return 1
    if [ "$type" = double ]; then
        # The carrier's NAT holds the public address; the home router's WAN
        # is in the shared address space 100.64.0.0/10.
        local cgn="$name-cgn"
        _lab_ns_add "$cgn" || return 1
        _lab_plug "$cgn" wan || return 1
        _lab_link "${LAB_HOST_NS[$router]}" wan "${LAB_HOST_NS[$cgn]}" l1 || return 1
        _lab_router "$cgn" wan "$wan/24" "$gw" "100.64.$k.1/24" port-restricted || return 1
        _lab_run ip -n "${LAB_HOST_NS[$cgn]}" link set l1 master lan || return 1
        LAB_HOST_ADDR[$cgn]=$wan
        _lab_router "$router" wan "100.64.$k.2/24" "100.64.$k.1" "192.168.$k.1/24" port-restricted || return 1
        LAB_HOST_ADDR[$router]=100.64.$k.2
    else
        _lab_plug "$router" wan || return 1
        _lab_router "$router" wan "$wan/24" "$gw" "192.168.$k.1/24" "$type" || return 1
        LAB_HOST_ADDR[$router]=$wan
    fi
    _lab_lan_attach "$router" "$name" "192.168.$k.10/24" "192.168.$k.1"
}

lab_lan_host() {
    local home=$1 host=$2
    local k=${LAB_HOME_IDX[$home]:-}
    [ -n "$k" ] || { _lab_fail "no home '$home'"; return 1; }
    [ "${LAB_HOME_TYPE[$home]}" != none ] || { _lab_fail "home '$home' has no LAN (type none)"; return 1; }
    local n=$((${LAB_PORTS[$home-gw]:-1} + 10))
    _lab_lan_attach "$home-gw" "$host" "192.168.$k.$n/24" "192.168.$k.1"
}
