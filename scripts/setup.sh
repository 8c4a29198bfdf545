#!/usr/bin/env bash
# Installs the Debian packages Parley needs to build and test, if missing.
# Safe to run again: it installs nothing when everything is present.
set -eu
# iproute2 and nftables build the network lab (tests/netlab/); stun-client
# and coturn are the standard STUN clients tests/natdisc.test.sh runs
# against our responder; espeak-ng and sox make and shape test speech;
# Opus, speexdsp and PortAudio are the voice engine's libraries.
PACKAGES=(gcc make pkg-config libsodium-dev libsqlite3-dev libcjson-dev clang libclang-rt-14-dev iproute2 nftables
          stun-client coturn espeak-ng sox libopus-dev libspeexdsp-dev portaudio19-dev tcpdump)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "setup: all packages present"
