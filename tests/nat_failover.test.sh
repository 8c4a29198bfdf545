#!/usr/bin/env bash
# nat_failover.test.sh - calls that lose their path, and calls in privacy
# mode, in the NAT lab (tests/netlab/lab.sh). Two overlays of two public
# supernodes each. On sn1/sn2: users behind port-restricted cone NATs (alice
# on sn1, bob on sn2), behind symmetric NATs (carol on sn1, dave on sn2:
# only relays work between them), and priv (port-restricted, privacy mode).
# On sn3/sn4: erin and frank, behind symmetric NATs, both attached to sn3.
# Shown:
#  - failover from the direct path: alice calls bob, the call goes direct;
#    mid-call an nftables drop rule on alice's router (its own table, by
#    name) cuts every packet between the two homes. Media resumes on a relay
#    within 300 ms in both directions: the longest interval without a voice
#    packet, from a capture in each user's namespace, is printed and
#    asserted. The rule is deleted again and the call moves back to the
#    direct path;
#  - failover from a relay: carol calls dave, relayed (a relay at each one's
#    supernode); mid-call the supernode whose relay carries the call is
#    killed (kill -9). Media resumes through the other supernode's relay
#    within 300 ms both ways; the call goes on to its end;
#  - the same when both ends are attached to the supernode that dies (erin
#    calls frank, both on sn3): each end also holds a relay at its standby
#    supernode (sn4), and the call goes on through it;
#  - privacy mode: priv calls bob, and alice calls priv. A capture in the
#    other user's namespace over the whole call, set-up included, holds no
#    packet from priv's home (its public address, its LAN address) while it
#    holds the call's packets (from the supernodes' relays). The control:
#    the same capture at bob during alice's (not private) call holds
#    packets from alice's public address.
# Under ASan (a build directory with "asan" in its name) the gaps are
# printed but the 300 ms bound is not asserted: the sanitizer slows the
# daemons down by a factor that has nothing to do with the path manager.
# KEEP=1 keeps a copy of the lab directory in /tmp/nat_failover.kept.
# Needs root, nftables, tcpdump, tshark and jq (CI runs it as root).
set -u
B=${PARLEY_BUILD:-build/release}
B=$(cd "$B" 2>/dev/null && pwd || echo "$B")
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/netlab/lab.sh"
. "$HERE/netlab/parley.sh"
passed=0
failed=0
STARTED=$(date +%s.%N)
GAP_MAX_MS=300
SANITIZED=0
case "$B" in *asan*) SANITIZED=1 ;; esac
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; shift; for l in "$@"; do echo "     $l"; done; }
check() { # NAME AWK-CONDITION VALUES...
    local name=$1 cond=$2
    shift 2
    if awk -v a="${1:-}" -v b="${2:-}" -v c="${3:-}" -v d="${4:-}" "BEGIN { exit !($cond) }"; then ok "$name ($*)"
    else bad "$name" "values: $*" "condition: $cond"; fi
}
# A latency bound: asserted on a release build, printed under a sanitizer.
check_gap() { # NAME GAP_MS
    if [ "$SANITIZED" = 1 ]; then
        echo "     (ASan build: not asserted) $1: $2 ms"
    else
        check "$1" "a != \"\" && a <= $GAP_MAX_MS" "$2"
    fi
}
CUT_NS=""
finish() {
    [ -n "$PLX_CA_PID" ] && kill "$PLX_CA_PID" 2>/dev/null && wait "$PLX_CA_PID" 2>/dev/null
    [ -n "$CUT_NS" ] && ip netns exec "$CUT_NS" nft delete table inet pl_cut 2>/dev/null
    local prefix=${LAB_PREFIX:-}
    [ -n "${KEEP:-}" ] && [ -n "${LAB_DIR:-}" ] && rm -rf /tmp/nat_failover.kept && cp -r "$LAB_DIR" /tmp/nat_failover.kept
    lab_down
    if [ -n "$prefix" ]; then
        left=$(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$prefix" || true)
        [ -z "$left" ] && ok "no namespace of the lab is left" || bad "no namespace of the lab is left" "$left"
    fi
    echo "     the whole test took $(awk -v a="$STARTED" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }') s"
    echo "PL-TEST-SUMMARY $passed $failed"
    exit 0
}

for tool in "$B/parley-ca" "$B/parley" "$B/parleyd"; do [ -x "$tool" ] || { bad "$tool is built"; finish; }; done
for tool in jq tcpdump tshark nft; do command -v $tool >/dev/null || { bad "$tool is installed (scripts/setup.sh)"; finish; }; done
lab_init || { bad "the lab cannot run here: $LAB_ERROR"; finish; }
T=$LAB_DIR
chmod 755 "$T"

USERS="alice bob carol dave priv erin frank"
plx_register sn1 sn2 sn3 sn4 $USERS || { bad "identities are registered" "$LAB_ERROR"; finish; }
build() {
    lab_internet || return 1
    lab_home alice port-restricted || return 1
    lab_home bob port-restricted || return 1
    lab_home carol symmetric || return 1
    lab_home dave symmetric || return 1
    lab_home priv port-restricted || return 1
    lab_home erin symmetric || return 1
    lab_home frank symmetric || return 1
    plx_supernodes || return 1
    # A second overlay, which never hears of the first.
    plx_supernodes sn3 203.0.113.30 198.51.100.30 sn4 203.0.113.40
}
build || { bad "the lab is built" "$LAB_ERROR"; finish; }
ANSWER="--auto-answer --answer-from tone:660"
plx_start alice alice --bootstrap-file "$T/sn1.list" $ANSWER || { bad "alice starts" "$LAB_ERROR"; finish; }
plx_start bob bob --bootstrap-file "$T/sn1.rev" $ANSWER || { bad "bob starts" "$LAB_ERROR"; finish; }
plx_start carol carol --bootstrap-file "$T/sn1.list" $ANSWER || { bad "carol starts" "$LAB_ERROR"; finish; }
plx_start dave dave --bootstrap-file "$T/sn1.rev" $ANSWER || { bad "dave starts" "$LAB_ERROR"; finish; }
plx_start priv priv --bootstrap-file "$T/sn1.list" $ANSWER --private || { bad "priv starts" "$LAB_ERROR"; finish; }
plx_start erin erin --bootstrap-file "$T/sn3.list" $ANSWER || { bad "erin starts" "$LAB_ERROR"; finish; }
plx_start frank frank --bootstrap-file "$T/sn3.list" $ANSWER || { bad "frank starts" "$LAB_ERROR"; finish; }
if plx_wait_published $USERS; then
    ok "seven users attached and published (alice, carol, priv on sn1; bob, dave on sn2; erin, frank on sn3)"
else
    bad "every user attaches and publishes" "$LAB_ERROR"
    finish
fi

# ---- helpers ---------------------------------------------------------------------------------------------
now() { date +%s.%N; }
# The user's newest call, as its daemon reports it.
newest() { "$B/parley" --home "$T/$1" --json calls 2>/dev/null | jq -c '.calls | max_by(.id) // {}'; }
# wait_path USER KIND [TRIES of 50 ms]: until the live call's active path is of KIND.
wait_path() {
    local _ j
    for _ in $(seq "${3:-100}"); do
        j=$(newest "$1")
        [ "$(plx_field "$j" .state)" = active ] && [ "$(plx_field "$j" .path.kind)" = "$2" ] && return 0
        sleep 0.05
    done
    return 1
}
# capture HOST NAME: tcpdump of every UDP datagram on HOST's eth0 into $T/NAME.pcap; sets CAP_PID.
capture() {
    lab_spawn "$1" "$T/$2.cap.out" tcpdump -i eth0 -U -n -w "$T/$2.pcap" udp
    CAP_PID=$LAB_PID
    plx_wait_line "$T/$2.cap.out" 'listening on' 100
}
stop_capture() { sleep 0.3; kill "$@" 2>/dev/null; wait "$@" 2>/dev/null; }
# voice_times PCAP DST: the arrival times of voice-sized datagrams for DST
# (its LAN address): straight from the peer (not from a supernode), or
# relay-framed (first byte 0xF1) through a supernode. A voice packet is at
# least 70 bytes inside the relay framing (an 8-byte voice header, the Opus
# frame, 32 bytes of session header and tag); path probes and answers are
# 42-43 bytes, so they do not count.
voice_times() {
    tshark -r "$1" -T fields -e frame.time_epoch -e ip.src -e ip.dst -e udp.length -e udp.payload 2>/dev/null |
        awk -v dst="$2" '$3 == dst {
            len = $4 - 8; first = substr($5, 1, 2)
            if (first == "f1") len -= 13
            else if ($2 == "203.0.113.10" || $2 == "198.51.100.10" || $2 == "203.0.113.20") next
            if (len >= 70) print $1
        }'
}
# gap_at TIMES_FILE WHEN: the longest interval between consecutive voice
# packets among those around WHEN (from 1 s before to 2 s after), in ms;
# "gap_ms start_offset_ms" where the offset is from WHEN to the gap's start.
gap_at() {
    awk -v w="$2" '$1 >= w - 1 && $1 <= w + 2 { if (n++ && $1 - p > g) { g = $1 - p; s = p } p = $1 }
        END { if (n < 2) print ""; else printf "%.0f %.0f\n", g * 1000, (s - w) * 1000 }' "$1"
}
# calm_gap TIMES_FILE FROM TO: the longest interval between FROM and TO (ms).
calm_gap() {
    awk -v a="$2" -v b="$3" '$1 >= a && $1 <= b { if (n++ && $1 - p > g) g = $1 - p; p = $1 } END { printf "%.0f\n", g * 1000 }' "$1"
}

