#!/usr/bin/env bash
# quality.test.sh - parley-quality on real synthesised speech (espeak-ng),
# degraded with sox. Shown: identical speech passes with STOI 1, delay 0;
# a known shift of 37.5 ms is found exactly, also through noise, a level
# change and an inverted polarity; the default thresholds pass clean and
# moderately degraded speech and fail silence, noise, one-way audio (a faint
# hiss), a half-muted recording and a recording of different speech; codec-
# like damage (band limits, noise) scores in between, in order; the E-model
# estimate follows delay and loss; errors get their own exit codes. Prints
# the harness's own run time on a 10 s file.
set -u
B=${PARLEY_BUILD:-build/release}
Q="$B/parley-quality"
SPEECH="$B/speech"
T=$(mktemp -d /tmp/pl-quality-test.XXXXXX)
passed=0
failed=0
trap 'rm -rf "$T"' EXIT
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; shift; for l in "$@"; do echo "     $l"; done; }
finish() { echo "PL-TEST-SUMMARY $passed $failed"; exit 0; }
num() { printf '%s' "$2" | grep -o "\"$1\":[-0-9.e]*" | head -1 | cut -d: -f2; }
check() { # NAME AWK-CONDITION VALUES...
    local name=$1 cond=$2
    shift 2
    if awk -v a="${1:-}" -v b="${2:-}" -v c="${3:-}" -v d="${4:-}" "BEGIN { exit !($cond) }"; then
        ok "$name ($*)"
    else
        bad "$name" "values: $*" "condition: $cond"
    fi
}
S() { sox -D -R "$@"; } # no dither, fixed random numbers: the same input gives the same file
# measure NAME SENT RECORDED [OPTIONS...] -> J (JSON), RC (exit status)
measure() {
    local sent=$2 rec=$3
    shift 3
    J=$("$Q" "$sent" "$rec" --json "$@" 2>"$T/err")
    RC=$?
}

tests/media/make_speech.sh "$SPEECH" || { bad "make_speech.sh makes the talkers"; finish; }
ok "make_speech.sh made five talkers in $SPEECH"
REF="$SPEECH/talker1.wav"
check "talker1 is 48 kHz mono 16-bit, 8-12 s" 'a == 48000 && b == 1 && c == 16 && d >= 8 && d <= 12' \
    "$(soxi -r "$REF")" "$(soxi -c "$REF")" "$(soxi -b "$REF")" "$(soxi -D "$REF")"
