#!/usr/bin/env bash
# relayd.test.sh - parley-relayd over real sockets on loopback: one side of a
# channel on UDP, the other on a TCP stream. Shown: an allocation over the
# control socket; both sides bind and are answered; datagrams cross both
# ways with each side's own token; a stranger (a wrong token, a stolen token
# from its own address, an unknown channel) gets nothing back and reaches
# nobody, and each of those is counted; the counters on SIGTERM.
set -u
B=${PARLEY_BUILD:-build/release}
T=$(mktemp -d /tmp/pl-relayd-test.XXXXXX)
PID=
passed=0
failed=0
cleanup() {
    [ -n "$PID" ] && { kill -9 "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; }
    rm -rf "$T"
}
trap cleanup EXIT
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; shift; for l in "$@"; do echo "     $l"; done; }
finish() { echo "PL-TEST-SUMMARY $passed $failed"; exit 0; }
num() { printf '%s' "$2" | grep -o "\"$1\":[0-9]*" | head -1 | cut -d: -f2; }

"$B/parley-relayd" --listen 127.0.0.1:0 --tcp-listen 127.0.0.1:0 --control "$T/ctl.sock" >"$T/relayd.out" 2>&1 &
PID=$!
for _ in $(seq 100); do grep -q '^listening' "$T/relayd.out" 2>/dev/null && break; sleep 0.05; done
read -r _ UDP TCP < <(grep '^listening' "$T/relayd.out")
if [ -z "${TCP:-}" ] || [ ! -S "$T/ctl.sock" ]; then bad "parley-relayd starts" "$(cat "$T/relayd.out")"; finish; fi
ok "parley-relayd listens on $UDP and $TCP"

out=$("$B/tests/tools/pl_relay_probe" --control "$T/ctl.sock" --udp "$UDP" --tcp "${TCP%/tcp}" --count 50 2>&1)
line() { printf '%s\n' "$out" | grep "^$1" | head -1; }
[ -n "$(line allocated)" ] && ok "an allocation over the control socket ($(line allocated))" || bad "allocation" "$out"
[ "$(line 'bound udp')" = "bound udp yes" ] && ok "the UDP side's bind is answered" || bad "UDP bind" "$out"
[ "$(line 'bound tcp')" = "bound tcp yes" ] && ok "the TCP side's bind is answered" || bad "TCP bind" "$out"
[ "$(line 'udp->tcp')" = "udp->tcp 50/50" ] && ok "UDP to TCP: 50 of 50, with the receiver's token" || bad "UDP to TCP" "$out"
[ "$(line 'tcp->udp')" = "tcp->udp 50/50" ] && ok "TCP to UDP: 50 of 50, with the receiver's token" || bad "TCP to UDP" "$out"
[ "$(line stranger)" = "stranger 0" ] && ok "the stranger got nothing back and reached nobody" || bad "stranger" "$out"
stats=$(line stats)
if [ "$(num drop_token "$stats")" = 1 ] && [ "$(num drop_source "$stats")" = 1 ] && [ "$(num drop_channel "$stats")" = 1 ] &&
    [ "$(num forwarded "$stats")" = 100 ] && [ "$(num streams_accepted "$stats")" = 1 ]; then
    ok "counted: 100 forwarded, one each of wrong token, wrong source, unknown channel"
else
    bad "counters" "$stats"
fi

kill -TERM "$PID"
wait "$PID" 2>/dev/null
PID=
grep -q '^stats .*forwarded=100 ' "$T/relayd.out" && ok "counters printed on SIGTERM" || bad "counters on exit" "$(cat "$T/relayd.out")"
finish