# ---- 1. the direct path is cut mid-call ---------------------------------------------------------------------
A_LAN=$(lab_addr alice); B_LAN=$(lab_addr bob)
A_WAN=$(lab_wan alice); B_WAN=$(lab_wan bob)
capture alice direct_a; CA=$CAP_PID
capture bob direct_b; CB=$CAP_PID
timeout 40 "$B/parley" --home "$T/alice" --json call bob --tone 440 --duration 7 >"$T/direct.out" 2>&1 &
CALL=$!
if wait_path alice direct 100 && wait_path bob direct 40; then
    ok "alice calls bob (two port-restricted cone NATs): the call goes direct"
else
    bad "alice's call to bob goes direct" "$(newest alice)"
fi
sleep 1.5
CUT_NS=$(lab_ns alice-gw)
CUT_AT=$(now)
# The cut: a table of its own on alice's router, dropping both directions
# between the homes (relayed packets come from the supernodes and pass).
nft_cut="table inet pl_cut {
    chain forward {
        type filter hook forward priority filter - 10; policy accept;
        ip saddr $B_WAN drop
        ip daddr $B_WAN drop
    }
}"
if ip netns exec "$CUT_NS" nft -f - <<<"$nft_cut"; then
    ok "the direct path is cut: table inet pl_cut on alice's router drops everything to and from $B_WAN"
