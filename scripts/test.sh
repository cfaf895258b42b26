#!/usr/bin/env bash
# The whole test suite on a fresh Debian/Ubuntu machine: installs what the tests use
# (stunnel4, socat, rsync from the distribution), then runs cargo fmt/clippy checks and
# every test. Needs root (or sudo) for apt-get; skips the install when the tools are there.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for tool in stunnel:stunnel4 socat:socat rsync:rsync diff:diffutils ss:iproute2 openssl:openssl; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool##*:}")
done
if ((${#need[@]})); then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" gcc >/dev/null
fi

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked
