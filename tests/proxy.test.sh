#!/usr/bin/env bash
# proxy.test.sh - framed streams through real outgoing proxies
# (pl_stream_connect_via_proxy, src/core/proxy.c) in the network lab:
# Debian's tinyproxy (HTTP CONNECT, with and without Basic credentials),
# danted (SOCKS5 without authentication, with a rule set) and microsocks
# (SOCKS5 with username and password) on a public host; a framed echo
# server (the stand-in for a supernode) on another. Shown:
#  - from a home whose firewall lets out nothing but TCP to the proxy's
#    address, the echo server cannot be reached directly but can through
#    each proxy, and frames (small and near the 64 KiB limit) round-trip;
#  - the clear errors: credentials missing or wrong (HTTP 407, SOCKS5
#    method 0xFF, RFC 1929 failure), a port the proxy does not allow (HTTP
#    403 from tinyproxy's ConnectPort list, SOCKS5 reply 2 from danted's
#    rules), a target nobody listens on (SOCKS5 reply 5), a proxy that is
#    not there.
# Needs root and nftables; without them it fails (CI runs it as root).
set -u
B=${PARLEY_BUILD:-build/release}
TUN="$B/tests/tools/pl_tunnel"
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

[ -x "$TUN" ] || { bad "proxy: $TUN is built" "run make first"; finish; }
for p in tinyproxy danted microsocks; do
    command -v "$p" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin"
    command -v "$p" >/dev/null 2>&1 || { bad "proxy: $p is installed" "scripts/setup.sh installs it"; finish; }
done
if ! lab_init; then
    bad "proxy: the lab cannot run here: $LAB_ERROR"
    finish
fi
T=$LAB_DIR
ECHO=203.0.113.50
PROXY=198.51.100.20
build() {
    lab_internet || return 1
    lab_public echo $ECHO || return 1
    lab_public proxy $PROXY || return 1
    lab_home corp port-restricted || return 1
}
if ! build; then
    bad "the lab is built" "$LAB_ERROR"
    finish
fi
# The home's firewall: out of the LAN only TCP to the proxy host's proxy
# ports (and the answers) gets through.
lab_exec corp-gw nft insert rule inet pl_filter forward iifname lan oifname wan \
    ip daddr != $PROXY drop
lab_exec corp-gw nft insert rule inet pl_filter forward iifname lan oifname wan \
    ip daddr $PROXY meta l4proto != tcp drop
ok "the lab is built (prefix $LAB_PREFIX): home 'corp' lets out only TCP to $PROXY"

# listening HOST PORT: waits until something listens on TCP PORT in HOST.
listening() {
    for _ in $(seq 100); do
        lab_exec "$1" ss -Hltn "sport = :$2" 2>/dev/null | grep -q LISTEN && return 0
        sleep 0.05
    done
    return 1
}

# ---- the servers --------------------------------------------------------------------------
lab_spawn echo "$T/echo-4000.out" "$TUN" echo --listen $ECHO:4000
lab_spawn echo "$T/echo-4001.out" "$TUN" echo --listen $ECHO:4001
# tinyproxy: CONNECT only to ports 4000 and 4002 (4001 is forbidden).
tinyconf() { # PORT [BasicAuth line]
    cat <<EOF
User nobody
Group nogroup
Port $1
Listen $PROXY
Timeout 30
MaxClients 16
Allow 0.0.0.0/0
ConnectPort 4000
ConnectPort 4002
DisableViaHeader Yes
LogLevel Info
$2
EOF
}
tinyconf 3128 "" >"$T/tinyproxy.conf"
tinyconf 3129 "BasicAuth alice s3cret" >"$T/tinyproxy-auth.conf"
lab_spawn proxy "$T/tinyproxy.out" tinyproxy -d -c "$T/tinyproxy.conf"
lab_spawn proxy "$T/tinyproxy-auth.out" tinyproxy -d -c "$T/tinyproxy-auth.conf"
# danted: no authentication; CONNECT to the echo host's ports 4000 and 4002 only.
cat >"$T/danted.conf" <<EOF
logoutput: stderr
internal: $PROXY port = 1080
external: $PROXY
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass { from: 0.0.0.0/0 to: 0.0.0.0/0 }
socks pass { from: 0.0.0.0/0 to: $ECHO/32 port = 4000 command: connect }
socks pass { from: 0.0.0.0/0 to: $ECHO/32 port = 4002 command: connect }
socks block { from: 0.0.0.0/0 to: 0.0.0.0/0 log: error connect }
EOF
lab_spawn proxy "$T/danted.out" danted -f "$T/danted.conf" -N 1 -p "$T/danted.pid"
# microsocks: username and password.
lab_spawn proxy "$T/microsocks.out" microsocks -i $PROXY -p 1081 -u alice -P s3cret
all_up=0
for hp in echo:4000 echo:4001 proxy:3128 proxy:3129 proxy:1080 proxy:1081; do
    listening "${hp%%:*}" "${hp#*:}" || { all_up=1; bad "something listens on $hp"; }