else
    bad "the drop rule is loaded in alice's router"
fi
sleep 2
j_a=$(newest alice); j_b=$(newest bob)
[ "$(plx_field "$j_a" .path.kind)" = relayed ] && [ "$(plx_field "$j_b" .path.kind)" = relayed ] &&
    ok "both ends moved to a relay ($(plx_field "$j_a" .path.via) / $(plx_field "$j_b" .path.via))" ||
    bad "both ends moved to a relay" "alice: $j_a" "bob: $j_b"
UNCUT_AT=$(now)
ip netns exec "$CUT_NS" nft delete table inet pl_cut && CUT_NS=""
if ip netns exec "$(lab_ns alice-gw)" nft list tables | grep -q pl_cut; then bad "the drop rule is removed again"
else ok "the drop rule is removed again (nft delete table inet pl_cut)"; fi
# Back on the direct path: a third path choice (the first, the failover, the return).
back=0
for _ in $(seq 60); do
    j=$(newest alice)
    [ "$(plx_field "$j" .path.kind)" = direct ] && [ "$(plx_field "$j" .path.changes)" -ge 3 ] 2>/dev/null && { back=1; break; }
    sleep 0.05
done
[ $back = 1 ] && ok "the call moves back to the direct path once the rule is gone ($(plx_field "$j" '.path.since_ms | floor') ms after the dial, path choice $(plx_field "$j" .path.changes))" ||
    bad "the call moves back to the direct path" "$j"
