#!/usr/bin/env bash
# scripts/ktls-vm-test.sh [SST_TUNNEL_BINARY]
#
# The kernel-TLS tests. This machine's kernel (and CI's) has no tls module, so they run in
# a throwaway QEMU guest booted from Debian's own kernel package, which ships tls.ko: a
# busybox initramfs holding the release binary, stunnel and socat (with the shared
# libraries they link), a PKI made here, and tests/ktls/guest.sh, which runs first without
# tls.ko (every connection must fall back to the buffered path) and then with it loaded
# (every suite and version both ways, against buffered sst-tunnel, stunnel and socat,
# close_notify, truncation, alerts, tickets, the key-usage limit).
#
# Exit status: 0 when the guest reports every test passed; 1 when one failed; 2 when the
# guest could not be set up or never reported (kernel panic, timeout). Needs qemu-system-x86,
# busybox-static, cpio and kmod (scripts/test.sh installs them). Under QEMU's TCG the guest's
# crypto is emulated, so any throughput it prints compares paths with each other only.
#
# `--bench` runs tests/ktls/guest.sh's benchmark instead (64 MiB streams, buffered against
# kernel TLS, through pipes and files, 3 rounds) and prints its BENCH lines.
# `--wan` runs cargo bench --bench wan's emulated links instead (benches/wan-guest.sh:
# netem between two namespaces, socat, stunnel and sst-tunnel) and prints its WAN lines.
#
# Settings: KTLS_VM_KERNEL_PKG (default: what linux-image-amd64 depends on, so the suite's
# newest kernel), KTLS_VM_SUITE (take the kernel package from another suite of the system's
# Debian archive, e.g. bookworm or trixie-backports, through a private apt sources list and
# lists under the cache; the system's own apt configuration and lists are not touched),
# KTLS_VM_KERNEL_MIN / KTLS_VM_KERNEL_BELOW (X.Y: refuse a kernel outside the range the
# caller's cases are written for), KTLS_VM_EXPECT (the exact number of cases the guest must
# report passed: a branch that silently runs nothing fails the run), KTLS_VM_CACHE
# (default target/ktls-vm), KTLS_VM_TIMEOUT seconds (default 600), KTLS_VM_MB per case
# (default 2; 64 with --bench), KTLS_VM_KEEP=1 keeps the work directory, KTLS_VM_EXPORT=DIR
# writes the kernel and initramfs there instead of booting.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
. scripts/debian-archive.sh

say() { echo "ktls-vm: $*" >&2; }
die() { say "$*"; exit 2; }

# --bench: instead of the tests, time buffered vs kernel TLS in the guest (benches/ktls.rs).
mode=test
if [ "${1:-}" = --bench ]; then
    mode=bench
    shift
elif [ "${1:-}" = --wan ]; then
    # --wan: cargo bench --bench wan's links (benches/wan-guest.sh) instead of the tests;
    # KTLS_VM_WAN_HELPER is the bench binary (the feeder and the sink), KTLS_VM_WAN_ENV the
    # guest's settings (profiles, tools, seconds).
    mode=wan
    shift
    [ -x "${KTLS_VM_WAN_HELPER:-}" ] || die "--wan needs KTLS_VM_WAN_HELPER (cargo bench --bench wan sets it)"
fi
# KTLS_VM_ONLY=conformance|links: boot, load the modules, run only the conformance suite's
# kernel cases, or only the hostile-link cases.
case ${KTLS_VM_ONLY:-} in
    '') ;;
    conformance | links) mode=$KTLS_VM_ONLY ;;
    *) die "KTLS_VM_ONLY=$KTLS_VM_ONLY: conformance or links" ;;
esac
bin=${1:-target/release/sst-tunnel}
if [ ! -x "$bin" ]; then
    cargo build --release --locked
fi
bin=$(readlink -f "$bin")
for tool in qemu-system-x86_64 cpio depmod dpkg-deb apt-get stunnel socat rsync openssl ip tc; do
    command -v "$tool" >/dev/null || die "missing $tool (scripts/test.sh installs what this needs)"
done
busybox=/bin/busybox
[ -x "$busybox" ] && ! ldd "$busybox" >/dev/null 2>&1 || die "$busybox must be the static busybox (busybox-static)"

# --- the guest kernel: Debian's package, unpacked once into the cache ----------------------
cache=${KTLS_VM_CACHE:-$root/target/ktls-vm}
apt_opts=(-o APT::Sandbox::User=root)
if [ -n "${KTLS_VM_SUITE:-}" ]; then
    # The same archive the system uses, another suite.
    private_apt "$cache/apt-$KTLS_VM_SUITE" "$KTLS_VM_SUITE" || die "no apt for $KTLS_VM_SUITE"
    apt_opts=("${private_apt_opts[@]}")
