#!/usr/bin/env bash
# Installs the Debian packages Parley needs to build and test, if missing.
# Safe to run again: it installs nothing when everything is present.
set -eu
# iproute2 and nftables build the network lab (tests/netlab/); stun-client
# and coturn are the standard STUN clients tests/natdisc.test.sh runs
# against our responder; espeak-ng and sox make and shape test speech;
# Opus, speexdsp and PortAudio are the voice engine's libraries;
# libminiupnpc and libnatpmp ask home routers for port mappings
# (src/io/portmap.c), and miniupnpd-nftables is the router
# tests/portmap.test.sh asks; tinyproxy, dante-server and microsocks are
# the outgoing proxies tests/proxy.test.sh tunnels through; baresip-core
# is the peer bench/call.bench.sh calls beside us (bench/peer_baresip.sh:
# its aufile, opus, srtp, sndfile, cons and menu modules).
PACKAGES=(gcc make pkg-config libsodium-dev libsqlite3-dev libcjson-dev clang libclang-rt-14-dev iproute2 nftables
          stun-client coturn espeak-ng sox libopus-dev libspeexdsp-dev portaudio19-dev tcpdump tshark
          libminiupnpc-dev libnatpmp-dev miniupnpd-nftables tinyproxy dante-server microsocks jq
          baresip-core)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    # tinyproxy, dante-server, miniupnpd and coturn are services: the tests
    # start their own instances, so none may start (or fail to start, where
    # there is no init system) on installation. policy-rc.d saying 101
    # ("action forbidden") is Debian's way to ask that.
    made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    rc=0
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
    [ "$made_policy" = 1 ] && $SUDO rm -f /usr/sbin/policy-rc.d
    [ "$rc" = 0 ] || { echo "setup: apt-get install failed ($rc)"; exit "$rc"; }
fi
echo "setup: all packages present"
