#!/bin/bash
# packaging/test-chroots.sh: the .deb in other Debian userlands. For each suite (default:
# bullseye, glibc 2.31, and trixie, glibc 2.41) it makes a minimal chroot with debootstrap
# from the same Debian archive the system uses, with the distribution's own stunnel4 and
# socat, under target/chroots/SUITE (kept for the next run), and runs
# packaging/test-install.sh in it: install, selftest, a verified transfer through the
# installed socat drop-in, the switch's status, removal, stunnel and socat untouched.
#
#   packaging/test-chroots.sh [SUITE...]
# Needs root and debootstrap; run after packaging/build.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(bullseye trixie)
command -v debootstrap >/dev/null || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
}
. scripts/debian-archive.sh
uri=$(debian_archive)
[ -n "$uri" ] || { echo "test-chroots.sh: no Debian archive in the system's apt sources" >&2; exit 1; }
for suite in "${suites[@]}"; do
    dir=target/chroots/$suite
    if [ ! -x "$dir/usr/bin/socat" ]; then
        rm -rf "$dir"
        mkdir -p "$dir"
        echo "test-chroots.sh: debootstrap $suite"
        debootstrap --variant=minbase --include=stunnel4,socat "$suite" "$dir" "$uri" \
            >"target/chroots/$suite.log" 2>&1 ||
            { tail -n 20 "target/chroots/$suite.log" >&2; exit 1; }
    fi
    echo "test-chroots.sh: $suite: $(chroot "$dir" ldd --version | head -n1)"
    packaging/test-install.sh --root "$dir"
done
