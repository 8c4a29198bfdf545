#!/usr/bin/env bash
# peer_baresip.sh DIR PORT CALLER.wav CALLEE.wav QUALITY [opus_KEY VALUE]...
#
# A peer's figures for bench/call.bench.sh: a baresip-to-baresip call on
# loopback, measured as that benchmark measures Parley's. Two baresip
# instances with their own configuration under DIR (which this script
# removes at the end, unless KEEP=1), a direct SIP URI call (no registrar), Opus 48 kHz
# mono with 20 ms packets, SRTP (SDES, AES_CM_128_HMAC_SHA1_80: crypto
# included), no audio devices. The caller's audio comes from CALLER.wav,
# the callee's from CALLEE.wav (the aufile module), each side's received
# audio is recorded (the sndfile module; baresip_clock.c notes when each
# frame passed, see there) and scored with QUALITY (parley-quality). The call ends when the
# caller's file ends (aufile reports the end of its file, and baresip hangs
# up on it).
#
# Every opus_KEY VALUE pair goes into both configurations (for example
# opus_complexity 5); without opus_complexity baresip's opus module uses
# complexity 10.
#
# Prints "key value" lines for call.bench.sh: version, cpu_caller,
# cpu_callee, idle_caller, idle_callee (percent of one core), window_s,
# delay_ab, delay_ba (ms, caller to callee and back: one clock times both
# processes, so each direction stands alone), delay (their mean), stoi_ab,
# stoi_ba, r_ab, r_ba; or one line "missing REASON".
#
# CPU is counted as for parleyd: each process's CPU time (all of its
# threads, from /proc/PID/task/*/schedstat) in the same window as
# Parley's (from just before the dial to 9 s later, while both sides still
# send speech), minus the same process's rate over 5 s idle before.
set -u
DIR=$1 PORT=$2 S1=$3 S2=$4 Q=$5
shift 5
HERE=$(cd "$(dirname "$0")" && pwd)
PIDS=()
cleanup() {
    # baresip may linger after SIGTERM while it ends calls: then SIGKILL.
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 20); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
        kill -9 "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    [ -n "${KEEP:-}" ] || rm -rf "$DIR"
}
trap cleanup EXIT
missing() {
    echo "missing $*"
    exit 0
}
command -v baresip >/dev/null || missing "baresip is not installed (scripts/setup.sh installs baresip-core)"
MODS=/usr/lib/baresip/modules
for m in aufile opus srtp sndfile menu cons account; do
    [ -f "$MODS/$m.so" ] || missing "baresip has no $m module"
done
VERSION=$(baresip -h 2>&1 | sed -n 's/^baresip v\([0-9.]*\).*/\1/p' | head -1)
mkdir -p "$DIR" || missing "cannot make $DIR"
"${CC:-cc}" -O2 -Wall -Wextra -shared -fPIC -o "$DIR/baresip_clock.so" "$HERE/baresip_clock.c" -ldl -lpthread ||
    missing "cannot build baresip_clock.so"
wait_line() { for _ in $(seq "${3:-200}"); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done; return 1; }
num() { printf '%s' "$2" | grep -o "\"$1\":[-0-9.e]*" | head -1 | cut -d: -f2; }
# A process's CPU time in ns: the sum over its threads (aufile reads and
# encodes on a thread of its own).
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f", s}'; }
cons() { printf '%s\n' "$2" >"/dev/udp/127.0.0.1/$1"; }