done
if [ $all_up -ne 0 ]; then
    for f in tinyproxy tinyproxy-auth danted microsocks; do echo "--- $f"; tail -5 "$T/$f.out"; done
    finish
fi
ok "echo server on $ECHO:4000 and :4001; tinyproxy on $PROXY:3128 and :3129 (Basic), danted on :1080, microsocks on :1081"

# tunnel NAME WANT ARGS...: runs pl_tunnel connect from the home; WANT is the
# start of the line it must print.
tunnel() {
    local name=$1 want=$2
    shift 2
    local out
    out=$(lab_exec corp "$TUN" connect "$@" 2>&1)
    check "$name: $want" "$(case "$out" in "$want"*) echo 0 ;; *) echo 1 ;; esac)" "$out"
    case "$out" in ok*) echo "     $out" ;; esac
}

# ---- the firewall holds ---------------------------------------------------------------------
tunnel "direct to the echo server from the home" "fail timeout" --proxy none --to $ECHO:4000 --timeout 2

# ---- through each proxy ------------------------------------------------------------------------
tunnel "HTTP CONNECT through tinyproxy" "ok frames=20 bytes=1000" --proxy http://$PROXY:3128 --to $ECHO:4000
tunnel "HTTP CONNECT through tinyproxy, frames of 65000 bytes" "ok frames=3 bytes=65000" \
    --proxy http://$PROXY:3128 --to $ECHO:4000 --frames 3 --size 65000
tunnel "HTTP CONNECT with Basic credentials" "ok frames=20" --proxy http://alice:s3cret@$PROXY:3129 --to $ECHO:4000
tunnel "SOCKS5 through danted" "ok frames=20 bytes=1000" --proxy socks5://$PROXY:1080 --to $ECHO:4000
tunnel "SOCKS5 through danted, frames of 65000 bytes" "ok frames=3 bytes=65000" \
    --proxy socks5://$PROXY:1080 --to $ECHO:4000 --frames 3 --size 65000
tunnel "SOCKS5 with username and password through microsocks" "ok frames=20" \
    --proxy socks5://alice:s3cret@$PROXY:1081 --to $ECHO:4000
tunnel "SOCKS5 with credentials through danted, which needs none" "ok frames=20" \
    --proxy socks5://alice:s3cret@$PROXY:1080 --to $ECHO:4000

# ---- the clear errors --------------------------------------------------------------------------
tunnel "tinyproxy: CONNECT to a port not in its ConnectPort list" "fail refused errno=ECONNREFUSED" \
    --proxy http://$PROXY:3128 --to $ECHO:4001
tunnel "tinyproxy: no credentials where Basic is required" "fail auth-required errno=EACCES" \
    --proxy http://$PROXY:3129 --to $ECHO:4000
tunnel "tinyproxy: a wrong password" "fail auth-failed errno=EACCES" --proxy http://alice:wrong@$PROXY:3129 --to $ECHO:4000
tunnel "danted: CONNECT its rules forbid" "fail refused errno=ECONNREFUSED" --proxy socks5://$PROXY:1080 --to $ECHO:4001
tunnel "danted: a target nobody listens on" "fail target errno=EHOSTUNREACH" --proxy socks5://$PROXY:1080 --to $ECHO:4002
tunnel "microsocks: no credentials" "fail auth-required errno=EACCES" --proxy socks5://$PROXY:1081 --to $ECHO:4000
tunnel "microsocks: a wrong password" "fail auth-failed errno=EACCES" --proxy socks5://alice:wrong@$PROXY:1081 --to $ECHO:4000
tunnel "no proxy on that port" "fail connect errno=ECONNREFUSED" --proxy socks5://$PROXY:1082 --to $ECHO:4000
# tinyproxy waits for a request line that never comes; danted hangs up on
# bytes that are not SOCKS.
tunnel "an HTTP proxy spoken to as SOCKS5" "fail timeout errno=ETIMEDOUT" --proxy socks5://$PROXY:3128 --to $ECHO:4000 \
    --timeout 2
tunnel "a SOCKS5 proxy spoken to as HTTP" "fail closed errno=ECONNRESET" --proxy http://$PROXY:1080 --to $ECHO:4000 \
    --timeout 2

# The echo server saw tunnelled connections from the proxy, never from the home.
check "the echo server's peers were the proxy host only" \
    "$(! grep '^accepted' "$T/echo-4000.out" | grep -qv "^accepted $PROXY:"; echo $?)" "$(cat "$T/echo-4000.out")"
finish
