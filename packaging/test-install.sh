#!/bin/bash
# packaging/test-install.sh: install the .deb built by packaging/build.sh, use it from the
# installed paths (version, selftest, a drop-in socat transfer, the stunnel name, the switch),
# remove it, and check that the system's stunnel and socat still work. On this machine it
# first checks the .rpm's metadata and file list against packaging/files.list, that neither
# package nor the binary needs a glibc above 2.28, and lintian the .deb.
#
#   packaging/test-install.sh                 this machine
#   packaging/test-install.sh --root DIR      the Debian userland in DIR (a debootstrap
#                                             chroot with stunnel4 and socat; see
#                                             packaging/test-chroots.sh)
# Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/package
deb=$(ls "$out"/sst-tunnel_*_"$(dpkg --print-architecture)".deb)
rpm=$(ls "$out"/sst-tunnel-*."$(uname -m)".rpm)
root=""
if [ "${1:-}" = --root ]; then
    root=$(realpath "$2")
fi
where=${root:-this machine}
fail() { echo "packaging/test-install.sh ($where): FAIL: $*" >&2; exit 1; }
step() { echo "packaging/test-install.sh ($where): $*"; }
# expect DESCRIPTION PATTERN COMMAND...: COMMAND succeeds and its output (stdout and stderr)
# has a line matching PATTERN. The output is read whole first: `COMMAND | grep -q` under
# pipefail fails at random when grep exits at its match while COMMAND still writes (SIGPIPE).
expect() {
    local what=$1 pattern=$2 output
    shift 2
    output=$("$@" 2>&1) || fail "$what: exit $?: $output"
    grep -q -e "$pattern" <<<"$output" || fail "$what: no line matching '$pattern' in: $output"
}
# Runs a command in the userland under test. Paths the installed tools see are $TT; this
# script reaches the same files at $T (the chroot shares this machine's loopback).
run() { if [ -n "$root" ]; then chroot "$root" "$@"; else "$@"; fi; }
TT=/tmp/sst-tunnel-install-test.$$
T=$root$TT
mkdir -p "$T"
cleanup() {
    rm -rf "$T"
    [ -z "$root" ] || umount "$root/proc" 2>/dev/null || true
}
trap cleanup EXIT
[ -z "$root" ] || mount -t proc proc "$root/proc"
. packaging/glibc.sh

if [ -z "$root" ]; then
    step "lintian $deb"
    lintian --fail-on error,warning "$deb" || fail "lintian"

    step "rpm metadata and file list"
    expect "rpm name" '^Name *: sst-tunnel$' rpm -qip "$rpm"
    expect "rpm license" '^License *: Apache-2.0$' rpm -qip "$rpm"
    expected=$( (grep -v -e '^#' -e '^$' packaging/files.list | awk '{ print $1 }'
        printf '%s\n' /usr/lib/sst-tunnel /usr/lib/sst-tunnel/bin /usr/share/doc/sst-tunnel) | sort)
    [ "$(rpm -qlp "$rpm" | sort)" = "$expected" ] || fail "rpm file list differs from files.list: $(diff <(rpm -qlp "$rpm" | sort) <(echo "$expected"))"

    step "one binary for glibc $GLIBC and later"
    need=$(rpm -qpR "$rpm" | glibc_newest)
    glibc_within "$need" || fail "the rpm requires GLIBC_$need"
    libc=$(dpkg-deb -f "$deb" Depends | sed -n 's/.*libc6 (>= \([0-9.]*\)).*/\1/p')
    [ -n "$libc" ] || fail "the deb does not depend on libc6 (>= VERSION)"
    glibc_within "$libc" || fail "the deb depends on libc6 >= $libc"
    step "rpm needs GLIBC_$need at most, deb libc6 >= $libc"

    # rpm's own database in a scratch root: install, query, verify, erase. --nodeps: nothing
    # in that root provides glibc (what the package requires is checked above instead).
    step "rpm install, verify and erase in a scratch root"
    rroot=$T/rpmroot
    mkdir -p "$rroot"
    rpm --root "$rroot" --initdb
    rpm --root "$rroot" -i --nodeps "$rpm" || fail "rpm -i"
    expect "rpm -q" '^sst-tunnel-' rpm --root "$rroot" -q sst-tunnel
    rpm --root "$rroot" -V --nodeps sst-tunnel || fail "rpm -V: the installed files differ from the package"
    [ -x "$rroot/usr/bin/sst-tunnel" ] || fail "rpm: no /usr/bin/sst-tunnel"
    expect "the rpm's binary" '^sst-tunnel ' "$rroot/usr/bin/sst-tunnel" --version
    [ "$(readlink -f "$rroot/usr/lib/sst-tunnel/bin/socat")" = "$(readlink -f "$rroot/usr/bin/sst-tunnel")" ] ||
        fail "rpm: the socat link does not point at the binary"
    rpm --root "$rroot" -e --nodeps sst-tunnel || fail "rpm -e"
    left=$(cd "$rroot" && find usr -mindepth 1 2>/dev/null | grep sst-tunnel || true)
    [ -z "$left" ] || fail "rpm -e left: $left"