wait "$CALL"
rc=$?
stop_capture "$CA" "$CB"
out=$(jq -c 'select(type == "object")' "$T/direct.out" 2>/dev/null | tail -1)
check "the call goes on to its end (exit 0, hung up, voice both ways)" 'a == 0 && b == "hangup" && c > 300' \
    "$rc" "$(plx_field "$out" .end)" "$(plx_field "$out" .stats.packets_received)"
voice_times "$T/direct_a.pcap" "$A_LAN" >"$T/direct_a.times"
voice_times "$T/direct_b.pcap" "$B_LAN" >"$T/direct_b.times"
set -- $(gap_at "$T/direct_a.times" "$CUT_AT"); GA=${1:-}; OA=${2:-}
set -- $(gap_at "$T/direct_b.times" "$CUT_AT"); GB=${1:-}; OB=${2:-}
CALM_A=$(calm_gap "$T/direct_a.times" "$(awk -v c="$CUT_AT" 'BEGIN { printf "%.3f", c - 1.4 }')" "$CUT_AT")
echo "     direct cut: bob -> alice gap ${GA:-?} ms (starting ${OA:-?} ms after the cut), alice -> bob gap ${GB:-?} ms (at ${OB:-?} ms); before the cut the longest interval was $CALM_A ms"
check_gap "direct -> relay: bob's voice reaches alice again within $GAP_MAX_MS ms" "$GA"
check_gap "direct -> relay: alice's voice reaches bob again within $GAP_MAX_MS ms" "$GB"
set -- $(gap_at "$T/direct_a.times" "$UNCUT_AT")
echo "     back to direct: longest interval at alice ${1:-?} ms"
# Control for the privacy capture: alice is not private, and bob's capture holds packets from her home.
from_a=$(tshark -r "$T/direct_b.pcap" -Y "ip.src == $A_WAN || ip.src == $A_LAN" 2>/dev/null | wc -l)
check "(control) bob's capture of alice's call holds packets from alice's public address" 'a > 100' "$from_a"

# ---- 2. privacy mode: no packet from the private user's home ---------------------------------------------------
P_LAN=$(lab_addr priv); P_WAN=$(lab_wan priv)
privacy_call() { # CALLER CALLEE CAPTURE_HOST
    capture "$3" "priv_$3"; local cap=$CAP_PID
    plx_call "$1" "$2" 3
    stop_capture "$cap"
    local c_kind e_kind rx1 rx2 total from_p from_sn
    c_kind=$(plx_field "$PLX_CALLER" .path.kind); e_kind=$(plx_field "$PLX_CALLEE" .path.kind)
    rx1=$(plx_field "$PLX_CALLER" .stats.packets_received); rx2=$(plx_field "$PLX_CALLEE" .stats.packets_received)
    check "$1 calls $2: answered, relayed at both ends, voice both ways ($c_kind/$e_kind)" \
        'a == 0 && b == "relayed" && c == "relayed" && d > 100' "$PLX_RC" "$c_kind" "$e_kind" "$(( rx1 < rx2 ? rx1 : rx2 ))"
    total=$(tshark -r "$T/priv_$3.pcap" 2>/dev/null | wc -l)
    from_p=$(tshark -r "$T/priv_$3.pcap" -Y "ip.src == $P_WAN || ip.src == $P_LAN || ip.dst == $P_WAN || ip.dst == $P_LAN" 2>/dev/null | wc -l)
    from_sn=$(tshark -r "$T/priv_$3.pcap" -Y "udp.payload[0] == f1" 2>/dev/null | wc -l)
    check "$3's capture over the whole call: $from_sn relayed datagrams, none from or to priv's home ($P_WAN, $P_LAN)" \
        'a > 100 && b > 100 && c == 0' "$total" "$from_sn" "$from_p"
}
privacy_call priv bob bob
privacy_call alice priv alice

