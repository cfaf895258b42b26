#!/bin/bash
# packaging/test-install.sh: install the .deb built by packaging/build.sh, use it from the
# installed paths (version, selftest, a drop-in socat transfer, the stunnel name, the switch),
# remove it, and check that the system's stunnel and socat still work; then check the .rpm's
# metadata and file list against packaging/files.list, that neither package nor the binary
# needs a glibc above 2.28, and lintian the .deb. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/package
deb=$(ls "$out"/sst-tunnel_*.deb)
rpm=$(ls "$out"/sst-tunnel-*.rpm)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "packaging/test-install.sh: FAIL: $*" >&2; exit 1; }
step() { echo "packaging/test-install.sh: $*"; }

step "lintian $deb"
lintian --fail-on error,warning "$deb" || fail "lintian"

step "rpm metadata and file list"
rpm -qip "$rpm" | grep -q '^Name *: sst-tunnel$' || fail "rpm name"
rpm -qip "$rpm" | grep -q '^License *: Apache-2.0$' || fail "rpm license"
expected=$( (grep -v -e '^#' -e '^$' packaging/files.list | awk '{ print $1 }'; echo /usr/lib/sst-tunnel; echo /usr/lib/sst-tunnel/bin) | sort)
[ "$(rpm -qlp "$rpm" | sort)" = "$expected" ] || fail "rpm file list differs from files.list: $(diff <(rpm -qlp "$rpm" | sort) <(echo "$expected"))"

step "one binary for glibc 2.28 and later"
newest() { grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -Vu | tail -n1; }
at_most_228() { [ "$(printf '%s\n2.28\n' "$1" | sort -V | tail -n1)" = 2.28 ]; }
need=$(rpm -qpR "$rpm" | newest)
at_most_228 "$need" || fail "the rpm requires GLIBC_$need"
libc=$(dpkg-deb -f "$deb" Depends | sed -n 's/.*libc6 (>= \([0-9.]*\)).*/\1/p')
[ -n "$libc" ] || fail "the deb does not depend on libc6 (>= VERSION)"
at_most_228 "$libc" || fail "the deb depends on libc6 >= $libc"
step "rpm needs GLIBC_$need at most, deb libc6 >= $libc"

step "install $deb"
dpkg -i "$deb" >/dev/null
/usr/bin/sst-tunnel --version | grep -q '^sst-tunnel ' || fail "--version"
need=$(objdump -T /usr/bin/sst-tunnel | newest)
at_most_228 "$need" || fail "/usr/bin/sst-tunnel needs GLIBC_$need"
/usr/bin/sst-tunnel selftest --size 64MiB 2>&1 | grep -q 'selftest OK' || fail "selftest"
[ -f /usr/share/man/man1/sst-tunnel.1.gz ] && [ -f /usr/share/bash-completion/completions/sst-tunnel ] ||
    fail "man page or completions missing"
grep -qx tls /usr/lib/modules-load.d/sst-tunnel.conf || fail "modules-load.d"
/usr/lib/sst-tunnel/bin/stunnel -version 2>&1 | grep -q '^stunnel 5.68 compatible: sst-tunnel' || fail "stunnel name"
/usr/lib/sst-tunnel/bin/socat -V | grep -q 'WITH_OPENSSL 1' || fail "socat name"
/usr/sbin/sst-tunnel-switch status --root "$T/root" | grep -q ': off' || fail "switch status"

step "a mariabackup-style transfer through the installed socat drop-in"
/usr/bin/sst-tunnel gen-certs --out "$T/ssl" --node node1=127.0.0.1 --node node2=127.0.0.1 >/dev/null
head -c $((16 << 20)) /dev/urandom >"$T/in"
port=$(( 30000 + RANDOM % 20000 ))
tls() { echo "cert=$T/ssl/$1-cert.pem,key=$T/ssl/$1-key.pem,cafile=$T/ssl/ca.pem,commonname="; }
/usr/lib/sst-tunnel/bin/socat -u "openssl-listen:$port,reuseaddr,$(tls node2)" stdio >"$T/out" &
joiner=$!
for _ in $(seq 1 200); do ss -Hltn "( sport = :$port )" | grep -q . && break; sleep 0.05; done
/usr/lib/sst-tunnel/bin/socat -u stdio "openssl-connect:127.0.0.1:$port,no-sni=1,$(tls node1)" <"$T/in" ||
    fail "donor socat"
wait "$joiner" || fail "joiner socat"
cmp -s "$T/in" "$T/out" || fail "bytes differ"

step "remove"
dpkg -r sst-tunnel >/dev/null
[ ! -e /usr/bin/sst-tunnel ] && [ ! -e /usr/lib/sst-tunnel ] || fail "files left after removal"
stunnel4 -version 2>&1 | grep -q '^stunnel 5' || fail "the system's stunnel no longer works"
socat -V | grep -q '^socat by Gerhard Rieger' || fail "the system's socat no longer works"
step "OK"
