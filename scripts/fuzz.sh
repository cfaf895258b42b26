#!/usr/bin/env bash
# fuzz.sh: runs every fuzz target under tests/fuzz for a fixed time each (libFuzzer through
# cargo-fuzz), from seeds taken from the SST contract's captured configs plus a PKI made for
# the run, so that the front-ends' translation reaches certificate loading and rustls configs.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default 20 s, every target)
#
# Installs cargo-fuzz when missing. The toolchain is stable: RUSTC_BOOTSTRAP lets cargo-fuzz
# pass its -Z flags. A crash leaves its input under tests/fuzz/artifacts/TARGET/ and fails.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
shift || true
fuzz=tests/fuzz
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(stunnel_conf socat_args socat_address my_cnf provider_options pem records resume_frames)

# A debug build of cargo-fuzz itself: it only drives cargo, and builds in half the time.
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet --debug
export RUSTC_BOOTSTRAP=1

work=$PWD/target/fuzz
rm -rf "$work"
mkdir -p "$work"
# A real PKI where the seeds say /tmp/sst, so paths in seeds name files that exist.
cargo build --quiet --bin sst-tunnel
target/debug/sst-tunnel gen-certs --out "$work/ssl" --node node1=127.0.0.1 --node node2=127.0.0.2,::1 >/dev/null
(
    cd "$work/ssl"
    for n in node1 node2; do cat "$n-cert.pem" "$n-key.pem" >"$n-combined.pem"; done
    mkdir capath && cp ca.pem capath/ && openssl rehash capath >/dev/null
    printf '[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\ncrlnumber=crlnumber\ndefault_md=sha256\ndefault_crl_days=30\n' >ca.cnf
    : >index.txt
    echo 01 >crlnumber
    openssl ca -config ca.cnf -gencrl -keyfile ca-key.pem -cert ca.pem -out crl.pem 2>/dev/null
)

# One build of every target (one instrumented, optimised build of the dependencies), then
# each binary runs by itself.
cargo fuzz build --fuzz-dir "$fuzz" --sanitizer none >"$work/build.log" 2>&1 ||
    { tail -40 "$work/build.log" >&2; exit 1; }
bins=$fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release
failed=()
for t in "${targets[@]}"; do
    corpus=$work/corpus/$t
    mkdir -p "$corpus" "$fuzz/artifacts/$t"
    for seed in "$fuzz/seeds/$t"/*; do
        [ -e "$seed" ] || continue
        sed "s#/tmp/sst/#$work/#g" "$seed" >"$corpus/$(basename "$seed")"
    done
    if [ "$t" = pem ]; then
        cp "$work/ssl/ca.pem" "$work/ssl/node1-combined.pem" "$work/ssl/crl.pem" "$corpus/"
    fi
    echo "fuzz.sh: $t for ${seconds}s"
    # -rss_limit_mb: a parser that balloons is a finding too; -timeout: so is one that stalls.
    if ! "$bins/$t" "$corpus" -artifact_prefix="$fuzz/artifacts/$t/" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 -max_len=8192 \
        -print_final_stats=1 >"$work/$t.log" 2>&1; then
        tail -40 "$work/$t.log" >&2
        failed+=("$t")
        continue
    fi
    grep -E '^stat::number_of_executed_units|^stat::new_units_added' "$work/$t.log" |
        tr '\n' ' ' | sed "s/^/fuzz.sh: $t: /; s/\$/\n/"
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: FAILED: ${failed[*]} (inputs under $fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz.sh: every target ran ${seconds}s without a finding"