configure() { # NAME SIP-PORT CONS-PORT WAV
    local d="$DIR/$1"
    mkdir -p "$d/rec"
    {
        printf '%s\t%s\n' \
            poll_method epoll \
            sip_listen "127.0.0.1:$2" \
            net_interface 127.0.0.1 \
            call_local_timeout 120 \
            call_max_calls 4 \
            audio_source "aufile,$4" \
            audio_alert "aufile,$4" \
            audio_buffer 20-160 \
            ausrc_format s16 auplay_format s16 auenc_format s16 audec_format s16 \
            rtp_tos 184 \
            rtcp_mux no \
            jitter_buffer_delay 5-10 \
            rtp_stats no \
            module_path "$MODS" \
            module aufile.so \
            module opus.so \
            module srtp.so \
            module sndfile.so \
            module cons.so \
            module_tmp account.so \
            module_app menu.so \
            cons_listen "127.0.0.1:$3" \
            statmode_default off \
            snd_path "$d/rec" \
            opus_stereo no \
            opus_sprop_stereo no \
            opus_bitrate 28000
        for ((i = 0; i + 1 < ${#OPUS[@]}; i += 2)); do printf '%s\t%s\n' "${OPUS[i]}" "${OPUS[i + 1]}"; done
    } >"$d/config"
    # answermode=auto: the callee answers at once, like parleyd --auto-answer.
    echo "<sip:$1@127.0.0.1:$2>;regint=0;mediaenc=srtp-mand;ptime=20;answermode=auto" >"$d/accounts"
}
OPUS=("$@")
# Each instance also takes SIP-PORT + 1 (SIP over TLS).
SIP_A=$((PORT + 11)) SIP_B=$((PORT + 14)) CONS_A=$((PORT + 17)) CONS_B=$((PORT + 18))
configure a "$SIP_A" "$CONS_A" "$S1"
configure b "$SIP_B" "$CONS_B" "$S2"
start() { # NAME
    LD_PRELOAD="$DIR/baresip_clock.so" baresip -f "$DIR/$1" </dev/null >"$DIR/$1.log" 2>&1 &
    PIDS+=($!)
    LAST_PID=$!
    wait_line "$DIR/$1.log" 'baresip is ready' || missing "baresip $1 does not start: $(tail -2 "$DIR/$1.log" | tr '\n' ' ')"
}
start a
A=$LAST_PID
start b
B=$LAST_PID
sleep 1
a0=$(cpu_ns "$A") b0=$(cpu_ns "$B") t0=$(date +%s%N)
sleep 5
a1=$(cpu_ns "$A") b1=$(cpu_ns "$B") t1=$(date +%s%N)
cons "$CONS_A" "/dial sip:b@127.0.0.1:$SIP_B"
sleep 9
a2=$(cpu_ns "$A") b2=$(cpu_ns "$B") t2=$(date +%s%N)
grep -q 'Call established' "$DIR/a.log" || missing "the call did not start: $(grep -i -m2 'fail\|error' "$DIR/a.log" | tr '\n' ' ')"
wait_line "$DIR/a.log" 'terminated (duration' 200 || missing "the call did not end"
wait_line "$DIR/b.log" 'terminated (duration' 100
cons "$CONS_A" /quit
cons "$CONS_B" /quit
for p in "$A" "$B"; do
    for _ in $(seq 40); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
done
RA=$(ls "$DIR"/a/rec/*-dec.wav 2>/dev/null | head -1)
RB=$(ls "$DIR"/b/rec/*-dec.wav 2>/dev/null | head -1)
[ -n "$RA" ] && [ -n "$RB" ] && [ -s "${RA%.wav}.times" ] && [ -s "${RB%.wav}.times" ] || missing "no recordings"
J1=$("$Q" "$S2" "$RA" --json 2>/dev/null)
J2=$("$Q" "$S1" "$RB" --json 2>/dev/null)
# One-way delay: SENDER-enc.times RECEIVER-dec.times ENC-DELAY-MS
# DEC-DELAY-MS, where the two delays are what scoring the sender's encode
# tap and the receiver's recording against the sent file finds. Both files
# hold their frames back to back, so their scores say which frame of the
# sent file each starts with: the encode tap's is 0, or -20 ms when the
# source's first frame was lost before the encoder (it happens at the
# start of a call); the recording's is the codec's delay c (the encoder's
# lookahead, 0 <= c < 20 ms) less 20 ms for each of the first frames sent
# that the receiver never decoded. With frames paired so, the delay is the
# median over the call of (decoded - sent) + c.
delay() {
    awk -v e="$3" -v d="$4" 'NR == 1 && FNR == 1 {
            a = int((10 - e) / 20); b = int((20 - d) / 20); c = d + 20 * b; k = b - a }
        NR == FNR { sent[FNR - 1] = $1; ns = FNR; next }
        FNR - 1 + k >= 0 && FNR - 1 + k < ns { printf "%.3f %.3f\n", ($1 - sent[FNR - 1 + k]) / 1e6, c }' "$1" "$2" |
        sort -n | awk '{ v[NR] = $1; c = $2 } END { if (NR) printf "%.1f\n", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) + c }'
}
EA=$(ls "$DIR"/a/rec/*-enc.times | head -1) EB=$(ls "$DIR"/b/rec/*-enc.times | head -1)
E1=$("$Q" "$S1" "${EA%.times}.wav" --json 2>/dev/null)
E2=$("$Q" "$S2" "${EB%.times}.wav" --json 2>/dev/null)
D_AB=$(delay "$EA" "${RB%.wav}.times" "$(num delay_ms "$E1")" "$(num delay_ms "$J2")")
D_BA=$(delay "$EB" "${RA%.wav}.times" "$(num delay_ms "$E2")" "$(num delay_ms "$J1")")
echo "version $VERSION"
awk -v a0="$a0" -v a1="$a1" -v a2="$a2" -v b0="$b0" -v b1="$b1" -v b2="$b2" -v t0="$t0" -v t1="$t1" -v t2="$t2" 'BEGIN {
    idle_a = (a1 - a0) / (t1 - t0); idle_b = (b1 - b0) / (t1 - t0);
    call_a = (a2 - a1) / (t2 - t1); call_b = (b2 - b1) / (t2 - t1);
    printf "cpu_caller %.2f\ncpu_callee %.2f\nidle_caller %.3f\nidle_callee %.3f\nwindow_s %.1f\n",
        100 * (call_a - idle_a), 100 * (call_b - idle_b), 100 * idle_a, 100 * idle_b, (t2 - t1) / 1e9 }'
echo "delay_ab $D_AB"
echo "delay_ba $D_BA"
echo "delay $(awk -v a="$D_AB" -v b="$D_BA" 'BEGIN{printf "%.1f", (a+b)/2}')"
echo "stoi_ab $(num stoi "$J2")"
echo "stoi_ba $(num stoi "$J1")"
echo "r_ab $(num r "$J2")"
echo "r_ba $(num r "$J1")"
