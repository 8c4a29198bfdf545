#!/usr/bin/env bash
# nat_proxy_call.test.sh - parleyd through an outgoing proxy (--proxy) in the
# NAT lab (tests/netlab/lab.sh): carol lives in a home whose firewall lets
# out nothing but TCP to a proxy host, which runs Debian's tinyproxy (HTTP
# CONNECT, with and without Basic credentials), danted (SOCKS5) and
# microsocks (SOCKS5 with username and password). Shown:
#  - nothing reaches a supernode from carol's home except through the proxy;
#  - with --proxy http://... carol's daemon tries UDP, gives up on it within
#    a few seconds and attaches over TCP through tinyproxy; the supernode
#    sees her at the proxy's address; alice finds her by name;
#  - alice calls carol and carol calls alice: speech both ways passes
#    parley-quality; carol's side of each call is relayed over TCP through
#    the proxy (parley calls shows the path through the proxy);
#  - with --proxy-only (no UDP at all) through danted (SOCKS5), and through
#    microsocks with credentials: attached at once, a call carries voice
#    both ways;
#  - the proxy's refusals are clear in the log and in parley status:
#    credentials missing (HTTP 407), a wrong password (SOCKS5), a port the
#    proxy does not allow (HTTP 403).
# Needs root, nftables, tinyproxy, danted and microsocks; without them it
# fails (CI runs it as root after scripts/setup.sh).
set -u
B=${PARLEY_BUILD:-build/release}
B=$(cd "$B" 2>/dev/null && pwd || echo "$B")
CA="$B/parley-ca"
PL="$B/parley"
PD="$B/parleyd"
Q="$B/parley-quality"
PROBE="$B/tests/tools/pl_probe"
SPEECH="$B/speech"
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/netlab/lab.sh"
passed=0
failed=0
CA_PID=
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; shift; for l in "$@"; do echo "     $l"; done; }
expect() { if printf '%s' "$3" | grep -qE -- "$2"; then ok "$1"; else bad "$1" "no /$2/ in: $3"; fi; }
check() { # NAME AWK-CONDITION VALUES...
    local name=$1 cond=$2
    shift 2
    if awk -v a="${1:-}" -v b="${2:-}" -v c="${3:-}" -v d="${4:-}" "BEGIN { exit !($cond) }"; then ok "$name ($*)"
    else bad "$name" "values: $*" "condition: $cond"; fi
}
wait_line() { for _ in $(seq "${3:-200}"); do grep -qE "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done; return 1; }
jfield() { printf '%s' "$2" | grep -o "\"$1\":\"[^\"]*\"" | tail -1 | cut -d'"' -f4; }
num() { printf '%s' "$2" | grep -o "\"$1\":[-0-9.e]*" | tail -1 | cut -d: -f2; }
# log_ms LOG REGEX: the time of the first matching log line, in ms of the day.
log_ms() {
    grep -E -m1 "$2" "$1" | awk '{ split($1, t, "[:.]"); print ((t[1] * 60 + t[2]) * 60 + t[3]) * 1000 + t[4] }'
}
finish() {
    [ -n "$CA_PID" ] && kill "$CA_PID" 2>/dev/null && wait "$CA_PID" 2>/dev/null
    local prefix=${LAB_PREFIX:-}
    [ -n "${KEEP:-}" ] && [ -n "${LAB_DIR:-}" ] && cp -r "$LAB_DIR" /tmp/nat_proxy_call.kept
    lab_down
    if [ -n "$prefix" ]; then
        left=$(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$prefix" || true)
        [ -z "$left" ] && ok "no namespace of the lab is left" || bad "no namespace of the lab is left" "$left"
    fi
    echo "PL-TEST-SUMMARY $passed $failed"
    exit 0
}

for tool in "$CA" "$PL" "$PD" "$Q" "$PROBE"; do [ -x "$tool" ] || { bad "$tool is built"; finish; }; done
for p in tinyproxy danted microsocks; do
    command -v "$p" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin"
    command -v "$p" >/dev/null 2>&1 || { bad "$p is installed" "scripts/setup.sh installs it"; finish; }
done
tests/media/make_speech.sh "$SPEECH" || { bad "make_speech.sh makes the test speech"; finish; }
lab_init || { bad "the lab cannot run here: $LAB_ERROR"; finish; }
T=$LAB_DIR
chmod 755 "$T"

# ---- identities, registered on loopback before the lab exists -------------------------------------
FP=$("$CA" init --dir "$T/ca") || { bad "ca init"; finish; }
"$CA" serve --dir "$T/ca" --listen 127.0.0.1:0 --rate 1000 --burst 1000 >"$T/ca.out" 2>>"$T/ca.log" &
CA_PID=$!
wait_line "$T/ca.out" '^listening' || { bad "ca start"; finish; }
CA_ADDR=$(awk '/^listening/{print $2}' "$T/ca.out")
for u in sn1 sn2 alice carol; do
    "$PL" --home "$T/$u" keygen >/dev/null && "$PL" --home "$T/$u" register "$u" --ca "$CA_ADDR" --ca-key "$FP" >/dev/null ||
        { bad "register $u"; finish; }
done
kill "$CA_PID"; wait "$CA_PID" 2>/dev/null; CA_PID=
key_of() { "$PL" --home "$T/$1" --json show | sed -n 's/.*"fingerprint":"\([0-9a-f]*\)".*/\1/p'; }

# ---- the lab --------------------------------------------------------------------------------------
SN1=203.0.113.10
SN2=203.0.113.20
PROXY=198.51.100.20
build() {
    lab_internet || return 1
    lab_public sn1 $SN1 198.51.100.10 || return 1
    lab_public sn2 $SN2 || return 1
    lab_public proxy $PROXY || return 1
    lab_home alice port-restricted || return 1
    lab_home corp port-restricted || return 1
}
build || { bad "the lab is built" "$LAB_ERROR"; finish; }
# carol's firewall: out of the LAN only TCP to the proxy host.
lab_exec corp-gw nft insert rule inet pl_filter forward iifname lan oifname wan ip daddr != $PROXY drop
lab_exec corp-gw nft insert rule inet pl_filter forward iifname lan oifname wan ip daddr $PROXY meta l4proto != tcp drop
ok "lab: supernodes at $SN1 and $SN2, proxies at $PROXY; alice behind a port-restricted NAT; carol's home lets out only TCP to $PROXY"

# ---- the proxies (as in tests/proxy.test.sh; docs/nat.md 5.4) -------------------------------------------
tinyconf() { # PORT CONNECT-PORT [BasicAuth line]
    cat <<EOF
User nobody
Group nogroup
Port $1
Listen $PROXY
Timeout 600
MaxClients 16
Allow 0.0.0.0/0
ConnectPort $2
DisableViaHeader Yes
LogLevel Info
$3
EOF
}
# 3128: CONNECT to port 7400 (the supernodes); 3129: the same with Basic
# credentials; 3130: only to port 443, as many offices allow.
tinyconf 3128 7400 "" >"$T/tinyproxy.conf"
tinyconf 3129 7400 "BasicAuth carol s3cret" >"$T/tinyproxy-auth.conf"
tinyconf 3130 443 "" >"$T/tinyproxy-443.conf"
for c in tinyproxy tinyproxy-auth tinyproxy-443; do lab_spawn proxy "$T/$c.out" tinyproxy -d -c "$T/$c.conf"; done
cat >"$T/danted.conf" <<EOF
logoutput: stderr
internal: $PROXY port = 1080
external: $PROXY
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass { from: 0.0.0.0/0 to: 0.0.0.0/0 }
socks pass { from: 0.0.0.0/0 to: $SN1/32 port = 7400 command: connect }
socks pass { from: 0.0.0.0/0 to: $SN2/32 port = 7400 command: connect }
socks block { from: 0.0.0.0/0 to: 0.0.0.0/0 log: error connect }
EOF
lab_spawn proxy "$T/danted.out" danted -f "$T/danted.conf" -N 1 -p "$T/danted.pid"
lab_spawn proxy "$T/microsocks.out" microsocks -i $PROXY -p 1081 -u carol -P s3cret
listening() {
    for _ in $(seq 100); do
        lab_exec "$1" ss -Hltn "sport = :$2" 2>/dev/null | grep -q LISTEN && return 0
        sleep 0.05
    done
    return 1
}
for port in 3128 3129 3130 1080 1081; do listening proxy $port || { bad "a proxy listens on $PROXY:$port"; finish; }; done
ok "tinyproxy on $PROXY:3128, :3129 (Basic) and :3130 (port 443 only), danted on :1080, microsocks on :1081 (username and password)"

# ---- supernodes and alice --------------------------------------------------------------------------
echo "$(key_of sn1) $SN1:7400" >"$T/sn.list"
echo "$(key_of sn2) $SN2:7400" >>"$T/sn.list"
tac "$T/sn.list" >"$T/sn.rev"
start() { # HOST USER LOG ARGS...: sets PID_<USER>
    local host=$1 u=$2 log=$3
    shift 3
    lab_spawn "$host" "$log" "$PD" --home "$T/$u" "$@"
    eval "PID_$u=$LAB_PID"
    wait_line "$log" '^listening' || { bad "$u starts" "$(tail -3 "$log")"; return 1; }
}
start sn1 sn1 "$T/sn1.log" --role supernode --listen $SN1:7400 --alt-listen 198.51.100.10:7401 --bootstrap-file "$T/sn.list" || finish
start sn2 sn2 "$T/sn2.log" --role supernode --listen $SN2:7400 --bootstrap-file "$T/sn.list" || finish
start alice alice "$T/alice.log" --bootstrap-file "$T/sn.list" --auto-answer --answer-from "$SPEECH/talker3.wav" \
    --answer-to "$T/rec_alice_answered.wav" || finish
wait_line "$T/alice.log" 'record published' 200 || { bad "alice attaches" "$(tail -3 "$T/alice.log")"; finish; }

out=$(lab_exec corp "$PROBE" tcp --to $SN2:7400 --timeout 1 2>&1)
expect "the firewall holds: from carol's home a supernode is not reachable over TCP directly" '^tcp-fail' "$out"

# start_carol RUN ARGS...: carol's daemon in her home, log $T/carol-RUN.log.
start_carol() {
    local run=$1
    shift
    CLOG="$T/carol-$run.log"
    start corp carol "$CLOG" --bootstrap-file "$T/sn.rev" --auto-answer --answer-from "$SPEECH/talker2.wav" \
        --answer-to "$T/rec_carol-$run.wav" "$@"
}
stop_carol() {
    "$PL" --home "$T/carol" stop >/dev/null 2>&1
    for _ in $(seq 100); do kill -0 "$PID_carol" 2>/dev/null || break; sleep 0.05; done
    ! kill -0 "$PID_carol" 2>/dev/null
}
# attach_ms: from the daemon's start to "attached" in carol's log.
attach_ms() { echo $(($(log_ms "$CLOG" 'attached to supernode') - $(log_ms "$CLOG" 'running as node'))); }

# ---- 1. tinyproxy (HTTP CONNECT), UDP tried first --------------------------------------------------------
start_carol http --proxy http://$PROXY:3128 || finish
if wait_line "$CLOG" 'record published' 300; then
    ok "carol attaches and publishes through tinyproxy ($(attach_ms) ms from start to attached, UDP tried first)"
else
    bad "carol attaches through tinyproxy" "$(tail -5 "$CLOG")"; finish
fi
expect "her daemon connected to the supernode through the proxy" \
    "connecting over TCP to $SN2:7400 through the proxy http://$PROXY:3128" "$(cat "$CLOG")"
expect "and attached over TCP" "attached to supernode sn2 .* over TCP" "$(cat "$CLOG")"
out=$("$PL" --home "$T/carol" status 2>&1)
expect "parley status: attached over tcp, the proxy in use" "supernode +sn2 at $SN2:7400 over tcp" "$out"
expect "parley status shows the proxy" "^proxy +http://$PROXY:3128, in use" "$out"
out=$("$PL" --home "$T/sn2" clients 2>&1)
expect "the supernode sees carol at the proxy's address" "^carol +$PROXY:[0-9]+" "$out"
out=$("$PL" --home "$T/alice" lookup carol 2>&1)
expect "alice finds carol by name (online, at supernode sn2)" "presence +online" "$out"

# alice calls carol: speech both ways, scored.
out=$(timeout 40 "$PL" --home "$T/alice" call carol --from "$SPEECH/talker1.wav" --to "$T/rec_alice.wav")
rc=$?
expect "alice calls carol by name: answered and hung up (exit $rc)" "call ended: hung up" "$out"
echo "     $(printf '%s' "$out" | grep -E '^(ringing|answered|path|call ended)' | tr '\n' ';' | sed 's/;/; /g')"
theirs=$("$PL" --home "$T/carol" calls 2>/dev/null)
expect "carol's side of the call: relayed over TCP through the proxy (parley calls)" \
    "path +relayed, tcp, via [0-9.]+:7400/tcp, through the proxy http://$PROXY:3128" "$theirs"
J1=$("$Q" "$SPEECH/talker2.wav" "$T/rec_alice.wav" --json 2>&1)
rc1=$?
J2=$("$Q" "$SPEECH/talker1.wav" "$T/rec_carol-http.wav" --json 2>&1)
rc2=$?
echo "     carol -> alice: STOI $(num stoi "$J1"), delay $(num delay_ms "$J1") ms, R $(num r "$J1")"
echo "     alice -> carol: STOI $(num stoi "$J2"), delay $(num delay_ms "$J2") ms, R $(num r "$J2")"
[ $rc1 -eq 0 ] && ok "carol's speech reaches alice through the proxy: parley-quality passes" || bad "carol -> alice scores" "$J1"
[ $rc2 -eq 0 ] && ok "alice's speech reaches carol through the proxy: parley-quality passes" || bad "alice -> carol scores" "$J2"

# carol calls alice.
j=$(timeout 30 "$PL" --home "$T/carol" --json call alice --tone 440 --duration 2 2>&1)
rc=$?
theirs=$("$PL" --home "$T/alice" --json calls 2>/dev/null)
check "carol calls alice: answered, voice both ways (carol: $(jfield kind "$j")/$(jfield transport "$j") via $(jfield proxy "$j"))" \
    'a == 0 && b > 50 && c > 50' "$rc" "$(num packets_received "$j")" "$(num packets_received "$theirs")"
expect "carol's path goes through the HTTP proxy" '^relayed/tcp/http$' "$(jfield kind "$j")/$(jfield transport "$j")/$(jfield proxy "$j")"
stop_carol || bad "carol's daemon stops"

# ---- 2. danted (SOCKS5), --proxy-only ---------------------------------------------------------------
start_carol socks --proxy socks5://$PROXY:1080 --proxy-only || finish
wait_line "$CLOG" 'record published' 200 && ok "--proxy-only through danted: attached and published ($(attach_ms) ms from start to attached, no UDP tried)" ||
    { bad "carol attaches through danted" "$(tail -5 "$CLOG")"; finish; }
expect "no UDP attempt: the first supernode tried is over TCP" "attached to supernode sn2 .* over TCP" "$(cat "$CLOG")"
j=$(timeout 30 "$PL" --home "$T/alice" --json call carol --tone 440 --duration 2 2>&1)
rc=$?
theirs=$("$PL" --home "$T/carol" --json calls 2>/dev/null)
check "alice calls carol through danted: answered, voice both ways" 'a == 0 && b > 50 && c > 50' \
    "$rc" "$(num packets_received "$j")" "$(num packets_received "$theirs")"
expect "carol's path goes through the SOCKS5 proxy" '^relayed/tcp/socks5$' \
    "$(jfield kind "$theirs")/$(jfield transport "$theirs")/$(jfield proxy "$theirs")"
stop_carol || bad "carol's daemon stops"

# ---- 3. microsocks with username and password -----------------------------------------------------------
start_carol socksauth --proxy "socks5://carol:s3cret@$PROXY:1081" --proxy-only || finish
wait_line "$CLOG" 'record published' 200 && ok "through microsocks with credentials: attached and published ($(attach_ms) ms)" ||
    { bad "carol attaches through microsocks" "$(tail -5 "$CLOG")"; finish; }
check "the password is not in the log, nor on the daemon's command line" 'a == 0 && b == 0' \
    "$(grep -c s3cret "$CLOG")" "$(tr '\0' '\n' </proc/"$PID_carol"/cmdline | grep -c s3cret)"
j=$(timeout 30 "$PL" --home "$T/carol" --json call alice --tone 440 --duration 2 2>&1)
rc=$?
theirs=$("$PL" --home "$T/alice" --json calls 2>/dev/null)
check "carol calls alice through microsocks: answered, voice both ways" 'a == 0 && b > 50 && c > 50' \
    "$rc" "$(num packets_received "$j")" "$(num packets_received "$theirs")"
stop_carol || bad "carol's daemon stops"

# ---- 4. the proxy says no: clear errors -----------------------------------------------------------------
refused() { # RUN URL LOG-REGEX STATUS-REGEX NAME
    start_carol "$1" --proxy "$2" --proxy-only || return
    if wait_line "$CLOG" "through the proxy .* failed" 100; then
        expect "$5: the log says why" "$3" "$(grep 'through the proxy .* failed' "$CLOG" | head -1)"
        echo "     $(grep -m1 'through the proxy .* failed' "$CLOG" | sed 's/^[^ ]* parleyd: //')"
        local st
        st=$("$PL" --home "$T/carol" status 2>&1)
        expect "$5: parley status says so" "$4" "$st"
        expect "$5: carol stays offline" 'state +offline' "$st"
    else
        bad "$5: a failure is logged" "$(tail -5 "$CLOG")"
    fi
    stop_carol || bad "carol's daemon stops"
}
refused noauth "http://$PROXY:3129" 'the proxy requires authentication \(HTTP 407\)' \
    "proxy error +203\.0\.113\.[12]0:7400/tcp: the proxy requires authentication \(HTTP 407\)" "tinyproxy wants credentials"
refused badpass "socks5://carol:wrong@$PROXY:1081" 'the proxy rejected the credentials \(SOCKS5 code [0-9]+\)' \
    "proxy error +203\.0\.113\.[12]0:7400/tcp: the proxy rejected the credentials" "microsocks, a wrong password"
refused port "http://$PROXY:3130" 'the proxy refused to connect to the target \(HTTP 403\)' \
    "proxy error +203\.0\.113\.[12]0:7400/tcp: the proxy refused to connect to the target \(HTTP 403\)" \
    "tinyproxy, the supernodes' port not allowed"
finish
