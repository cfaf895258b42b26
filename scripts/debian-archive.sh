# scripts/debian-archive.sh: sourced. debian_archive prints the Debian archive this system's
# apt uses (deb822 or one-line sources), for fetching other suites from the same place;
# nothing when there is none.
debian_archive() {
    local uri
    uri=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\)\/\{0,1\}$/\1/p' \
        /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
    [ -n "$uri" ] || uri=$(awk '$1 == "deb" && $2 ~ /\/debian\/?$/ {print $2; exit}' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null)
    printf '%s' "$uri"
}

# private_apt DIR SUITE [ARCH]: an apt configuration of our own under DIR for SUITE of that
# archive (main), for ARCH's packages when given; the system's sources, lists and cache are
# left alone. Sets private_apt_opts for apt-get and apt-cache and runs `apt-get update`.
# (APT::Sandbox::User=root: downloads and lists go into DIR, which _apt cannot write.)
private_apt() {
    local dir suite=$2 arch=${3:-} uri
    dir=$(realpath -m "$1")
    uri=$(debian_archive)
    [ -n "$uri" ] || { echo "debian-archive.sh: no Debian archive in the system's apt sources to take $suite from" >&2; return 1; }
    mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
    printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg%s] %s %s main\n' \
        "${arch:+ arch=$arch}" "$uri" "$suite" >"$dir/sources.list"
    private_apt_opts=(-o APT::Sandbox::User=root -o Dir::Etc::sourcelist="$dir/sources.list"
        -o Dir::Etc::sourceparts=- -o Dir::State::Lists="$dir/lists" -o Dir::Cache="$dir/cache")
    [ -z "$arch" ] || private_apt_opts+=(-o APT::Architecture="$arch" -o APT::Architectures="$arch")
    apt-get "${private_apt_opts[@]}" update -qq ||
        { echo "debian-archive.sh: apt-get update for $suite${arch:+ ($arch)} failed" >&2; return 1; }
}