fi
kernel_pkg() {
    apt-cache "${apt_opts[@]}" depends linux-image-amd64 2>/dev/null |
        awk '/Depends: linux-image-[0-9]/ && !found {print $2; found = 1}'
}
pkg=${KTLS_VM_KERNEL_PKG:-$(kernel_pkg)}
[ -n "$pkg" ] || { apt-get "${apt_opts[@]}" update -qq && pkg=$(kernel_pkg); }
[ -n "$pkg" ] || die "cannot resolve linux-image-amd64 (apt-get update?); set KTLS_VM_KERNEL_PKG"
kdir=$cache/$pkg
# The modules kept changed over time: a cache of an older layout is made again.
layout=2
if [ "$(cat "$kdir/ready" 2>/dev/null)" != "$layout" ]; then
    say "fetching $pkg"
    rm -rf "$kdir"
    mkdir -p "$kdir/deb"
    # From 7.x Debian splits the kernel: linux-image-V depends on linux-binary-V (vmlinuz)
    # and linux-modules-V (the modules); those come too, when the package names them.
    parts() {
        apt-cache "${apt_opts[@]}" depends "$pkg" 2>/dev/null |
            awk '/Depends: linux-(binary|modules)-[0-9]/ {print $2}'
    }
    fetch() { (cd "$kdir/deb" && apt-get download -q "${apt_opts[@]}" "$pkg" $(parts) >&2); }
    fetch || { apt-get "${apt_opts[@]}" update -qq && fetch; } || die "apt-get download $pkg failed"
    for deb in "$kdir"/deb/*.deb; do
        dpkg-deb -x "$deb" "$kdir/unpacked"
    done
    # /lib/modules, or /usr/lib/modules in merged-/usr packages (trixie and later).
    mroot=$kdir/unpacked/lib/modules
    [ -d "$mroot" ] || mroot=$kdir/unpacked/usr/lib/modules
    kver=$(ls "$mroot")
    # /boot/vmlinuz-V, or (the split 7.x packages) next to the modules.
    vmlinuz=$kdir/unpacked/boot/vmlinuz-$kver
    [ -e "$vmlinuz" ] || vmlinuz=$mroot/$kver/vmlinuz
    cp "$vmlinuz" "$kdir/vmlinuz"
    # Only kTLS and the crypto it may ask for, and what emulated links need (netem, veth,
    # BBR); the package has no modules.dep (its postinst makes one), so depmod runs here.
    mods=$kdir/modroot/lib/modules/$kver
    for sub in net/tls crypto arch/x86/crypto lib/crypto; do
        mkdir -p "$mods/kernel/$sub"
        cp -a "$mroot/$kver/kernel/$sub/." "$mods/kernel/$sub/"
    done
    for ko in net/sched/sch_netem net/ipv4/tcp_bbr drivers/net/veth; do
        found=$(ls "$mroot/$kver/kernel/$ko".ko* 2>/dev/null | head -n 1)
        [ -n "$found" ] || die "$pkg has no $ko module (emulated links need it)"
        mkdir -p "$mods/kernel/$(dirname "$ko")"
        cp "$found" "$mods/kernel/$(dirname "$ko")/"
    done
    cp "$mroot/$kver"/modules.{order,builtin}* "$mods/" 2>/dev/null || true
    # Newer kernels compress modules; busybox insmod/modprobe want them plain.
    find "$mods" -name '*.ko.xz' -exec xz -d {} +
    find "$mods" -name '*.ko.zst' -exec zstd -q -d --rm {} +
    depmod -b "$kdir/modroot" "$kver"
    echo "$kver" >"$kdir/kver"
    rm -rf "$kdir/unpacked" "$kdir/deb"
    echo "$layout" >"$kdir/ready"
fi
kver=$(cat "$kdir/kver")
# The kernel the caller's expectations are written for (rekeying arrived in 6.14): a suite
# whose newest kernel moved out of range fails here, not by silently skipping cases.
kernel_at_least() {
    local want_major=${1%%.*} want_minor=${1#*.} major minor rest
    major=${kver%%.*}
    rest=${kver#*.}
    minor=${rest%%[!0-9]*}
    [ "$major" -gt "$want_major" ] || { [ "$major" -eq "$want_major" ] && [ "$minor" -ge "$want_minor" ]; }
}
if [ -n "${KTLS_VM_KERNEL_MIN:-}" ] && ! kernel_at_least "$KTLS_VM_KERNEL_MIN"; then
    die "$pkg is $kver, older than KTLS_VM_KERNEL_MIN=$KTLS_VM_KERNEL_MIN"
fi
if [ -n "${KTLS_VM_KERNEL_BELOW:-}" ] && kernel_at_least "$KTLS_VM_KERNEL_BELOW"; then
    die "$pkg is $kver, not below KTLS_VM_KERNEL_BELOW=$KTLS_VM_KERNEL_BELOW"
fi

# --- the initramfs ---------------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/ktls-vm.XXXXXX")
qemu_pid=
cleanup() {
    [ -z "$qemu_pid" ] || kill "$qemu_pid" 2>/dev/null || true
    [ "${KTLS_VM_KEEP:-0}" = 1 ] && say "kept $work" || rm -rf "$work"
}
trap cleanup EXIT
fs=$work/fs
mkdir -p "$fs"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,etc,lib,test/pki}
cp "$busybox" "$fs/bin/busybox"
printf '127.0.0.1 localhost\n::1 localhost\n' >"$fs/etc/hosts"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n' >"$fs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$fs/etc/group"
cp -a "$kdir/modroot/lib/modules" "$fs/lib/"
# Executables keep their libraries at the same paths (ldd's list, the loader included).
add_program() {
    local exe=$1 dest=$2
    cp -L "$exe" "$fs$dest"
    ldd "$exe" | awk '/=> \// {print $3} /^[[:space:]]*\/[^ ]+ \(/ {print $1}' |
        while read -r lib; do
            mkdir -p "$fs$(dirname "$lib")"
            cp -L "$lib" "$fs$lib"
        done
}
add_program "$bin" /usr/bin/sst-tunnel
add_program "$(command -v stunnel)" /usr/bin/stunnel
# glibc loads libgcc_s when a thread exits (stunnel's), which ldd cannot list; the packaged
# sst-tunnel no longer links it, so it is copied on its own.
# (awk reads to the end: one that exits early SIGPIPEs ldconfig, which pipefail and set -e
# turn into a failed run, now and then.)
gcc_s=$(ldconfig -p | awk '$1 == "libgcc_s.so.1" && /x86-64/ && !found {print $NF; found = 1}')
[ -n "$gcc_s" ] || die "libgcc_s.so.1 not found (stunnel needs it in the guest)"
mkdir -p "$fs$(dirname "$gcc_s")"
cp -L "$gcc_s" "$fs$gcc_s"
add_program "$(command -v socat)" /usr/bin/socat
add_program "$(command -v rsync)" /usr/bin/rsync
# iproute2's ip and tc for emulated links (busybox's have no netns and no netem).
add_program "$(command -v ip)" /usr/sbin/ip
add_program "$(command -v tc)" /usr/sbin/tc
cp tests/ktls/guest.sh "$fs/test/guest.sh"
if [ $mode = wan ]; then
    add_program "$KTLS_VM_WAN_HELPER" /test/wan-helper
    cp benches/wan-guest.sh "$fs/test/wan.sh"
    printf '%s\n' "${KTLS_VM_WAN_ENV:-}" >"$fs/test/wan.env"
fi
# KTLS_VM_CONFORMANCE=PATH: the conformance suite's test binary (cargo test --no-run --test
# conformance), run in the guest against the release binary on the kernel's record layer.
if [ -n "${KTLS_VM_CONFORMANCE:-}" ]; then
    add_program "$KTLS_VM_CONFORMANCE" /test/conformance
    strip "$fs/test/conformance" 2>/dev/null || true
fi

# The PKI: the cluster CA with ECDSA node certificates (gen-certs), an RSA node certificate
# from the same CA (for TLS 1.2 ECDHE-RSA), and a second CA's node for the alert test.
pki=$fs/test/pki
"$bin" gen-certs --out "$work/ca" --node node1=127.0.0.1 --node node2=127.0.0.2 >/dev/null
"$bin" gen-certs --out "$work/rogue" --ca-name "Rogue CA" --node node1=127.0.0.1 >/dev/null
cp "$work/ca/ca.pem" "$pki/ca.pem"
for n in node1 node2; do
    cp "$work/ca/$n-cert.pem" "$pki/$n-cert.pem"
    cp "$work/ca/$n-key.pem" "$pki/$n-key.pem"
done
cp "$work/rogue/node1-cert.pem" "$pki/rogue-cert.pem"
cp "$work/rogue/node1-key.pem" "$pki/rogue-key.pem"
openssl req -new -newkey rsa:2048 -nodes -keyout "$pki/rsa-key.pem" -subj /CN=node2 \
    -addext "subjectAltName=DNS:node2,IP:127.0.0.1" -out "$work/rsa.csr" 2>/dev/null
openssl x509 -req -in "$work/rsa.csr" -CA "$work/ca/ca.pem" -CAkey "$work/ca/ca-key.pem" \
    -days 2 -copy_extensions copy -out "$pki/rsa-cert.pem" 2>/dev/null
chmod 600 "$pki"/*-key.pem

cat >"$fs/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s
export PATH=/usr/bin:/bin:/usr/sbin:/sbin HOME=/tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
ip link set lo up
echo "KTLSVM kernel \$(uname -r), \$(nproc) vCPUs"
$([ $mode = wan ] && echo "sh /test/wan.sh $kver" ||
    echo "sh /test/guest.sh $kver ${KTLS_VM_MB:-$([ $mode = bench ] && echo 64 || echo 2)} $mode")
echo "KTLSVM_STATUS=\$?"
poweroff -f
EOF
chmod +x "$fs/init"
(cd "$fs" && find . | cpio -o -H newc -R 0:0 --quiet | gzip -1) >"$work/initrd.gz"

# KTLS_VM_EXPORT=DIR: leave the kernel and initramfs there for a run elsewhere, boot nothing.
if [ -n "${KTLS_VM_EXPORT:-}" ]; then
    mkdir -p "$KTLS_VM_EXPORT"
    cp "$kdir/vmlinuz" "$work/initrd.gz" "$KTLS_VM_EXPORT/"
    say "exported vmlinuz and initrd.gz to $KTLS_VM_EXPORT"
    exit 0
fi

# --- boot: TCG unless this is real hardware KVM (a PVM /dev/kvm cannot run this kernel) -------
accel=(-accel tcg,thread=multi -cpu max)
if [ -w /dev/kvm ] && { [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; } &&
    [ ! -d /sys/module/kvm_pvm ]; then
    accel=(-enable-kvm -cpu host)
fi
log=$work/console.log
# boot: one run of the guest; sets qemu_rc and status (empty when the guest never reported).
boot() {
    : >"$log"
    say "booting $pkg ($kver) with ${accel[*]}"
    timeout -k 5 "${KTLS_VM_TIMEOUT:-600}" qemu-system-x86_64 "${accel[@]}" -smp "$(nproc)" -m 1024 \
        -display none -monitor none -serial "file:$log" -no-reboot -nodefaults \
        -kernel "$kdir/vmlinuz" -initrd "$work/initrd.gz" \
        -append "console=ttyS0 quiet panic=-1" </dev/null &
    qemu_pid=$!
    # awk, not tr/grep, strips the console's \r: it flushes each line, so CI shows progress live.
    tail -s 0.2 -n +1 -f --pid="$qemu_pid" "$log" |
        awk '{ sub(/\r$/, "") } /^(KTLSVM|PASS|FAIL|BENCH|WAN|  )/ { print; fflush() }' || true
    set +e
    wait "$qemu_pid"
    qemu_rc=$?
    set -e
    qemu_pid=
    status=$(tr -d '\r' <"$log" | sed -n 's/^KTLSVM_STATUS=\([0-9]*\)$/\1/p' | tail -n 1)
}
boot
# A kernel that panics while booting under TCG, before the guest said a word (seen with
# 7.3 under multi-threaded TCG: an int3 oops while the kernel patches its own text), is the
# emulator's flake, not a result: it is said, and booted once more. A guest that started
# its cases and then died is never retried.
if [ -z "$status" ] && ! tr -d '\r' <"$log" | grep -q '^KTLSVM kernel ' &&
    tr -d '\r' <"$log" | grep -q 'Kernel panic'; then
    say "the kernel panicked while booting, before the guest started (console tail below); booting again"
    tr -d '\r' <"$log" | grep -E 'Oops|RIP:|Kernel panic' | head -n 5 >&2
    boot
fi
if [ -z "$status" ]; then
    say "the guest never reported (qemu exit $qemu_rc); console tail:"
    tr -d '\r' <"$log" | tail -n 40 >&2
    exit 2
fi
passed=$(tr -d '\r' <"$log" | grep -c '^PASS \|^BENCH \|^WAN ' || true)
failed=$(tr -d '\r' <"$log" | grep -c '^FAIL ' || true)
say "$passed passed, $failed failed in the guest ($kver)"
[ "$status" = 0 ] && [ "$failed" = 0 ] && [ "$passed" -gt 0 ] || exit 1
if [ -n "${KTLS_VM_EXPECT:-}" ] && [ "$passed" != "$KTLS_VM_EXPECT" ]; then
    say "expected exactly $KTLS_VM_EXPECT cases to pass on $kver, $passed did: a case ran that should not have, or one silently did not run"
    exit 1
fi
