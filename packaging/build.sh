#!/bin/bash
# packaging/build.sh: the .deb and the .rpm, both from packaging/files.list.
#
#   packaging/build.sh [--no-build] [--arch amd64|arm64] [--prepare]
#
# Builds the packaged binary (unless --no-build): a release build linked against glibc 2.28
# with cargo-zigbuild (zig from PyPI's ziglang), so one binary runs on every distribution
# with glibc 2.28 or later (RHEL/Rocky/Alma 8, Debian 10, Ubuntu 20.04 and newer). For this
# machine's architecture (the default) it lands under CARGO_TARGET_DIR (default target/) in
# TRIPLE/release/; for the other one (arm64 on x86_64) it is built in a Debian sid chroot and
# lands in target/foreign/TRIPLE/release/ (packaging/foreign.sh says why and how). --prepare
# only makes that chroot and the qemu-user sysroot, so they can be made ahead of time.
# Then it generates the man pages and completions from the clap definitions
# (`sst-tunnel generate`, under qemu-user for a foreign binary), stages every file of
# files.list under target/package/ARCH/root, and packs that tree with dpkg-deb and rpmbuild:
#   target/package/sst-tunnel_VERSION_ARCH.deb
#   target/package/sst-tunnel-VERSION-1.RPMARCH.rpm
# Needs rpm (rpmbuild) and binutils (readelf); a foreign build also debootstrap and
# qemu-user-static. Installs ziglang and cargo-zigbuild (pip) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

build=yes
prepare=no
arch=$(dpkg --print-architecture)
while [ $# -gt 0 ]; do
    case $1 in
        --no-build) build=no; shift ;;
        --arch) arch=$2; shift 2 ;;
        --prepare) prepare=yes; shift ;;
        *) echo "packaging/build.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
# The oldest glibc the binary may need ($GLIBC): its symbols are bound to this version's.
. packaging/glibc.sh
. scripts/debian-archive.sh
. packaging/foreign.sh
arch_names "$arch"
native=no
[ "$machine" != "$(uname -m)" ] || native=yes
if [ "$prepare" = yes ]; then
    [ "$native" = yes ] || { foreign_builder && foreign_sysroot; }
    exit
