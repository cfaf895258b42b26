# packaging/glibc.sh: sourced. The oldest glibc the packaged binary may need, and the checks
# against it that build.sh and test-install.sh share.
GLIBC=2.28
# The newest glibc version named in the text on stdin (readelf -V, rpm -qpR: GLIBC_x.y).
glibc_newest() { grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -Vu | tail -n1; }
# Whether VERSION is at most $GLIBC.
glibc_within() { [ "$(printf '%s\n%s\n' "$1" "$GLIBC" | sort -V | tail -n1)" = "$GLIBC" ]; }
