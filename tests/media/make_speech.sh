#!/usr/bin/env bash
# make_speech.sh DIR - deterministic test speech for the media tests.
#
# Writes DIR/talker1.wav .. DIR/talker5.wav: five different talkers (eSpeak NG
# voices and variants at different pitches and speeds), each saying three
# different Harvard sentences (IEEE 1969 phonetically balanced lists 1 and 2)
# with 0.7 s pauses between them and 0.5 s of silence first: about 10 s each,
# 48 kHz mono 16-bit PCM WAV, peak-normalised to -3 dBFS. No two files share
# a sentence, so a conference test can tell every talker apart.
#
# The same script and the same espeak-ng/sox versions give the same bytes:
# sox runs without dither (-D). DIR/.stamp records what made the files; when
# it matches, nothing is regenerated (a cache for repeated test runs).
set -eu
dir=${1:?usage: make_speech.sh DIR}
mkdir -p "$dir"

# talker voice speed(wpm) pitch(0-99) sentence1|sentence2|sentence3
TALKERS=(
    "1 en-us 165 45 The birch canoe slid on the smooth planks.|Glue the sheet to the dark blue background.|It is easy to tell the depth of a well."
    "2 en-gb+f3 155 60 These days a chicken leg is a rare dish.|Rice is often served in round bowls.|The juice of lemons makes fine punch."
    "3 en-gb-scotland+m3 150 35 The box was thrown beside the parked truck.|The hogs were fed chopped corn and garbage.|Four hours of steady work faced us."
    "4 en-us+f4 170 70 A large size in stockings is hard to sell.|The boy was there when the sun rose.|A rod is used to catch pink salmon."
    "5 en-029+m7 160 50 The source of the huge river is the clear spring.|Kick the ball straight and follow through.|Help the woman get back to her feet."
)

stamp="$(sha256sum "$0" | cut -c1-16) $(espeak-ng --version | head -1 | awk '{print $4}') $(sox --version | awk '{print $NF}')"
complete=1
for i in 1 2 3 4 5; do [ -s "$dir/talker$i.wav" ] || complete=0; done
if [ "$complete" = 1 ] && [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$stamp" ]; then
    exit 0
fi

tmp=$(mktemp -d /tmp/pl-speech.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# eSpeak NG speaks at 22050 Hz; silences are made at that rate so that sox
# can concatenate before the one resampling step.
sox -D -n -r 22050 -c 1 -b 16 "$tmp/lead.wav" trim 0 0.5
sox -D -n -r 22050 -c 1 -b 16 "$tmp/gap.wav" trim 0 0.7
for t in "${TALKERS[@]}"; do
    read -r n voice speed pitch text <<<"$t"
    IFS='|' read -r s1 s2 s3 <<<"$text"
    parts=("$tmp/lead.wav")
    j=0
    for s in "$s1" "$s2" "$s3"; do
        j=$((j + 1))
        espeak-ng -v "$voice" -s "$speed" -p "$pitch" -w "$tmp/$n.$j.wav" "$s"
        parts+=("$tmp/$n.$j.wav" "$tmp/gap.wav")
    done
    sox -D "${parts[@]}" -r 48000 -c 1 -b 16 -e signed-integer "$tmp/talker$n.wav" gain -n -3
    mv "$tmp/talker$n.wav" "$dir/talker$n.wav"
done
printf '%s' "$stamp" >"$dir/.stamp"
