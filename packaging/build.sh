#!/bin/bash
# packaging/build.sh: the .deb and the .rpm, both from packaging/files.list.
#
#   packaging/build.sh [--no-build]
#
# Builds the packaged binary (unless --no-build): a release build linked against glibc 2.28
# with cargo-zigbuild (zig from PyPI's ziglang), so one binary runs on every distribution
# with glibc 2.28 or later (RHEL/Rocky/Alma 8, Debian 10, Ubuntu 20.04 and newer). It lands
# under CARGO_TARGET_DIR (default target/) in TRIPLE/release/. Then it generates the man pages
# and completions from the clap definitions (`sst-tunnel generate`), stages every file of
# files.list under target/package/root, and packs that tree with dpkg-deb and rpmbuild:
#   target/package/sst-tunnel_VERSION_ARCH.deb
#   target/package/sst-tunnel-VERSION-1.ARCH.rpm
# Needs dpkg-dev (dpkg-shlibdeps) and rpm (rpmbuild); installs ziglang (pip) and
# cargo-zigbuild (cargo) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
# The oldest glibc the binary may need ($GLIBC): its symbols are bound to this version's.
. packaging/glibc.sh
triple=$(uname -m)-unknown-linux-gnu
if [ "${1:-}" != --no-build ]; then
    python3 -c 'import ziglang' 2>/dev/null || command -v zig >/dev/null ||
        python3 -m pip install --quiet --root-user-action=ignore ziglang
    command -v cargo-zigbuild >/dev/null || cargo install cargo-zigbuild --locked --quiet
    cargo zigbuild --release --locked --target "$triple.$GLIBC"
fi
# cargo builds under CARGO_TARGET_DIR when it is set (relative to the repository).
target_dir=${CARGO_TARGET_DIR:-target}
case $target_dir in /*) ;; *) target_dir=$repo/$target_dir ;; esac
bin=$target_dir/$triple/release/sst-tunnel
[ -x "$bin" ] || { echo "packaging/build.sh: no binary at $bin (build it, or drop --no-build)" >&2; exit 1; }
# A symbol bound to a newer glibc would make the package refuse to run where it installs.
newest=$(objdump -T "$bin" | glibc_newest)
glibc_within "$newest" ||
    { echo "packaging/build.sh: $bin needs GLIBC_$newest, above $GLIBC" >&2; exit 1; }
out=$repo/target/package
gen=$out/gen
root=$out/root
rm -rf "$out"
mkdir -p "$gen/man" "$gen/completions" "$root"
cp "$bin" "$gen/sst-tunnel"

"$bin" generate man "$gen/man"
cp packaging/sst-tunnel-switch.8 "$gen/man/"
gzip -9n "$gen"/man/*
"$bin" generate completions "$gen/completions"
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
        case $src in gen/*) src=$out/$src ;; esac
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
arch=$(dpkg --print-architecture)
deb=$out/deb
cp -a "$root" "$deb"
mkdir -p "$deb/DEBIAN"
shlibs=$(mktemp -d)
mkdir "$shlibs/debian"
printf 'Source: sst-tunnel\n\nPackage: sst-tunnel\nArchitecture: any\n' >"$shlibs/debian/control"
# dpkg-shlibdeps reads the build machine's symbols files, which can ask for more than the
# binary's symbol versions do (bookworm's says 2.34 for any use of sysconf, for constants
# 2.34 added): libc6's minimum is the newest glibc version the binary's symbols name.
depends=$(cd "$shlibs" && dpkg-shlibdeps -O "$bin" 2>/dev/null | sed -n 's/^shlibs:Depends=//p' |
    sed "s/libc6 (>= [0-9.]*)/libc6 (>= $newest)/")
rm -rf "$shlibs"
cat >"$deb/DEBIAN/control" <<EOF
Package: sst-tunnel
Version: $version
Architecture: $arch
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
rpmarch=$(uname -m)
top=$out/rpmbuild
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
