#!/usr/bin/env bash
# nat_matrix.test.sh - a call between every pair of NAT types in the lab
# (tests/netlab/lab.sh), same-type pairs included, and between two users
# behind one NAT with and without hairpinning.
#
# One lab, two public supernodes, one daemon per user started once. Types:
# none, full-cone, restricted, port-restricted, symmetric, udp-blocked and
# double; each type has two homes (users <t>a and <t>b), so a same-type pair
# is two different NATs of that type. Each unordered pair {X, Y} is one call
# (<X>a calls <Y>b by name, a tone both ways for a short while). Then the
# same-home rows: two LAN hosts behind one router, for each type that has a
# LAN, and for the three endpoint-independent types with hairpinning on;
# and one pair behind one NAT that listen on their LAN addresses, so they
# publish host candidates (direct over the LAN, no hairpin needed).
#
# For every call the table shows the path each end used at the end of the
# call (direct UDP, relayed UDP, relayed TCP), when it took it, how long the
# call took to be answered and to carry voice, and the packets received at
# each end. The expected path comes from the rule written down in
# docs/nat.md, section 6 (computed here by expect_path): the test asserts
# that every pair connects, carries voice both ways and uses exactly the
# path the rule says (direct where it says direct, relayed elsewhere, TCP on
# the side whose UDP is blocked).
#
# MATRIX_DUR=S sets the seconds of each call after the answer (default 2).
# KEEP=1 keeps a copy of the lab directory (logs, the table) in /tmp/nat_matrix.kept.
# Needs root, nftables and jq; without them it fails (CI runs it as root).
set -u
B=${PARLEY_BUILD:-build/release}
B=$(cd "$B" 2>/dev/null && pwd || echo "$B")
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/netlab/lab.sh"
. "$HERE/netlab/parley.sh"
DUR=${MATRIX_DUR:-2}
passed=0
failed=0
STARTED=$(date +%s.%N)
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; shift; for l in "$@"; do echo "     $l"; done; }
finish() {
    [ -n "$PLX_CA_PID" ] && kill "$PLX_CA_PID" 2>/dev/null && wait "$PLX_CA_PID" 2>/dev/null
    local prefix=${LAB_PREFIX:-}
    [ -n "${KEEP:-}" ] && [ -n "${LAB_DIR:-}" ] && rm -rf /tmp/nat_matrix.kept && cp -r "$LAB_DIR" /tmp/nat_matrix.kept
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
command -v jq >/dev/null || { bad "jq is installed (scripts/setup.sh)"; finish; }
lab_init || { bad "the lab cannot run here: $LAB_ERROR"; finish; }
T=$LAB_DIR
chmod 755 "$T"

# ---- the NAT types and the rule ------------------------------------------------------------------
TYPES="none full-cone restricted port-restricted symmetric udp-blocked double"
short() {
    case $1 in
        none) echo pub ;; full-cone) echo fc ;; restricted) echo rc ;; port-restricted) echo prc ;;
        symmetric) echo sym ;; udp-blocked) echo ub ;; double) echo dbl ;;
        full-cone-hairpin) echo fch ;; restricted-hairpin) echo rch ;; port-restricted-hairpin) echo prch ;;
    esac
}
# RFC 4787 behaviour of each type, as docs/nat.md (1.3) builds it. A double
# NAT is two endpoint-independent, address-and-port-dependent NATs in a row,
# which together behave as one.
mapping_of() {
    case ${1%-hairpin} in
        none) echo none ;; symmetric) echo apdm ;; udp-blocked) echo blocked ;; *) echo eim ;;
    esac
}
filtering_of() {
    case ${1%-hairpin} in
        none) echo none ;; full-cone) echo eif ;; restricted) echo adf ;; *) echo apdf ;;
    esac
}
# expect_path X Y SAME_HOME [HOST_ADDRESSES] -> "direct" or "relayed"
# (docs/nat.md, section 6).
expect_path() {
    local x=$1 y=$2 same=$3 hostc=${4:-0} mx my fx fy
    mx=$(mapping_of "$x"); my=$(mapping_of "$y"); fx=$(filtering_of "$x"); fy=$(filtering_of "$y")
    # 1. No UDP, no direct path.
    [ "$mx" = blocked ] || [ "$my" = blocked ] && { echo relayed; return; }
    # 2. Behind one NAT: unless they publish their LAN addresses (host
    #    candidates), the only address either knows of the other is the
    #    NAT's public one; only a NAT that hairpins takes it back in.
    if [ "$same" = 1 ]; then
        [ "$hostc" = 1 ] && { echo direct; return; }
        case $x in *-hairpin) echo direct ;; *) echo relayed ;; esac
        return
    fi
    # 3. Both mappings endpoint-independent (or no NAT): each side's packets
    #    leave from the address the other was told, both NATs open: direct.
    [ "$mx" != apdm ] && [ "$my" != apdm ] && { echo direct; return; }
    # 4. Both symmetric: neither side can learn the port the other's NAT
    #    will use towards it, and both filter by port: relayed.
    [ "$mx" = apdm ] && [ "$my" = apdm ] && { echo relayed; return; }
    # 5. One symmetric: its packets come from a new port, which the other
    #    NAT lets in only if it does not filter by port (none, endpoint-
    #    independent, address-dependent); the other side then answers the
    #    new (peer-reflexive) address.
    local f=$fx
    [ "$mx" = apdm ] && f=$fy
    case $f in apdf) echo relayed ;; *) echo direct ;; esac
}
transport_of() { [ "$(mapping_of "$1")" = blocked ] && echo tcp || echo udp; }

