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
