#!/usr/bin/env bash
# The whole test suite on a fresh Debian/Ubuntu machine: installs what the tests use
# (stunnel4, socat, rsync, and MariaDB Galera and nftables for the real-SST test, from the
# distribution),
# then runs cargo fmt/clippy/machete checks and every test, fuzzes each parser for 15 s, builds the
# .deb and .rpm and installs, uses and removes them (here and in Debian 11 and 13 chroots,
# with MariaDB 11.8's SSTs in Debian 13's), builds the arm64 packages and runs them under
# qemu-user, and finally runs the kernel-TLS
# tests in QEMU guests (qemu-system-x86, busybox-static, Debian 12's 6.1 and trixie-backports' newest kernel packages). Needs root: apt-get, dpkg, and
# the Galera test runs mysqld as the mysql user. Skips the install when the tools are there.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for tool in stunnel:stunnel4 socat:socat rsync:rsync diff:diffutils ss:iproute2 openssl:openssl \
    mariadbd:mariadb-server mariadb-backup:mariadb-backup tcpdump:tcpdump pgrep:procps \
    readelf:binutils rpmbuild:rpm qemu-aarch64-static:qemu-user-static lintian:lintian \
    qemu-system-x86_64:qemu-system-x86 cpio:cpio depmod:kmod debootstrap:debootstrap \
    nft:nftables; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool##*:}")
done
[ -e /usr/lib/galera/libgalera_smm.so ] || need+=(galera-4)
# The kTLS guest's userland must be the static busybox.
{ [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; } || need+=(busybox-static)
if ((${#need[@]})); then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    # Packages must not start their services (mariadb): the tests run their own servers.
    policy=/usr/sbin/policy-rc.d
    added_policy=no
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
        $sudo chmod 755 "$policy"
        added_policy=yes
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" gcc >/dev/null
    [ "$added_policy" = no ] || $sudo rm -f "$policy"
fi

# Each phase says when it starts (seconds into the run): where the time goes, for the budget.
phase() { echo "test.sh: ${SECONDS}s: $*"; }
phase "fmt, clippy, machete"
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
# No dependency that nothing uses.
command -v cargo-machete >/dev/null || cargo install cargo-machete --locked --quiet --debug
cargo machete
phase "cargo test"
cargo test --locked
# Every parser of outside input under libFuzzer for a fixed time each (cargo-fuzz).
phase "fuzzing"
scripts/fuzz.sh 15
# The packages: build the glibc 2.28 binary, the .deb and .rpm; install the .deb, use it,
# remove it; the .rpm into a scratch rpm root. The kTLS guests below then run that same
# packaged binary. Beside the release build, the Debian chroots and the arm64 builder (a sid
# chroot) are made in the background: they mostly wait on downloads.
phase "packages"
mkdir -p target/chroots
packaging/test-chroots.sh --make-only bullseye trixie >target/chroots/make.log 2>&1 &
making_chroots=$!
packaging/build.sh --arch arm64 --prepare >target/chroots/prepare-arm64.log 2>&1 &
preparing_arm64=$!
packaging/build.sh
packaging/test-install.sh
# The same .deb in Debian 11 and 13 userlands (debootstrap chroots with their own stunnel
# and socat); in Debian 13's, MariaDB 11.8's stock scripts run an rsync and a mariabackup SST.
phase "Debian 11 and 13 chroots, MariaDB 11.8"
wait "$making_chroots" || { cat target/chroots/make.log >&2; exit 1; }
packaging/test-chroots.sh bullseye trixie
# arm64: built in the sid chroot, run under qemu-user against the x86_64 binary.
phase "arm64"
wait "$preparing_arm64" || { cat target/chroots/prepare-arm64.log >&2; exit 1; }
packaging/build.sh --arch arm64
packaging/test-qemu.sh
packaged=target/package/amd64/root/usr/bin/sst-tunnel
# More than 4 GiB each way through the binary production runs (release arithmetic wraps
# where the debug build would panic), in the pipe and exec shapes, checksummed.
phase "5 GiB through the packaged binary"
SST_TUNNEL_BIN=$PWD/$packaged cargo test --locked --test big -- --ignored
# The kernel-TLS fast path, in QEMU guests whose kernels have tls.ko (this one has none),
# fetched through private apt lists: Debian 12's 6.1 (no kernel rekeying: the tested
# fallbacks), pinned by suite whatever the host runs, then the newest trixie-backports
# kernel (6.14 or later: TLS 1.3 KeyUpdate both ways through the kernel), resolved at run
# time. Each must report exactly its number of cases: a branch that silently ran nothing
# fails. The newer guest also runs the production shapes (rsync through the stunnel
# front-end, 256 MiB into a stalling consumer, EPIPE), single and striped streams over
# emulated hostile links (netem reordering, duplication, corruption between two network
# namespaces) and the conformance suite on the kernel's record layer.
phase "kTLS guest, Linux 6.1 (bookworm)"
KTLS_VM_SUITE=bookworm KTLS_VM_KERNEL_BELOW=6.14 KTLS_VM_EXPECT=31 \
    scripts/ktls-vm-test.sh "$packaged"
phase "kTLS guest, newest trixie-backports kernel"
conformance=$(cargo test --locked --no-run --test conformance --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*conformance-[^"]*\)".*/\1/p' | tail -n 1)
[ -x "$conformance" ] || { echo "test.sh: no conformance test binary" >&2; exit 1; }
KTLS_VM_SUITE=trixie-backports KTLS_VM_KERNEL_MIN=6.14 KTLS_VM_EXPECT=48 \
    KTLS_VM_CONFORMANCE=$conformance scripts/ktls-vm-test.sh "$packaged"
phase "done"