# ---- the users --------------------------------------------------------------------------------------
# Cross-home: <t>a and <t>b for every type. Same home: <t>a2 behind <t>a's
# router; hairpin homes <t>ha with a second host <t>ha2; and hca, hca2
# behind one port-restricted NAT, listening on their LAN addresses (so they
# publish host candidates).
USERS=()
declare -A HOST_TYPE=()
for t in $TYPES; do
    s=$(short "$t")
    USERS+=("${s}a" "${s}b")
    HOST_TYPE[${s}a]=$t
    HOST_TYPE[${s}b]=$t
    if [ "$t" != none ]; then USERS+=("${s}a2"); HOST_TYPE[${s}a2]=$t; fi
done
for t in full-cone-hairpin restricted-hairpin port-restricted-hairpin; do
    s=$(short "$t")
    USERS+=("${s}a" "${s}a2")
    HOST_TYPE[${s}a]=$t
    HOST_TYPE[${s}a2]=$t
done
USERS+=(hca hca2)
t0=$(date +%s.%N)
plx_register sn1 sn2 "${USERS[@]}" || { bad "identities are registered" "$LAB_ERROR"; finish; }
echo "     ${#USERS[@]} users and 2 supernodes registered in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"

build() {
    lab_internet || return 1
    local t s
    for t in $TYPES; do
        s=$(short "$t")
        lab_home "${s}a" "$t" || return 1
        lab_home "${s}b" "$t" || return 1
        [ "$t" = none ] || lab_lan_host "${s}a" "${s}a2" || return 1
    done
    for t in full-cone-hairpin restricted-hairpin port-restricted-hairpin; do
        s=$(short "$t")
        lab_home "${s}a" "$t" || return 1
        lab_lan_host "${s}a" "${s}a2" || return 1
    done
    lab_home hca port-restricted || return 1
    lab_lan_host hca hca2 || return 1
    plx_supernodes
}
t0=$(date +%s.%N)
build || { bad "the lab is built" "$LAB_ERROR"; finish; }
i=0
for u in "${USERS[@]}"; do
    # Half the users attach to sn1 first, half to sn2: calls cross supernodes.
    list=$T/sn1.list
    [ $((i % 2)) = 1 ] && list=$T/sn1.rev
    i=$((i + 1))
    listen=()
    case $u in hca|hca2) listen=(--listen "$(lab_addr "$u"):0") ;; esac
    plx_start "$u" "$u" --bootstrap-file "$list" --auto-answer --answer-from tone:660 --ring-timeout 10 "${listen[@]}" ||
        { bad "$u starts" "$LAB_ERROR"; finish; }
done
if plx_wait_published "${USERS[@]}"; then
    ok "lab: ${#USERS[@]} users in $((${#USERS[@]} - 2)) namespaces behind every NAT type, attached and published ($(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s)"
else
    bad "every user attaches and publishes" "$LAB_ERROR"
    finish
fi

