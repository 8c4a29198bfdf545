#!/usr/bin/env bash
# nat_call.test.sh - calls by name through real Linux NATs (tests/netlab/lab.sh).
# Two supernodes on public addresses; users in homes behind every NAT type
# the lab builds, one in privacy mode. Shown:
#  - alice (port-restricted cone) calls bob (symmetric) by name; neither can
#    reach the other's address, so the first contact goes through the
#    supernodes and the call through a supernode's relay; both directions
#    carry speech that parley-quality passes;
#  - a capture (tcpdump) on both supernodes holds no audio in the clear: no
#    captured datagram reads as a Parley voice packet at any offset (the same
#    scan reads every payload of alice's media trace), and none of the Opus
#    frames alice's daemon logged as sent appears in the capture (the same
#    search finds pieces of the captured datagrams themselves);
#  - alice reaches a callee behind each of the other NAT types (none, full
#    cone, restricted, double NAT, UDP blocked: relayed over TCP) and a
#    callee in privacy mode, and voice flows both ways in each call.
# Needs root, nftables and tcpdump/tshark; without them it fails (CI runs it as root).
set -u
B=${PARLEY_BUILD:-build/release}
B=$(cd "$B" 2>/dev/null && pwd || echo "$B")
CA="$B/parley-ca"
PL="$B/parley"
PD="$B/parleyd"
Q="$B/parley-quality"
SCAN="$B/tests/tools/pl_mediascan"
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
wait_line() { for _ in $(seq "${3:-200}"); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done; return 1; }
num() { printf '%s' "$2" | grep -o "\"$1\":[-0-9.e]*" | head -1 | cut -d: -f2; }
finish() {
    [ -n "$CA_PID" ] && kill "$CA_PID" 2>/dev/null && wait "$CA_PID" 2>/dev/null
    local prefix=${LAB_PREFIX:-}
    # KEEP=1: a copy of the lab directory (logs, captures, recordings) stays in /tmp/nat_call.kept.
    [ -n "${KEEP:-}" ] && [ -n "${LAB_DIR:-}" ] && cp -r "$LAB_DIR" /tmp/nat_call.kept
    lab_down
    if [ -n "$prefix" ]; then
        left=$(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$prefix" || true)
        [ -z "$left" ] && ok "no namespace of the lab is left" || bad "no namespace of the lab is left" "$left"
    fi
    echo "PL-TEST-SUMMARY $passed $failed"
    exit 0
}

for tool in "$CA" "$PL" "$PD" "$Q" "$SCAN"; do [ -x "$tool" ] || { bad "$tool is built"; finish; }; done
for tool in tcpdump tshark; do command -v $tool >/dev/null || { bad "$tool is installed (scripts/setup.sh)"; finish; }; done
tests/media/make_speech.sh "$SPEECH" || { bad "make_speech.sh makes the test speech"; finish; }
lab_init || { bad "the lab cannot run here: $LAB_ERROR"; finish; }
T=$LAB_DIR
chmod 755 "$T"

# ---- identities, registered on loopback before the lab exists (certificates are files) --------------
USERS="alice bob open cone restr dbl ublk priv"
FP=$("$CA" init --dir "$T/ca") || { bad "ca init"; finish; }
"$CA" serve --dir "$T/ca" --listen 127.0.0.1:0 --rate 1000 --burst 1000 >"$T/ca.out" 2>>"$T/ca.log" &
CA_PID=$!
wait_line "$T/ca.out" '^listening' || { bad "ca start"; finish; }
CA_ADDR=$(awk '/^listening/{print $2}' "$T/ca.out")
for u in sn1 sn2 $USERS; do
    "$PL" --home "$T/$u" keygen >/dev/null && "$PL" --home "$T/$u" register "$u" --ca "$CA_ADDR" --ca-key "$FP" >/dev/null ||
        { bad "register $u"; finish; }
done
kill "$CA_PID"; wait "$CA_PID" 2>/dev/null; CA_PID=
key_of() { "$PL" --home "$T/$1" --json show | sed -n 's/.*"fingerprint":"\([0-9a-f]*\)".*/\1/p'; }

# ---- the lab ------------------------------------------------------------------------------------
build() {
    lab_internet || return 1
    lab_public sn1 203.0.113.10 198.51.100.10 || return 1
    lab_public sn2 203.0.113.20 || return 1
    lab_home alice port-restricted || return 1
    lab_home bob symmetric || return 1
    lab_home open none || return 1
    lab_home cone full-cone || return 1
    lab_home restr restricted || return 1
    lab_home dbl double || return 1
    lab_home ublk udp-blocked || return 1
    lab_home priv port-restricted || return 1
}
build || { bad "the lab is built" "$LAB_ERROR"; finish; }
ok "lab: two public supernodes; homes behind port-restricted, symmetric, none, full-cone, restricted, double and udp-blocked NATs"

echo "$(key_of sn1) 203.0.113.10:7400" >"$T/sn.list"
echo "$(key_of sn2) 203.0.113.20:7400" >>"$T/sn.list"
tac "$T/sn.list" >"$T/sn.rev"
start() { # HOST USER ARGS...
    local host=$1 u=$2
    shift 2
    lab_spawn "$host" "$T/$u.log" "$PD" --home "$T/$u" "$@"
    wait_line "$T/$u.log" '^listening' || { bad "$u starts" "$(tail -3 "$T/$u.log")"; return 1; }
}
start sn1 sn1 --role supernode --listen 203.0.113.10:7400 --alt-listen 198.51.100.10:7401 --bootstrap-file "$T/sn.list" || finish
start sn2 sn2 --role supernode --listen 203.0.113.20:7400 --bootstrap-file "$T/sn.list" || finish
start alice alice --bootstrap-file "$T/sn.list" --media-trace "$T/alice.trace" || finish
start bob bob --bootstrap-file "$T/sn.rev" --auto-answer --answer-from "$SPEECH/talker2.wav" --answer-to "$T/rec_bob.wav" || finish
for u in open cone restr dbl ublk; do
    start "$u" "$u" --bootstrap-file "$T/sn.rev" --auto-answer --answer-from tone:660 || finish
done
start priv priv --bootstrap-file "$T/sn.rev" --auto-answer --answer-from tone:660 --private || finish
all_up=1
for u in alice bob open cone restr dbl ublk priv; do
    wait_line "$T/$u.log" 'record published' 300 || { all_up=0; bad "$u attaches and publishes" "$(tail -3 "$T/$u.log")"; }
done
[ $all_up = 1 ] && ok "eight users attached and published (ublk over TCP)"
wait_line "$T/alice.log" 'NAT discovery' 100
expect "discovery: alice is behind a port-restricted cone" 'mapping endpoint-independent, filtering address-and-port-dependent' "$(grep 'NAT discovery' "$T/alice.log")"
wait_line "$T/bob.log" 'NAT discovery' 100
expect "discovery: bob is behind a symmetric NAT (address-and-port-dependent mapping)" 'mapping address-and-port-dependent' "$(grep 'NAT discovery' "$T/bob.log")"
expect "ublk fell back to TCP" 'over TCP' "$(grep 'attached to supernode' "$T/ublk.log")"

# ---- alice (port-restricted) calls bob (symmetric): speech both ways, relayed -----------------------------
lab_spawn sn1 "$T/cap1.out" tcpdump -i eth0 -U -n -w "$T/sn1.pcap" udp
CAP1=$LAB_PID
lab_spawn sn2 "$T/cap2.out" tcpdump -i eth0 -U -n -w "$T/sn2.pcap" udp
CAP2=$LAB_PID
sleep 1
out=$(timeout 40 "$PL" --home "$T/alice" call bob --from "$SPEECH/talker1.wav" --to "$T/rec_alice.wav")
rc=$?
sleep 0.5
kill "$CAP1" "$CAP2" 2>/dev/null
wait "$CAP1" "$CAP2" 2>/dev/null
[ $rc -eq 0 ] && ok "alice calls bob by name across two filtering NATs (exit 0)" || bad "alice calls bob" "exit $rc: $out"
expect "the call is relayed by a supernode" '^path +relayed over udp via 203\.0\.113\.(10|20):7400' "$out"
echo "     $(printf '%s' "$out" | grep -E '^(ringing|answered|path|call ended)' | tr '\n' ';' | sed 's/;/; /g')"
J1=$("$Q" "$SPEECH/talker2.wav" "$T/rec_alice.wav" --json 2>&1)
rc1=$?
J2=$("$Q" "$SPEECH/talker1.wav" "$T/rec_bob.wav" --json 2>&1)
rc2=$?
echo "     bob -> alice: STOI $(num stoi "$J1"), delay $(num delay_ms "$J1") ms, R $(num r "$J1")"
echo "     alice -> bob: STOI $(num stoi "$J2"), delay $(num delay_ms "$J2") ms, R $(num r "$J2")"
[ $rc1 -eq 0 ] && ok "bob's speech reaches alice through the NATs: parley-quality passes" || bad "bob -> alice scores" "$J1"
[ $rc2 -eq 0 ] && ok "alice's speech reaches bob through the NATs: parley-quality passes" || bad "alice -> bob scores" "$J2"
expect "bob's first contact came through the supernodes (a knock)" 'incoming call from alice' "$(cat "$T/bob.log")"

# ---- what the relays saw ---------------------------------------------------------------------------------
tshark -r "$T/sn1.pcap" -T fields -e udp.payload 2>/dev/null >"$T/payloads.hex"
tshark -r "$T/sn2.pcap" -T fields -e udp.payload 2>/dev/null >>"$T/payloads.hex"
S=$("$SCAN" <"$T/payloads.hex")
echo "     captured on the supernodes: $S"
check "the supernodes relayed the call: over 500 relay-framed datagrams captured" 'a > 500' "$(num relay_framed "$S")"
check "no captured datagram reads as a voice packet, at any offset" 'a == 0 && b > 0' "$(num clear_voice "$S")" "$(num datagrams "$S")"
TS=$("$SCAN" --trace <"$T/alice.trace")
check "the same scan reads every payload alice's daemon sent before sealing" 'a > 200 && a == b' \
    "$(num clear_voice "$TS")" "$(num datagrams "$TS")"
# The Opus frames alice sent (the bytes after the 8-byte voice header), 24
# bytes or longer, searched for in the captured bytes.
awk '{ h = substr($2, 17); if (length(h) >= 48) print substr(h, 1, 48) }' "$T/alice.trace" | sort -u >"$T/opus.pat"
tr -d ',' <"$T/payloads.hex" >"$T/payloads.flat"
n_pat=$(wc -l <"$T/opus.pat")
found=$(grep -c -F -f "$T/opus.pat" "$T/payloads.flat")
check "none of the $n_pat Opus frames alice sent appears in the capture" 'a > 200 && b == 0' "$n_pat" "$found"
# The search itself works: 24-byte pieces of captured relayed datagrams are found.
grep '^f1' "$T/payloads.flat" | awk 'length($0) > 140 { print substr($0, 61, 48) }' | head -50 | sort -u >"$T/ctl.pat"
ctl=$(grep -c -F -f "$T/ctl.pat" "$T/payloads.flat")
check "(control: pieces of captured datagrams are found by the same search)" 'a > 0 && b >= a' "$(wc -l <"$T/ctl.pat")" "$ctl"

# ---- a callee behind every other NAT type, and one in privacy mode ------------------------------------------
for u in open cone restr dbl ublk priv; do
    out=$(timeout 30 "$PL" --home "$T/alice" --json call "$u" --tone 440 --duration 2 2>&1)
    rc=$?
    kind=$(printf '%s' "$out" | grep -o '"kind":"[a-z]*"' | cut -d'"' -f4)
    tr=$(printf '%s' "$out" | grep -o '"transport":"[a-z]*"' | cut -d'"' -f4)
    rx=$(num packets_received "$out")
    theirs=$("$PL" --home "$T/$u" --json calls 2>/dev/null)
    rx2=$(num packets_received "$theirs")
    kind2=$(printf '%s' "$theirs" | grep -o '"kind":"[a-z]*"' | head -1 | cut -d'"' -f4)
    tr2=$(printf '%s' "$theirs" | grep -o '"transport":"[a-z]*"' | head -1 | cut -d'"' -f4)
    home=${LAB_HOME_TYPE[$u]}
    [ "$u" = priv ] && home="port-restricted, privacy mode"
    check "alice -> $u ($home): answered, voice both ways (alice: $kind/$tr, $u: $kind2/$tr2)" \
        'a == 0 && b > 50 && c > 50' "$rc" "$rx" "$rx2"
    case $u in
        ublk) expect "ublk's side of the call is relayed over TCP" 'relayed/tcp' "$kind2/$tr2" ;;
        priv) expect "the private callee is reached only through relays" 'relayed' "$kind/$kind2" ;;
    esac
done
finish
