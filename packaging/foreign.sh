# packaging/foreign.sh: sourced (after scripts/debian-archive.sh). Building and running the
# binary for another architecture than this machine's, for build.sh and test-qemu.sh.
#
# rustup here has no other target's standard library, and Debian's rustc in the stable
# release is older than our rust-version. So the foreign build runs in a Debian sid chroot
# (debootstrap, kept under target/chroots/rust-sid) with sid's rustc and cargo, plus the
# rlibs of libstd-rust-dev for the target architecture at exactly that rustc's version. zig
# (PyPI's ziglang) links it against glibc 2.28 through cargo-zigbuild, as on x86_64. The
# repository, its target folder and this machine's crate cache are mounted in, so the build
# inside needs no network. The binary then runs under qemu-user (qemu-user-static) on an
# older Debian's glibc for that architecture (target/chroots/sysroot-ARCH).

chroots=$PWD/target/chroots
builder=$chroots/rust-sid

# arch_names DEBARCH: sets debarch, triple (Rust's), rpmarch and machine (uname -m, qemu's).
arch_names() {
    debarch=$1
    case $debarch in
        amd64) machine=x86_64 ;;
        arm64) machine=aarch64 ;;
        *) echo "packaging: unsupported architecture $debarch (amd64 or arm64)" >&2; return 1 ;;
    esac
    triple=$machine-unknown-linux-gnu
    rpmarch=$machine
}

# The zig and cargo-zigbuild the builds use, from PyPI, installed when missing. Sets zig_dir
# (zig's folder) and zig_scripts (where pip put cargo-zigbuild) and puts both on PATH.
zig_tools() {
    zig_scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
    python3 -c 'import ziglang' 2>/dev/null ||
        python3 -m pip install --quiet --root-user-action=ignore ziglang
    [ -x "$zig_scripts/cargo-zigbuild" ] || command -v cargo-zigbuild >/dev/null ||
        python3 -m pip install --quiet --root-user-action=ignore cargo-zigbuild
    zig_dir=$(python3 -c 'import ziglang, os; print(os.path.dirname(ziglang.__file__))')
    export PATH=$zig_scripts:$zig_dir:$PATH
}

# The functions below are also called as `foreign_builder && foreign_sysroot`, where bash
# suspends errexit inside them: every step says `|| return 1` itself, so a failed step can
# never be followed by the ready mark that would make later runs trust a broken tree.

# The sid chroot with rustc, cargo and the target's std rlibs at rustc's version.
foreign_builder() {
    local version std
    if [ ! -e "$builder/.sst-ready-$debarch" ]; then
        if [ ! -x "$builder/usr/bin/cargo" ]; then
            rm -rf "$builder"
            mkdir -p "$builder"
            echo "packaging: debootstrap sid with rustc and cargo into $builder"
            debootstrap --variant=minbase --include=rustc,cargo,libc6-dev,gcc sid "$builder" \
                "$(debian_archive)" >"$chroots/rust-sid.log" 2>&1 ||
                { tail -n 20 "$chroots/rust-sid.log" >&2; return 1; }
        fi
        version=$(chroot "$builder" dpkg-query -W -f '${Version}' rustc) || return 1
        [ -n "$version" ] || { echo "packaging: no rustc in $builder" >&2; return 1; }
        private_apt "$chroots/apt-sid-$debarch" sid "$debarch" || return 1
        std=$chroots/std-$debarch
        rm -rf "$std"
        mkdir -p "$std/deb" || return 1
        (cd "$std/deb" && apt-get "${private_apt_opts[@]}" download -q "libstd-rust-dev:$debarch=$version" >/dev/null) || {
            echo "packaging: sid has no libstd-rust-dev:$debarch $version any more: remove $builder and run again" >&2
            return 1
        }
        dpkg-deb -x "$std"/deb/*.deb "$std/unpacked" || return 1
        [ -d "$std/unpacked/usr/lib/rustlib/$triple/lib" ] ||
            { echo "packaging: libstd-rust-dev:$debarch has no rustlib/$triple" >&2; return 1; }
        mkdir -p "$builder/usr/lib/rustlib/$triple" || return 1
        rm -rf "$builder/usr/lib/rustlib/$triple/lib"
        cp -a "$std/unpacked/usr/lib/rustlib/$triple/lib" "$builder/usr/lib/rustlib/$triple/" ||
            return 1
        rm -rf "$std"
        touch "$builder/.sst-ready-$debarch" || return 1
    fi
}

# foreign_build: the release binary for $triple against glibc $GLIBC, in the sid chroot;
# it lands in target/foreign/$triple/release/sst-tunnel.
foreign_build() {
    local mounts=() m status=0
    zig_tools
    foreign_builder
    cargo fetch --locked --quiet
    mkdir -p "$builder/src" "$builder/opt/zig" "$builder/root/.cargo/registry" "$builder/proc"
    cp "$(command -v cargo-zigbuild)" "$builder/usr/local/bin/"
    mount --bind "$PWD" "$builder/src" && mounts+=("$builder/src")
    mount --bind "$zig_dir" "$builder/opt/zig" && mounts+=("$builder/opt/zig")
    mount --bind "${CARGO_HOME:-$HOME/.cargo}/registry" "$builder/root/.cargo/registry" &&
        mounts+=("$builder/root/.cargo/registry")
    mount -t proc proc "$builder/proc" && mounts+=("$builder/proc")
    chroot "$builder" env -i HOME=/root PATH=/opt/zig:/usr/local/bin:/usr/bin:/bin \
        CARGO_HOME=/root/.cargo CARGO_TARGET_DIR=/src/target/foreign \
        sh -c "cd /src && cargo zigbuild --release --locked --offline --target $triple.$GLIBC" ||
        status=$?
    for ((m = ${#mounts[@]} - 1; m >= 0; m--)); do umount "${mounts[m]}"; done
    return $status
}

# foreign_sysroot: an older Debian's (bullseye, glibc 2.31) libc for $debarch, for qemu-user.
foreign_sysroot() {
    sysroot=$chroots/sysroot-$debarch
    [ -e "$sysroot/.sst-ready" ] && return 0
    private_apt "$chroots/apt-bullseye-$debarch" bullseye "$debarch" || return 1
    rm -rf "$sysroot"
    mkdir -p "$sysroot/deb" || return 1
    (cd "$sysroot/deb" && apt-get "${private_apt_opts[@]}" download -q "libc6:$debarch" "libgcc-s1:$debarch" >/dev/null) ||
        { echo "packaging: cannot download bullseye's libc6:$debarch" >&2; return 1; }
    for deb in "$sysroot"/deb/*.deb; do dpkg-deb -x "$deb" "$sysroot" || return 1; done
    rm -rf "$sysroot/deb"
    # Only a sysroot with a C library in it is marked ready.
    compgen -G "$sysroot/lib/*/libc.so.6" >/dev/null ||
        { echo "packaging: $sysroot has no libc.so.6" >&2; return 1; }
    touch "$sysroot/.sst-ready" || return 1
}

# foreign_run COMMAND...: a $debarch program under qemu-user with the sysroot's libc.
foreign_run() {
    "qemu-$machine-static" -L "$sysroot" "$@"
}