# ---- the calls --------------------------------------------------------------------------------------
TABLE=$T/table.txt
row_fmt='%-24s %-24s %-8s %-11s %-11s %6s %6s %7s %7s %9s  %s\n'
printf "$row_fmt" "caller" "callee" "expected" "caller" "callee" "answer" "voice" "path at" "changes" "rx c/c" "" >"$TABLE"
printf "$row_fmt" "" "" "" "path" "path" "ms" "ms" "ms" "" "packets" "" >>"$TABLE"
rows=0
good_rows=0
n_direct=0
n_relayed=0
# one_call LABEL_X LABEL_Y CALLER CALLEE TYPE_X TYPE_Y SAME_HOME [HOST_ADDRESSES]
one_call() {
    local lx=$1 ly=$2 caller=$3 callee=$4 tx=$5 ty=$6 same=$7 hostc=${8:-0}
    local want c_kind c_tr e_kind e_tr ans media since changes rx1 rx2 verdict
    want=$(expect_path "$tx" "$ty" "$same" "$hostc")
    plx_call "$caller" "$callee" "$DUR"
    c_kind=$(plx_field "$PLX_CALLER" .path.kind); c_tr=$(plx_field "$PLX_CALLER" .path.transport)
    e_kind=$(plx_field "$PLX_CALLEE" .path.kind); e_tr=$(plx_field "$PLX_CALLEE" .path.transport)
    ans=$(plx_field "$PLX_CALLER" '.answered_after_ms | floor'); media=$(plx_field "$PLX_CALLER" '.first_media_ms | floor')
    since=$(plx_field "$PLX_CALLER" '.path.since_ms | floor'); changes=$(plx_field "$PLX_CALLER" .path.changes)
    rx1=$(plx_field "$PLX_CALLER" .stats.packets_received); rx2=$(plx_field "$PLX_CALLEE" .stats.packets_received)
    local want_c="$want/$(transport_of "$tx")" want_e="$want/$(transport_of "$ty")"
    # Voice both ways: at least 60% of the packets a call this long carries.
    local min_rx=$(awk -v d="$DUR" 'BEGIN { printf "%d", d * 50 * 0.6 }')
    verdict=ok
    local why=""
    [ "$PLX_RC" = 0 ] || why="$why exit $PLX_RC;"
    [ "$(plx_field "$PLX_CALLER" .end)" = hangup ] || why="$why caller's end '$(plx_field "$PLX_CALLER" .reason)';"
    [ "${rx1:-0}" -ge "$min_rx" ] 2>/dev/null || why="$why caller heard ${rx1:-0} packets;"
    [ "${rx2:-0}" -ge "$min_rx" ] 2>/dev/null || why="$why callee heard ${rx2:-0} packets;"
    [ "$c_kind/$c_tr" = "$want_c" ] || why="$why caller's path $c_kind/$c_tr, not $want_c;"
    [ "$e_kind/$e_tr" = "$want_e" ] || why="$why callee's path $e_kind/$e_tr, not $want_e;"
    [ -n "$why" ] && verdict="FAIL:$why"
    printf "$row_fmt" "$lx" "$ly" "$want" "$c_kind/$c_tr" "$e_kind/$e_tr" "${ans:--}" "${media:--}" "${since:--}" \
        "${changes:--}" "${rx1:-0}/${rx2:-0}" "$([ "$verdict" = ok ] && echo ok || echo FAIL)" >>"$TABLE"
    rows=$((rows + 1))
    [ "$want" = direct ] && n_direct=$((n_direct + 1)) || n_relayed=$((n_relayed + 1))
    if [ "$verdict" = ok ]; then
        good_rows=$((good_rows + 1))
    else
        FAILED_ROWS+=("$lx -> $ly ($caller -> $callee):$why")
    fi
}
FAILED_ROWS=()
t0=$(date +%s.%N)
set -- $TYPES
ntypes=$#
types=($TYPES)
for ((x = 0; x < ntypes; x++)); do
    for ((y = x; y < ntypes; y++)); do
        tx=${types[$x]} ty=${types[$y]}
        one_call "$tx" "$ty" "$(short "$tx")a" "$(short "$ty")b" "$tx" "$ty" 0
    done
done
cross=$rows
for t in full-cone full-cone-hairpin restricted restricted-hairpin port-restricted port-restricted-hairpin \
    symmetric double udp-blocked; do
    s=$(short "$t")
    one_call "$t" "(same home)" "${s}a" "${s}a2" "$t" "$t" 1
done
one_call "port-restricted" "(same home, LAN addr)" hca hca2 port-restricted port-restricted 1 1
elapsed=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
echo "     $rows calls ($cross pairs of homes, $((rows - cross)) same-home pairs) in $elapsed s (LAN addr: the two publish host candidates):"
sed 's/^/     /' "$TABLE"
for r in "${FAILED_ROWS[@]}"; do echo "     failed: $r"; done
[ "$cross" = $((ntypes * (ntypes + 1) / 2)) ] && ok "every unordered pair of the $ntypes NAT types was called ($cross calls)" ||
    bad "every unordered pair was called" "$cross calls"
[ "$good_rows" = "$rows" ] && ok "every pair connects, voice flows both ways, and the path is the rule's ($rows of $rows)" ||
    bad "every pair connects, voice flows both ways, and the path is the rule's" "$good_rows of $rows"
# The rule is not trivially met: it calls for both outcomes.
[ "$n_direct" -gt 0 ] && [ "$n_relayed" -gt 0 ] && ok "the rule expects both outcomes ($n_direct direct, $n_relayed relayed)" ||
    bad "the rule expects both outcomes" "$n_direct direct, $n_relayed relayed"
finish