# ---- 3. the relaying supernode dies mid-call ------------------------------------------------------------------
# relay_kill CALLER CALLEE SN_A SN_B: the call is relayed through SN_A or SN_B; kill the one carrying it.
relay_kill() {
    local caller=$1 callee=$2 sa=$3 sb=$4
    local lan_c lan_e cc ce call j via alive victim other vpid kill_at rc out gc oc ge oe
    lan_c=$(lab_addr "$caller"); lan_e=$(lab_addr "$callee")
    capture "$caller" "relay_$caller"; cc=$CAP_PID
    capture "$callee" "relay_$callee"; ce=$CAP_PID
    timeout 40 "$B/parley" --home "$T/$caller" --json call "$callee" --tone 440 --duration 6 >"$T/relay_$caller.out" 2>&1 &
    call=$!
    if wait_path "$caller" relayed 100 && wait_path "$callee" relayed 40; then
        ok "$caller calls $callee (two symmetric NATs): the call is relayed"
    else
        bad "$caller's call to $callee is relayed" "$(newest "$caller")"
    fi
    sleep 1.5
    j=$(newest "$caller")
    via=$(plx_field "$j" .path.via)
    alive=$(plx_field "$j" .path.paths_alive)
    if [ "${via%:*}" = "$(lab_addr "$sa")" ]; then victim=$sa; other=$sb; else victim=$sb; other=$sa; fi
    vpid=${PLX_SN_PID[$victim]}
    check "the call has standby paths ($via active, paths alive:)" 'a >= 2' "$alive"
    kill_at=$(now)
    kill -9 "$vpid"
    wait "$vpid" 2>/dev/null
    ok "kill -9 $victim (pid $vpid), whose relay carries the call ($via)"
    sleep 1.5
    local jc je
    jc=$(newest "$caller"); je=$(newest "$callee")
    local oa; oa=$(lab_addr "$other")
    case "$(plx_field "$jc" .path.via)/$(plx_field "$je" .path.via)" in
        $oa:*/$oa:*) ok "both ends moved to $other's relay ($oa)" ;;
        *) bad "both ends moved to $other's relay ($oa)" "$caller: $jc" "$callee: $je" ;;
    esac
    wait "$call"
    rc=$?
    stop_capture "$cc" "$ce"
    out=$(jq -c 'select(type == "object")' "$T/relay_$caller.out" 2>/dev/null | tail -1)
    check "the call goes on to its end (exit 0, hung up, voice both ways)" 'a == 0 && b == "hangup" && c > 250' \
        "$rc" "$(plx_field "$out" .end)" "$(plx_field "$out" .stats.packets_received)"
    voice_times "$T/relay_$caller.pcap" "$lan_c" >"$T/relay_$caller.times"
    voice_times "$T/relay_$callee.pcap" "$lan_e" >"$T/relay_$callee.times"
    set -- $(gap_at "$T/relay_$caller.times" "$kill_at"); gc=${1:-}; oc=${2:-}
    set -- $(gap_at "$T/relay_$callee.times" "$kill_at"); ge=${1:-}; oe=${2:-}
    echo "     $victim killed: $callee -> $caller gap ${gc:-?} ms (starting ${oc:-?} ms after the kill), $caller -> $callee gap ${ge:-?} ms (at ${oe:-?} ms)"
    check_gap "relay -> relay: $callee's voice reaches $caller again within $GAP_MAX_MS ms" "$gc"
    check_gap "relay -> relay: $caller's voice reaches $callee again within $GAP_MAX_MS ms" "$ge"
}
relay_kill carol dave sn1 sn2
# Both ends on sn3: their relays there, and one each at their standby, sn4.
grep -q 'attached to supernode sn3' "$T/erin.log" && grep -q 'attached to supernode sn3' "$T/frank.log" &&
    ok "erin and frank are both attached to sn3" || bad "erin and frank are both attached to sn3"
relay_kill erin frank sn3 sn4
finish