fi
if [ "$native" = yes ]; then
    if [ "$build" = yes ]; then
        zig_tools
        cargo zigbuild --release --locked --target "$triple.$GLIBC"
    fi
    # cargo builds under CARGO_TARGET_DIR when it is set (relative to the repository).
    target_dir=${CARGO_TARGET_DIR:-target}
    case $target_dir in /*) ;; *) target_dir=$repo/$target_dir ;; esac
    bin=$target_dir/$triple/release/sst-tunnel
    runbin() { "$bin" "$@"; }
else
    [ "$build" = no ] || foreign_build
    bin=$repo/target/foreign/$triple/release/sst-tunnel
    foreign_sysroot
    runbin() { foreign_run "$bin" "$@"; }
fi
[ -x "$bin" ] || { echo "packaging/build.sh: no binary at $bin (build it, or drop --no-build)" >&2; exit 1; }
# A symbol bound to a newer glibc would make the package refuse to run where it installs.
newest=$(readelf -V "$bin" | glibc_newest)
glibc_within "$newest" ||
    { echo "packaging/build.sh: $bin needs GLIBC_$newest, above $GLIBC" >&2; exit 1; }
# Every library it loads must be glibc's: then libc6 (>= newest) is all the .deb needs.
others=$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' |
    grep -v -E '^(libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1|libutil\.so\.1|ld-linux[-a-z0-9_.]*\.so\.[0-9])$' || true)
[ -z "$others" ] ||
    { echo "packaging/build.sh: $bin needs libraries outside glibc: $others" >&2; exit 1; }
out=$repo/target/package
gen=$out/$arch/gen
root=$out/$arch/root
rm -rf "${out:?}/$arch" "$out"/sst-tunnel_*_"$arch".deb "$out"/sst-tunnel-*."$rpmarch".rpm
mkdir -p "$gen/man" "$gen/completions" "$root"
cp "$bin" "$gen/sst-tunnel"

runbin generate man "$gen/man"
cp packaging/sst-tunnel-switch.8 "$gen/man/"
gzip -9n "$gen"/man/*
runbin generate completions "$gen/completions"
gzip -9n -c packaging/changelog >"$gen/changelog.gz"
gzip -9n -c README.md >"$gen/README.md.gz"

# Stage the tree; a generated file that files.list does not name is an error, so the list
# cannot silently fall behind the sub-commands.
dests=()
while read -r dest mode src; do
    case $dest in '' | '#'*) continue ;; esac
    dests+=("$dest")
    mkdir -p "$root$(dirname "$dest")"
    if [ "$mode" = link ]; then
        ln -s "$src" "$root$dest"
    else
        case $src in gen/*) src=$out/$arch/$src ;; esac
        install -m "$mode" "$src" "$root$dest"
    fi
done <packaging/files.list
for page in "$gen"/man/*.gz; do
    grep -q "/$(basename "$page")\$" <(printf '%s\n' "${dests[@]}") ||
        { echo "packaging/build.sh: $(basename "$page") is not in packaging/files.list" >&2; exit 1; }
done

summary="TLS tunnel for Galera State Snapshot Transfers (stunnel/socat drop-in)"
description=" sst-tunnel encrypts MariaDB/Percona Galera State Snapshot Transfers (SST)
 with rustls. It replaces stunnel (rsync SST) and socat (mariabackup SST):
 the stock wsrep_sst_rsync and wsrep_sst_mariabackup scripts run it unchanged
 through its stunnel and socat front-ends, and sst-tunnel-switch routes a
 node's SSTs through it. It fails closed: peers are verified by default and a
 stream that ends without close_notify is an error. Also: gen-certs (a cluster
 CA and node certificates), check (a pre-flight doctor) and selftest."

# --- .deb ---
deb=$out/$arch/deb
cp -a "$root" "$deb"
mkdir -p "$deb/DEBIAN"
# libc6's minimum is the newest glibc version the binary's symbols name (dpkg-shlibdeps
# knows only this machine's architecture, and bookworm's symbols file asks 2.34 for any use
# of sysconf, for constants 2.34 added).
depends="libc6 (>= $newest)"
cat >"$deb/DEBIAN/control" <<EOF
Package: sst-tunnel
Version: $version
Architecture: $debarch
Maintainer: sst-tunnel developers <sst-tunnel@lists.example.org>
Installed-Size: $(du -sk "$root" | cut -f1)
Depends: $depends
Suggests: mariadb-server, galera-4, mariadb-backup, rsync
Section: net
Priority: optional
Homepage: https://github.com/sst-tunnel/sst-tunnel
Description: $summary
$description
EOF
(cd "$deb" && find usr -type f -print0 | sort -z | xargs -0 md5sum) >"$deb/DEBIAN/md5sums"
chmod 0644 "$deb/DEBIAN/control" "$deb/DEBIAN/md5sums"
dpkg-deb --root-owner-group -Zxz --build "$deb" "$out/sst-tunnel_${version}_${arch}.deb" >/dev/null

# --- .rpm ---
top=$out/$arch/rpmbuild
mkdir -p "$top/SPECS" "$top/RPMS"
{
    cat <<EOF
Name: sst-tunnel
Version: $version
Release: 1
Summary: $summary
License: Apache-2.0
URL: https://github.com/sst-tunnel/sst-tunnel
Suggests: mariadb-server-galera

%description
$(sed 's/^ //' <<<"$description")

%install
cp -a $root/. %{buildroot}/

%files
%dir /usr/lib/sst-tunnel
%dir /usr/lib/sst-tunnel/bin
%dir /usr/share/doc/sst-tunnel
EOF
    for dest in "${dests[@]}"; do
        case $dest in
            /usr/share/doc/*) echo "%doc $dest" ;;
            /usr/share/man/*) echo "%doc $dest" ;;
            *) echo "$dest" ;;
        esac
    done
} >"$top/SPECS/sst-tunnel.spec"
rpmbuild -bb --quiet --target "$rpmarch" \
    --define "_topdir $top" \
    --define "debug_package %{nil}" \
    --define "__os_install_post %{nil}" \
    --define "_build_id_links none" \
    "$top/SPECS/sst-tunnel.spec" >/dev/null
mv "$top/RPMS/$rpmarch/sst-tunnel-$version-1.$rpmarch.rpm" "$out/"
echo "packaging/build.sh: $out/sst-tunnel_${version}_${arch}.deb $out/sst-tunnel-$version-1.$rpmarch.rpm"
