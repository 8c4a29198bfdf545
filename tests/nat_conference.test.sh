#!/usr/bin/env bash
# nat_conference.test.sh - a five-party conference through real Linux NATs
# (tests/netlab/lab.sh). Two supernodes on public addresses; five users in
# homes behind five different NATs (alice port-restricted, bob symmetric,
# carol full cone, dave none: a public address, erin restricted), each
# sending different speech (tests/media/make_speech.sh: five eSpeak NG
# talkers, no sentence shared). Shown:
#  - alice starts the conference (`parley conference bob carol dave erin`);
#    once everyone has answered and reported, hosting moves to the best
#    connected participant: dave, the only one without a NAT; all five
#    rosters agree on the host and its successor;
#  - every party's recording holds every other party's speech and not its
#    own: the peak normalised cross-correlation (parley-quality) of each of
#    the five recordings with each of the five talkers;
#  - the host leaves: the successor hosts the other three, through the NATs;
#    then everyone leaves and the lab is torn down.
# Needs root and nftables; without them it fails (CI runs it as root).
set -u
B=${PARLEY_BUILD:-build/release}
B=$(cd "$B" 2>/dev/null && pwd || echo "$B")
CA="$B/parley-ca"
PL="$B/parley"
PD="$B/parleyd"
Q="$B/parley-quality"
SPEECH="$B/speech"
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/netlab/lab.sh"
passed=0
failed=0
CA_PID=
CONF_PID=
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; shift; for l in "$@"; do echo "     $l"; done; }
expect() { if printf '%s' "$3" | grep -qE -- "$2"; then ok "$1"; else bad "$1" "no /$2/ in: $3"; fi; }
wait_line() { for _ in $(seq "${3:-200}"); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done; return 1; }
finish() {
    [ -n "$CA_PID" ] && kill "$CA_PID" 2>/dev/null && wait "$CA_PID" 2>/dev/null
    [ -n "$CONF_PID" ] && kill "$CONF_PID" 2>/dev/null && wait "$CONF_PID" 2>/dev/null
    local prefix=${LAB_PREFIX:-}
    # KEEP=1: a copy of the lab directory (logs, recordings) stays in /tmp/nat_conference.kept.
    [ -n "${KEEP:-}" ] && [ -n "${LAB_DIR:-}" ] && cp -r "$LAB_DIR" /tmp/nat_conference.kept
    lab_down
    if [ -n "$prefix" ]; then
        left=$(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$prefix" || true)
        [ -z "$left" ] && ok "no namespace of the lab is left" || bad "no namespace of the lab is left" "$left"
    fi
    echo "PL-TEST-SUMMARY $passed $failed"
    exit 0
}
conf_json() { "$PL" --home "$T/$1" --json conference 2>/dev/null; }
field() { printf '%s' "$2" | grep -o "\"$1\":\"[^\"]*\"" | head -1 | cut -d'"' -f4; }
connected() { conf_json "$1" | grep -o '"state":"connected"' | wc -l; }
wait_connected() { # USER N [TRIES of 100 ms]
    for _ in $(seq "${3:-100}"); do [ "$(connected "$1")" -eq "$2" ] && return 0; sleep 0.1; done
    return 1
}
wait_host() { # USER HOST [TRIES of 100 ms]
    for _ in $(seq "${3:-100}"); do
        local j
        j=$(conf_json "$1")
        [ "$(field host "$j")" = "$2" ] && [ "$(field role "$j")" != none ] && return 0
        sleep 0.1
    done
    return 1
}
# corr TALKER RECORDING: the peak normalised cross-correlation
corr() { "$Q" "$SPEECH/talker$1.wav" "$2" --json --max-lag-ms 8000 --min-stoi off --max-dead-air off \
    --max-delay-ms off --min-r off 2>/dev/null | grep -o '"correlation":[-0-9.e]*' | cut -d: -f2 | tr -d -; }

for tool in "$CA" "$PL" "$PD" "$Q"; do [ -x "$tool" ] || { bad "$tool is built"; finish; }; done
tests/media/make_speech.sh "$SPEECH" || { bad "make_speech.sh makes the test speech"; finish; }
lab_init || { bad "the lab cannot run here: $LAB_ERROR"; finish; }
T=$LAB_DIR
chmod 755 "$T"

# ---- identities, registered on loopback before the lab exists (certificates are files) --------------
USERS="alice bob carol dave erin"
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
    lab_home carol full-cone || return 1
    lab_home dave none || return 1
    lab_home erin restricted || return 1
}
build || { bad "the lab is built" "$LAB_ERROR"; finish; }
ok "lab: two public supernodes; homes behind port-restricted, symmetric, full-cone, no and restricted NATs"

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
n=1
for u in $USERS; do
    boot="$T/sn.list"
    [ $((n % 2)) -eq 0 ] && boot="$T/sn.rev"
    # dave listens on his public address: discovery can then tell that he
    # is not behind a NAT (on the wildcard address it cannot).
    listen=()
    [ "$u" = dave ] && listen=(--listen "$(lab_addr dave):7500")
    if [ "$u" = alice ]; then
        start "$u" "$u" --bootstrap-file "$boot" || finish
    else
        start "$u" "$u" --bootstrap-file "$boot" "${listen[@]}" --auto-answer \
            --answer-from "$SPEECH/talker$n.wav" --answer-to "$T/rec$n.wav" || finish
    fi
    n=$((n + 1))
