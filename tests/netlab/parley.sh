# parley.sh - Parley daemons in the NAT lab (tests/netlab/lab.sh), for the
# lab's call tests (tests/nat_matrix.test.sh, tests/nat_failover.test.sh).
#
# Sourced after lab.sh by a test that defines ok() and bad() and sets
# B (the build directory, absolute) and T (a directory for the run, usually
# $LAB_DIR). It gives:
#
#   plx_register USER...        a CA on loopback (before the lab exists; the
#                               certificates are files), an identity for
#                               every USER under $T/USER; the CA stops again
#   plx_key_of USER             the user's key fingerprint (hex)
#   plx_supernodes [N1 A1 ALT1 N2 A2]
#                               two public hosts, each running a supernode,
#                               that know each other: N1 (default sn1) at A1
#                               (203.0.113.10) and ALT1 (198.51.100.10: NAT
#                               discovery's second address), N2 (sn2) at A2
#                               (203.0.113.20); writes the bootstrap files
#                               $T/N1.list (N1 first) and $T/N1.rev (N2
#                               first); their pids in PLX_SN_PID[N1], [N2]
#   plx_start HOST USER ARGS... parleyd for USER inside HOST (log $T/USER.log),
#                               waits for "listening"; sets PLX_PID
#   plx_wait_published USER...  waits until every user's record is published
#   plx_call CALLER CALLEE DUR [ARGS...]
#                               CALLER calls CALLEE by name with a 440 Hz
#                               tone for DUR seconds after the answer; the
#                               callee's daemon answers by itself. Leaves the
#                               caller's view of the ended call in PLX_CALLER
#                               and the callee's in PLX_CALLEE (JSON objects,
#                               "{}" when there is none), the CLI's exit code
#                               in PLX_RC
#   plx_field JSON FILTER       a jq filter of a call object ("" for null)
#
# Every daemon is started with lab_spawn, so lab_down ends it.

PLX_PID=""
PLX_CA_PID=""
declare -A PLX_SN_PID=()
PLX_CALLER="{}"
PLX_CALLEE="{}"
PLX_RC=0

plx_wait_line() { # FILE PATTERN [TRIES of 50 ms]
    local _
    for _ in $(seq "${3:-200}"); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
    return 1
}

plx_register() {
    local fp u
    fp=$("$B/parley-ca" init --dir "$T/ca") || { LAB_ERROR="parley-ca init failed"; return 1; }
    "$B/parley-ca" serve --dir "$T/ca" --listen 127.0.0.1:0 --rate 1000 --burst 1000 >"$T/ca.out" 2>>"$T/ca.log" &
    PLX_CA_PID=$!
    if ! plx_wait_line "$T/ca.out" '^listening'; then
        kill "$PLX_CA_PID" 2>/dev/null; wait "$PLX_CA_PID" 2>/dev/null; PLX_CA_PID=""
        LAB_ERROR="the CA did not start"
        return 1
    fi
    local ca_addr rc=0
    ca_addr=$(awk '/^listening/{print $2}' "$T/ca.out")
    for u in "$@"; do
        if ! { "$B/parley" --home "$T/$u" keygen >/dev/null &&
            "$B/parley" --home "$T/$u" register "$u" --ca "$ca_addr" --ca-key "$fp" >/dev/null; }; then
            LAB_ERROR="cannot register $u"
            rc=1
            break
        fi
    done
    kill "$PLX_CA_PID" 2>/dev/null
    wait "$PLX_CA_PID" 2>/dev/null
    PLX_CA_PID=""
    return $rc
}

plx_key_of() { "$B/parley" --home "$T/$1" --json show | sed -n 's/.*"fingerprint":"\([0-9a-f]*\)".*/\1/p'; }

plx_start() {
    local host=$1 u=$2
    shift 2
    lab_spawn "$host" "$T/$u.log" "$B/parleyd" --home "$T/$u" "$@" || return 1
    PLX_PID=$LAB_PID
    plx_wait_line "$T/$u.log" '^listening' || { LAB_ERROR="$u did not start: $(tail -3 "$T/$u.log")"; return 1; }
}

plx_supernodes() { # [NAME1 ADDR1 ALT1 NAME2 ADDR2]
    local n1=${1:-sn1} a1=${2:-203.0.113.10} alt1=${3:-198.51.100.10} n2=${4:-sn2} a2=${5:-203.0.113.20}
    lab_public "$n1" "$a1" "$alt1" || return 1
    lab_public "$n2" "$a2" || return 1
    echo "$(plx_key_of "$n1") $a1:7400" >"$T/$n1.list"
    echo "$(plx_key_of "$n2") $a2:7400" >>"$T/$n1.list"
    tac "$T/$n1.list" >"$T/$n1.rev"
    plx_start "$n1" "$n1" --role supernode --listen "$a1:7400" --alt-listen "$alt1:7401" \
        --bootstrap-file "$T/$n1.list" || return 1
    PLX_SN_PID[$n1]=$PLX_PID
    plx_start "$n2" "$n2" --role supernode --listen "$a2:7400" --bootstrap-file "$T/$n1.list" || return 1
    PLX_SN_PID[$n2]=$PLX_PID
}

plx_wait_published() {
    local u rc=0
    for u in "$@"; do
        plx_wait_line "$T/$u.log" 'record published' 400 || { LAB_ERROR="$u did not publish: $(tail -2 "$T/$u.log")"; rc=1; }
    done
    return $rc
}

plx_field() { printf '%s' "$1" | jq -r "($2) // \"\"" 2>/dev/null; }

plx_call() {
    local caller=$1 callee=$2 dur=$3
    shift 3
    local out
    out=$(timeout 30 "$B/parley" --home "$T/$caller" --json call "$callee" --tone 440 --duration "$dur" "$@" 2>&1)
    PLX_RC=$?
    PLX_CALLER=$(printf '%s' "$out" | jq -c 'select(type == "object")' 2>/dev/null | tail -1)
    [ -n "$PLX_CALLER" ] || PLX_CALLER="{}"
    # The callee hears the hang-up a moment later: its newest call with the
    # caller, once ended.
    local _ mine
    PLX_CALLEE="{}"
    for _ in $(seq 40); do
        mine=$("$B/parley" --home "$T/$callee" --json calls 2>/dev/null |
            jq -c --arg p "$caller" '[.calls[] | select(.peer == $p)] | max_by(.id) // {}' 2>/dev/null)
        [ -n "$mine" ] && PLX_CALLEE=$mine
        [ "$(plx_field "$PLX_CALLEE" .state)" = ended ] && break
        sleep 0.05
    done
}