fi

step "install $deb"
cp "$deb" "$T/sst-tunnel.deb"
run dpkg -i "$TT/sst-tunnel.deb" >/dev/null
expect "--version" '^sst-tunnel ' run /usr/bin/sst-tunnel --version
need=$(readelf -V "$root/usr/bin/sst-tunnel" | glibc_newest)
glibc_within "$need" || fail "/usr/bin/sst-tunnel needs GLIBC_$need"
expect "selftest" 'selftest OK' run /usr/bin/sst-tunnel selftest --size 64MiB
[ -f "$root/usr/share/man/man1/sst-tunnel.1.gz" ] &&
    [ -f "$root/usr/share/bash-completion/completions/sst-tunnel" ] ||
    fail "man page or completions missing"
grep -qx tls "$root/usr/lib/modules-load.d/sst-tunnel.conf" || fail "modules-load.d"
expect "stunnel name" '^stunnel 5.68 compatible: sst-tunnel' run /usr/lib/sst-tunnel/bin/stunnel -version
expect "socat name" 'WITH_OPENSSL 1' run /usr/lib/sst-tunnel/bin/socat -V
expect "switch status" ': off$' run /usr/sbin/sst-tunnel-switch status --root "$TT/root"

step "a mariabackup-style transfer through the installed socat drop-in"
run /usr/bin/sst-tunnel gen-certs --out "$TT/ssl" --node node1=127.0.0.1 --node node2=127.0.0.1 >/dev/null
head -c $((16 << 20)) /dev/urandom >"$T/in"
# A port outside the kernel's ephemeral range (32768-60999 by default), so no socket
# something else binds to port 0 can hold it, and not listened on right now.
port=
for _ in $(seq 1 100); do
    candidate=$(( 20000 + RANDOM % 10000 ))
    ss -Hltn "( sport = :$candidate )" | grep . >/dev/null || { port=$candidate; break; }
done
[ -n "$port" ] || fail "no free port between 20000 and 29999"
tls() { echo "cert=$TT/ssl/$1-cert.pem,key=$TT/ssl/$1-key.pem,cafile=$TT/ssl/ca.pem,commonname="; }
run /usr/lib/sst-tunnel/bin/socat -u "openssl-listen:$port,reuseaddr,$(tls node2)" stdio >"$T/out" &
joiner=$!
# This machine's ss sees the listener: a chroot shares the network namespace.
for _ in $(seq 1 200); do ss -Hltn "( sport = :$port )" | grep -q . && break; sleep 0.05; done
run /usr/lib/sst-tunnel/bin/socat -u stdio "openssl-connect:127.0.0.1:$port,no-sni=1,$(tls node1)" <"$T/in" ||
    fail "donor socat"
wait "$joiner" || fail "joiner socat"
cmp -s "$T/in" "$T/out" || fail "bytes differ"

step "remove"
run dpkg -r sst-tunnel >/dev/null
[ ! -e "$root/usr/bin/sst-tunnel" ] && [ ! -e "$root/usr/lib/sst-tunnel" ] || fail "files left after removal"
expect "the system's stunnel after removal" '^stunnel 5' run stunnel4 -version
expect "the system's socat after removal" '^socat by Gerhard Rieger' run socat -V
step "OK"