done
all_up=1
for u in $USERS; do
    wait_line "$T/$u.log" 'record published' 300 || { all_up=0; bad "$u attaches and publishes" "$(tail -3 "$T/$u.log")"; }
    # The NAT class goes into the conference report: wait for it.
    wait_line "$T/$u.log" 'NAT discovery' 200 || { all_up=0; bad "$u discovers its NAT" "$(tail -3 "$T/$u.log")"; }
done
[ $all_up = 1 ] && ok "five users behind five NAT types attached, published and know their NAT"

# ---- alice starts; hosting moves to dave -----------------------------------------------------------------
t0=$(date +%s.%N)
"$PL" --home "$T/alice" conference bob carol dave erin --from "$SPEECH/talker1.wav" --to "$T/rec1.wav" \
    >"$T/conf.out" 2>&1 &
CONF_PID=$!
if wait_host alice dave 150 && wait_connected dave 5 100; then
    ok "hosting moved to dave (no NAT) and all five are connected to him ($(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s after the start)"
else
    bad "hosting moves to dave with five connected" "$(conf_json alice)" "$(conf_json dave)"
fi
j=$(conf_json dave)
succ=$(field successor "$j")
[ "$(field role "$j")" = host ] && [ -n "$succ" ] && ok "dave hosts; his successor is $succ" || bad "dave hosts, with a successor" "$j"
same=1
for u in alice bob carol erin; do
    jj=$(conf_json "$u")
    [ "$(field role "$jj")" = participant ] && [ "$(field host "$jj")" = dave ] && [ "$(field successor "$jj")" = "$succ" ] ||
        { same=0; bad "$u's roster agrees" "$jj"; }
done
[ $same = 1 ] && ok "alice, bob, carol and erin are participants and agree on the host and the successor"
expect "the roster carries each one's NAT class (dave open, bob symmetric)" '"name":"bob".*"nat":"symmetric".*"name":"dave".*"nat":"open"' "$j"
legs=$(printf '%s' "$j" | grep -o '"path":"[a-z]*"' | cut -d'"' -f4 | sort | uniq -c | tr -s ' \n' ' ')
echo "     the host's legs: $legs"
expect "every leg of the host carries media" '"leg":\{"call":[0-9]+,"media":true' "$j"

# Each talker is about 10 s long: wait until everyone's is over.
sleep 11
# Two different talkers correlate by chance at 0.03-0.05; a voice in the
# mix at 0.3-0.55 here, down to about 0.08 under ASan on a loaded machine,
# where late scheduling stretches the recordings against the sources. A
# recording holds a talker when the correlation is above chance (0.06) and
# at least 1.5 times that of its own talker; it does not hold its own when
# that stays at chance (< 0.07).
table=""
fails=0
for r in 1 2 3 4 5; do
    own=$(corr "$r" "$T/rec$r.wav")
    [ -n "$own" ] || own=1
    for t in 1 2 3 4 5; do
        if [ "$t" = "$r" ]; then c=$own; else c=$(corr "$t" "$T/rec$r.wav"); fi
        [ -n "$c" ] || c=-1
        table="$table t$t@rec$r=$c"
        if [ "$t" = "$r" ]; then
            awk -v c="$c" 'BEGIN { exit !(c >= 0 && c < 0.07) }' || { fails=$((fails + 1)); echo "     rec$r holds its own talker: $c"; }
        else
            awk -v c="$c" -v o="$own" 'BEGIN { exit !(c > 0.06 && c >= 1.5 * o) }' ||
                { fails=$((fails + 1)); echo "     rec$r lacks talker$t: $c (its own: $own)"; }
        fi
    done
done
echo "    $table"
[ $fails -eq 0 ] && ok "each recording holds the other four talkers (correlation > 0.06 and >= 1.5x its own) and not its own (< 0.07)" ||
    bad "recordings against the talkers" "$table"

# ---- the host leaves ------------------------------------------------------------------------------------
succ=$(field successor "$(conf_json dave)")
"$PL" --home "$T/dave" conference leave >/dev/null
wait_line "$T/dave.log" 'conference: over (left)' 60 && ok "dave (the host) left" || bad "dave leaves" "$(grep conference "$T/dave.log" | tail -3)"
if wait_connected "$succ" 4 150; then ok "the successor $succ hosts the other three through the NATs"
else bad "$succ hosts the other three" "$(conf_json "$succ")"; fi
agree=1
for u in alice bob carol erin; do
    [ "$u" = "$succ" ] && continue
    jj=$(conf_json "$u")
    [ "$(field host "$jj")" = "$succ" ] || { agree=0; bad "$u follows $succ" "$jj"; }
done
[ $agree = 1 ] && ok "their rosters name $succ as the host"

# ---- everyone leaves ------------------------------------------------------------------------------------
# alice's `parley conference` leaves on Ctrl-C, or ends by itself when she
# is the one left.
[ "$succ" != alice ] && kill -INT "$CONF_PID"
for u in bob carol erin; do [ "$u" != "$succ" ] && "$PL" --home "$T/$u" conference leave >/dev/null; done
wait "$CONF_PID"
rc=$?
CONF_PID=
[ $rc -eq 0 ] && ok "alice's parley conference is over (exit 0)" || bad "parley conference exits 0" "exit $rc: $(cat "$T/conf.out")"
expect "it followed the conference: the move to dave, then $succ" "host dave .*host $succ .*conference over" "$(tr '\n' ' ' <"$T/conf.out")"
wait_line "$T/$succ.log" 'conference: over (everyone else left)' 60 && ok "the last one left alone ends it" ||
    bad "the conference ends" "$(grep conference "$T/$succ.log" | tail -3)"
finish