before=$(md5sum "$SPEECH"/*.wav)
tests/media/make_speech.sh "$T/again" && after=$(cd "$T/again" && md5sum *.wav)
if [ "$(printf '%s\n' "$before" | awk '{print $1}')" = "$(printf '%s\n' "$after" | awk '{print $1}')" ]; then
    ok "make_speech.sh is deterministic (same bytes made twice)"
else
    bad "make_speech.sh is deterministic" "$before" "$after"
fi
distinct=$(md5sum "$SPEECH"/*.wav | awk '{print $1}' | sort -u | wc -l)
check "the five talkers are five different signals" 'a == 5' "$distinct"

# --- identical
measure same "$REF" "$REF"
check "identical speech passes: STOI 1, delay 0, LSD 0, no dead air" \
    'a == 0 && b >= 0.999 && c == 0 && d == 0' "$RC" "$(num stoi "$J")" "$(num delay_ms "$J")" "$(num lsd_db "$J")"
echo "     harness run time on a $(soxi -D "$REF") s file: $(num elapsed_ms "$J") ms"

# --- a known shift, with and without damage
S "$REF" "$T/shift.wav" pad 0.0375 0.3
measure shift "$REF" "$T/shift.wav"
check "a 37.5 ms shift is found exactly (1800 samples), and passes" 'a == 1800 && b == 37.5 && c == 0' \
    "$(num delay_samples "$J")" "$(num delay_ms "$J")" "$RC"
S -n -r 48000 -c 1 -b 16 "$T/hiss.wav" synth 10.6 whitenoise gain -30
S -m -v 0.5 "$T/shift.wav" -v 1 "$T/hiss.wav" "$T/shift_noisy.wav"
measure shift-noisy "$REF" "$T/shift_noisy.wav"
# (The hiss fills the pauses, so the median level difference reads above -6 dB.)
check "through noise at -6 dB gain it is still exact, and passes" 'a == 1800 && b < -3 && b > -7 && c == 0' \
    "$(num delay_samples "$J")" "$(num level_db "$J")" "$RC"
S "$T/shift.wav" "$T/shift_inv.wav" vol -0.3
measure shift-inverted "$REF" "$T/shift_inv.wav"
check "an inverted polarity at -10 dB: still exact, correlation negative" 'a == 1800 && b < -0.99 && c == 0' \
    "$(num delay_samples "$J")" "$(num correlation "$J")" "$RC"

# --- what the default thresholds must fail
S -n -r 48000 -c 1 -b 16 "$T/silent.wav" trim 0 10
measure silence "$REF" "$T/silent.wav"
check "silence fails (STOI 0, all dead air)" 'a == 1 && b == 0 && c == 1' "$RC" "$(num stoi "$J")" "$(num dead_air "$J")"
S -n -r 48000 -c 1 -b 16 "$T/noise.wav" synth 10 whitenoise gain -20
measure noise "$REF" "$T/noise.wav"
check "white noise fails on STOI (~0.4: STOI's clipping, see stoi.c)" 'a == 1 && b < 0.5' "$RC" "$(num stoi "$J")"
S -n -r 48000 -c 1 -b 16 "$T/oneway.wav" synth 10 whitenoise gain -75
measure one-way "$REF" "$T/oneway.wav"
check "one-way audio (only a -75 dB hiss came back) fails: STOI and dead air" \
    'a == 1 && b < 0.5 && c > 0.95' "$RC" "$(num stoi "$J")" "$(num dead_air "$J")"
S "$REF" "$T/half.wav" trim 0 5 pad 0 5
measure half-muted "$REF" "$T/half.wav"
check "a recording muted half way fails on dead air and STOI" 'a == 1 && b > 0.3 && b < 0.7 && c < 0.7' \
    "$RC" "$(num dead_air "$J")" "$(num stoi "$J")"
# 1.2 s muted in the middle of a sentence: most of the call is fine.
S "$REF" "$T/a.wav" trim 0 4
S "$REF" "$T/b.wav" trim 5.2
S -n -r 48000 -c 1 -b 16 "$T/gap.wav" trim 0 1.2
S "$T/a.wav" "$T/gap.wav" "$T/b.wav" "$T/muted.wav"
measure muted "$REF" "$T/muted.wav"
check "1.2 s muted mid-sentence fails on dead air alone" 'a == 1 && b > 0.1 && c >= 0.7' \
    "$RC" "$(num dead_air "$J")" "$(num stoi "$J")"
printf '%s' "$J" | grep -q '"failures":\["max-dead-air"\]' && ok "and says so: failures [max-dead-air]" ||
    bad "muted failures" "$J"
for k in 2 3 4 5; do
    measure "wrong$k" "$REF" "$SPEECH/talker$k.wav"
    check "a recording of different speech (talker$k) fails (STOI < 0.4)" 'a == 1 && b < 0.4' "$RC" "$(num stoi "$J")"
done
measure wrong-reverse "$SPEECH/talker3.wav" "$SPEECH/talker5.wav"
check "talker5 as a recording of talker3 fails too" 'a == 1 && b < 0.4' "$RC" "$(num stoi "$J")"

# --- codec-like damage scores in between, in order
S "$REF" "$T/wb.wav" sinc -7000
S "$REF" "$T/tel.wav" sinc 300-3400
S "$REF" "$T/lp2k.wav" sinc -2000
S "$REF" "$T/lp1k.wav" sinc -1000
prev=1.01
for f in wb tel lp2k lp1k; do
    measure "$f" "$REF" "$T/$f.wav"
    s=$(num stoi "$J")
    check "band limit $f: passes with STOI below the one before ($prev)" 'a == 0 && b < c && b > 0.7' "$RC" "$s" "$prev"
    prev=$s
done
prev=1.01
for g in -40 -30 -20 -10; do
    S -n -r 48000 -c 1 -b 16 "$T/n.wav" synth "$(soxi -D "$REF")" whitenoise gain "$g"
    S -m "$REF" "$T/n.wav" "$T/noisy.wav"
    measure "noise $g" "$REF" "$T/noisy.wav"
    s=$(num stoi "$J")
    check "white noise at $g dBFS: STOI falls ($s < $prev), LSD rises" 'b < c' "$RC" "$s" "$prev" "$(num lsd_db "$J")"
    prev=$s
done
check "speech under noise at -10 dBFS (louder than the speech) is damaged but above noise alone" \
    'a > 0.5 && a < 0.85' "$prev"
S "$T/tel.wav" "$T/telnoisy.wav" gain -3
S -m "$T/telnoisy.wav" "$T/hiss.wav" "$T/tel_hiss.wav" trim 0 "$(soxi -D "$REF")"
measure tel-hiss "$REF" "$T/tel_hiss.wav"
check "telephone band plus hiss: passes, LSD well above 0" 'a == 0 && b > 0.8 && c > 5' "$RC" "$(num stoi "$J")" "$(num lsd_db "$J")"

# --- the E-model estimate and the receiver's figures
measure r-clean "$REF" "$T/shift.wav"
R0=$(num r "$J")
check "R (E-model estimate) at 37.5 ms and no loss is ~92" 'a > 91.5 && a < 93.2' "$R0"
printf '%s' "$J" | grep -q '"label":"R (E-model estimate)"' && ok "it is labelled R (E-model estimate)" || bad "label" "$J"
printf '%s' "$J" | grep -qi 'mos' && bad "no MOS anywhere in the output" "$J" || ok "and nothing in the output is called a MOS"
measure r-loss "$REF" "$T/shift.wav" --loss-pct 5
R5=$(num r "$J")
check "5% random loss lowers it by Ie,eff = 95*5/30.1 = 15.8" 'a - b > 15.7 && a - b < 15.9' "$R0" "$R5"
measure r-burst "$REF" "$T/shift.wav" --loss-pct 5 --burst-len 4
check "the same loss in bursts of 4 (BurstR 3.8: Ie,eff 18.0) lowers it 2.2 more" 'b - a > 2.1 && b - a < 2.3 && c == 3.8' "$(num r "$J")" "$R5" "$(num burst_r "$J")"
measure concealed "$REF" "$T/shift.wav" --concealed-fraction 0.03 --max-concealed 0.02
check "a concealed fraction is reported, used as the loss, and thresholded" 'a == 0.03 && b == 3 && c == 1' \
    "$(num concealed_fraction "$J")" "$(num loss_pct "$J")" "$RC"
S "$REF" "$T/late.wav" pad 0.45 0
measure late "$REF" "$T/late.wav"
check "450 ms of delay fails max-delay-ms and min-r (R ~58)" 'a == 1 && b == 450 && c < 60' "$RC" "$(num delay_ms "$J")" "$(num r "$J")"
measure late-off "$REF" "$T/late.wav" --max-delay-ms off --min-r off
check "with those thresholds off it passes" 'a == 0' "$RC"
measure strict "$REF" "$T/tel.wav" --min-stoi 0.995 --max-lsd-db 5 --min-correlation 0.99
check "stricter thresholds fail the telephone band" 'a == 1' "$RC"
printf '%s' "$J" | grep -q '"failures":\["min-stoi","max-lsd-db","min-correlation"\]' && ok "naming each failed threshold" ||
    bad "strict failures" "$J"

# --- human-readable output and errors
"$Q" "$REF" "$T/shift.wav" >"$T/out" 2>&1
grep -q '^delay      37.50 ms (1800 samples)' "$T/out" && grep -q '^result     PASS' "$T/out" &&
    grep -q '^R (E-model estimate) ' "$T/out" && ok "human-readable output says delay, R (E-model estimate) and PASS" ||
    bad "human output" "$(cat "$T/out")"
"$Q" "$REF" >/dev/null 2>&1
check "a missing argument is a usage error" 'a == 2' "$?"
"$Q" "$REF" "$T/shift.wav" --min-stoi lots >/dev/null 2>&1
check "a bad threshold is a usage error" 'a == 2' "$?"
"$Q" "$REF" "$T/nonexistent.wav" >/dev/null 2>&1
check "an unreadable file is an input error" 'a == 3' "$?"
printf 'not a wav file' >"$T/junk.wav"
"$Q" "$REF" "$T/junk.wav" >/dev/null 2>&1
check "a file that is not a WAV is an input error" 'a == 3' "$?"
S "$REF" -r 16000 "$T/16k.wav"
"$Q" "$REF" "$T/16k.wav" >/dev/null 2>"$T/err"
check "different sample rates are an input error, said in one line" 'a == 3 && b == 1' "$?" "$(wc -l <"$T/err")"
measure at16k "$T/16k.wav" "$T/16k.wav"
check "16 kHz files work too" 'a == 0 && b >= 0.999' "$RC" "$(num stoi "$J")"
finish
