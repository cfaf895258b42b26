#!/bin/bash
# packaging/test-chroots.sh: the .deb in other Debian userlands. For each suite (default:
# bullseye, glibc 2.31, and trixie, glibc 2.41) it makes a minimal chroot with debootstrap
# from the same Debian archive the system uses, with the distribution's own stunnel4 and
# socat, under target/chroots/SUITE (kept for the next run), and runs
# packaging/test-install.sh in it: install, selftest, a verified transfer through the
# installed socat drop-in, the switch's status, removal, stunnel and socat untouched.
#
# trixie's chroot also gets Debian 13's MariaDB 11.8, galera-4, mariabackup and rsync: with
# the .deb installed there, scripts/galera-sst.sh runs a real two-node cluster through the
# unmodified 11.8 SST scripts, one rsync (VERIFY_IDENTITY) and one mariabackup (encrypt=4)
# SST, with the same checks as the 10.11 matrix (checksums, replication both ways, no
# cleartext on the wire, the tunnels' summary lines).
#
#   packaging/test-chroots.sh [--make-only] [SUITE...]
# --make-only makes the chroots and stops (so they can be made ahead, beside a build).
# Needs root and debootstrap; run after packaging/build.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
make_only=no
if [ "${1:-}" = --make-only ]; then
    make_only=yes
    shift
fi
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(bullseye trixie)
command -v debootstrap >/dev/null || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
}
. scripts/debian-archive.sh
uri=$(debian_archive)
[ -n "$uri" ] || { echo "test-chroots.sh: no Debian archive in the system's apt sources" >&2; exit 1; }
# What the Galera test needs besides the server (galera-sst.sh's own list).
galera_packages=(mariadb-server mariadb-backup galera-4 rsync tcpdump openssl iproute2 procps)

mounted=()
cleanup() {
    local m
    for ((m = ${#mounted[@]} - 1; m >= 0; m--)); do umount "${mounted[m]}" 2>/dev/null || true; done
}
trap cleanup EXIT
mount_into() { mount "$@" && mounted+=("${!#}"); }

make_chroot() {
    local suite=$1 dir=target/chroots/$1 log=target/chroots/$1.log
    if [ ! -x "$dir/usr/bin/socat" ]; then
        rm -rf "$dir"
        mkdir -p "$dir"
        echo "test-chroots.sh: debootstrap $suite"
        debootstrap --variant=minbase --include=stunnel4,socat "$suite" "$dir" "$uri" >"$log" 2>&1 ||
            { tail -n 20 "$log" >&2; return 1; }
    fi
    if [ "$suite" = trixie ] && [ ! -e "$dir/.sst-packages" ]; then
        echo "test-chroots.sh: $suite: ${galera_packages[*]}"
        # No service may start inside the chroot (it shares this machine's network).
        printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
        chmod 755 "$dir/usr/sbin/policy-rc.d"
        chroot "$dir" apt-get update -qq >>"$log" 2>&1 &&
            DEBIAN_FRONTEND=noninteractive chroot "$dir" apt-get install -y -qq --no-install-recommends \
                "${galera_packages[@]}" >>"$log" 2>&1 ||
            { tail -n 20 "$log" >&2; return 1; }
        touch "$dir/.sst-packages"
    fi
}

for suite in "${suites[@]}"; do
    make_chroot "$suite"
    [ "$make_only" = no ] || continue
    dir=target/chroots/$suite
    echo "test-chroots.sh: $suite: $(chroot "$dir" ldd --version | head -n1)"
    packaging/test-install.sh --root "$dir"
    if [ "$suite" = trixie ]; then
        echo "test-chroots.sh: $suite: $(chroot "$dir" mariadbd --version)"
        deb=$(ls target/package/sst-tunnel_*_"$(dpkg --print-architecture)".deb)
        cp "$deb" "$dir/tmp/sst-tunnel.deb"
        chroot "$dir" dpkg -i /tmp/sst-tunnel.deb >/dev/null
        mkdir -p "$dir/opt/sst-test"
        cp scripts/galera-sst.sh scripts/sst-tunnel-switch "$dir/opt/sst-test/"
        mount_into -t proc proc "$dir/proc"
        mount_into -t sysfs sys "$dir/sys"
        mount_into --bind /dev "$dir/dev"
        mount_into --bind /dev/pts "$dir/dev/pts"
        status=0
        chroot "$dir" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
            /opt/sst-test/galera-sst.sh --bin /usr/bin/sst-tunnel --data-mb 100 \
            rsync:VERIFY_IDENTITY mariabackup:encrypt=4 >target/chroots/galera-$suite.out || status=$?
        cat target/chroots/galera-$suite.out
        cleanup
        mounted=()
        chroot "$dir" dpkg -r sst-tunnel >/dev/null
        [ "$status" = 0 ] || { echo "test-chroots.sh: $suite: the Galera SSTs failed" >&2; exit 1; }
        for case in rsync:VERIFY_IDENTITY mariabackup:encrypt=4; do
            grep "^PASS $case tunnel=sst-tunnel " target/chroots/galera-$suite.out >/dev/null ||
                { echo "test-chroots.sh: $suite: no PASS line for $case" >&2; exit 1; }
        done
    fi
done
