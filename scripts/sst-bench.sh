#!/bin/bash
# sst-bench.sh: loopback SST benchmark, sst-tunnel against the stock tools in one run.
#
#   scripts/sst-bench.sh --bin PATH [--data-mb N] [--tree-mb N] [--rounds N] [--out FILE]
#
# 1. Galera SST: the same 2-node cluster (scripts/galera-sst.sh) joined by rsync SST
#    (VERIFY_CA) and mariabackup SST (encrypt=4), once with the stock stunnel/socat and once
#    through sst-tunnel; node2 start -> Synced, as in the contract's table.
# 2. rsync of a tree (many small files and a few large ones) into an rsync daemon, through
#    stock stunnel, through sst-tunnel's stunnel front-end (the same configs), and through
#    the native `connect`/`listen --exec`; the median of --rounds interleaved runs.
# Prints a markdown table and writes it to --out (default target/bench-sst.md).
# Needs root and what galera-sst.sh needs.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bin=
data_mb=300
tree_mb=600
rounds=3
out=$here/../target/bench-sst.md
while [ $# -gt 0 ]; do
    case $1 in
        --bin) bin=$2; shift 2 ;;
        --data-mb) data_mb=$2; shift 2 ;;
        --tree-mb) tree_mb=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        *) echo "sst-bench: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -x "$bin" ] || { echo "sst-bench: give --bin PATH (a release build of sst-tunnel)" >&2; exit 2; }
bin=$(readlink -f "$bin")

T=$(mktemp -d /tmp/sst-bench.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$T"
}
trap cleanup EXIT

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
rate() { awk -v bytes="$1" -v s="$2" 'BEGIN { printf "%.0f", bytes / s / 1e6 }'; }

# --- 1. Galera SST ---
declare -A sst_seconds sst_bytes
for tunnel in stock sst-tunnel; do
    echo "sst-bench: Galera SST with $tunnel ($data_mb MB)" >&2
    while read -r word case rest; do
        [ "$word" = PASS ] || continue
        sst_seconds[$tunnel,$case]=$(sed -n 's/.*sst_seconds=\([0-9.]*\).*/\1/p' <<<"$rest")
        sst_bytes[$tunnel,$case]=$(sed -n 's/.*datadir_bytes=\([0-9]*\).*/\1/p' <<<"$rest")
    done < <("$here/galera-sst.sh" --bin "$bin" --tunnel "$tunnel" --data-mb "$data_mb" \
        rsync:VERIFY_CA mariabackup:encrypt=4 2>/dev/null)
done

# --- 2. rsync of a tree ---
echo "sst-bench: rsync of a ${tree_mb} MB tree, $rounds rounds" >&2
mkdir -p "$T/src" "$T/cfg"
"$bin" gen-certs --out "$T/ssl" --node node1=127.0.0.1 --node node2=127.0.0.1 >/dev/null
# Half the bytes in 16 KiB-ish files (one per table, as a datadir has), half in four big ones.
small_count=$(( tree_mb * 1024 / 2 / 16 ))
for i in $(seq 0 $((small_count - 1))); do
    d=$T/src/db$((i % 40))
    [ -d "$d" ] || mkdir -p "$d"
    head -c $(( 4096 + (i * 7919) % 24576 )) /dev/urandom >"$d/t$i.ibd"
done
for i in 1 2 3 4; do
    head -c $(( tree_mb * 1024 * 1024 / 8 )) /dev/urandom >"$T/src/ibdata$i"
done
tree_bytes=$(du -sb "$T/src" | cut -f1)
cat >"$T/cfg/rsyncd.conf" <<EOF
use chroot = no
read only = no
uid = 0
gid = 0
[sst]
path = $T/dest
EOF
tls_lines() { printf 'key = %s\ncert = %s\nCAfile = %s\n' "$T/ssl/$1-key.pem" "$T/ssl/$1-cert.pem" "$T/ssl/ca.pem"; }
port=$(( 20000 + RANDOM % 20000 ))
{
    tls_lines node2
    printf 'foreground = yes\npid = %s\ndebug = warning\nclient = no\nverifyChain = yes\n\n[rsync]\n' "$T/cfg/stunnel.pid"
    printf 'accept = 127.0.0.1:%s\nexec = %s\nexecargs = rsync --server --daemon --config=%s .\n' "$port" "$(command -v rsync)" "$T/cfg/rsyncd.conf"
} >"$T/cfg/joiner.conf"
{
    tls_lines node1
    printf 'foreground = yes\ndebug = warning\nclient = yes\nconnect = 127.0.0.1:%s\nTIMEOUTclose = 0\nverifyChain = yes\n' "$port"
} >"$T/cfg/donor.conf"
ln -sf "$bin" "$T/cfg/stunnel"

wait_port() { for _ in $(seq 1 200); do ss -Hltn "( sport = :$1 )" | grep -q . && return 0; sleep 0.05; done; return 1; }

# One timed rsync through `tunnel`; prints seconds.
rsync_once() {
    local tunnel=$1 server rsh
    rm -rf "$T/dest"
    mkdir -p "$T/dest"
    case $tunnel in
        stunnel) stunnel4 "$T/cfg/joiner.conf" 2>/dev/null & server=$!; rsh="stunnel4 $T/cfg/donor.conf" ;;
        sst-stunnel) "$T/cfg/stunnel" "$T/cfg/joiner.conf" 2>/dev/null & server=$!; rsh="$T/cfg/stunnel $T/cfg/donor.conf" ;;
        native)
            "$bin" listen "127.0.0.1:$port" --cert "$T/ssl/node2-cert.pem" --key "$T/ssl/node2-key.pem" \
                --ca "$T/ssl/ca.pem" --log-level warn --exec "$(command -v rsync)" --server --daemon \
                "--config=$T/cfg/rsyncd.conf" . 2>/dev/null & server=$!
            rsh="$bin connect 127.0.0.1:$port --cert $T/ssl/node1-cert.pem --key $T/ssl/node1-key.pem --ca $T/ssl/ca.pem --log-level warn --"
            ;;
    esac
    pids+=("$server")
    wait_port "$port" || { echo "sst-bench: $tunnel did not listen" >&2; exit 1; }
    local start=$EPOCHREALTIME
    rsync -a --whole-file --inplace --rsh="$rsh" "$T/src/" "rsync://127.0.0.1/sst/" ||
        { echo "sst-bench: rsync through $tunnel failed" >&2; exit 1; }
    local end=$EPOCHREALTIME
    kill "$server"; wait "$server" 2>/dev/null || true
    diff -r -q "$T/src" "$T/dest" >/dev/null || { echo "sst-bench: $tunnel copy differs" >&2; exit 1; }
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f\n", b - a }'
}
declare -A tree_times
order=(stunnel sst-stunnel native)
for round in $(seq 0 $((rounds - 1))); do
    # Rotate the order each round, and start every run with no dirty pages from the last
    # one, so that writeback does not bill one tunnel for another's bytes.
    for k in 0 1 2; do
        tunnel=${order[$(((round + k) % 3))]}
        sync
        tree_times[$tunnel]+="$(rsync_once "$tunnel") "
    done
done

# --- report ---
{
    echo "Loopback, $(nproc) CPUs, $(date -u +%Y-%m-%d). sst-tunnel: $("$bin" --version)."
    echo
    echo "| Galera SST (${data_mb} MB of rows) | stock s | sst-tunnel s | stock MB/s | sst-tunnel MB/s | speed-up |"
    echo "|---|---|---|---|---|---|"
    for case in rsync:VERIFY_CA mariabackup:encrypt=4; do
        s=${sst_seconds[stock,$case]:-} t=${sst_seconds[sst-tunnel,$case]:-}
        b=${sst_bytes[sst-tunnel,$case]:-0}
        if [ -z "$s" ] || [ -z "$t" ]; then
            echo "| $case | ${s:-failed} | ${t:-failed} | | | |"
            continue
        fi
        echo "| $case (node2 start -> Synced) | $s | $t | $(rate "$b" "$s") | $(rate "$b" "$t") | $(ratio "$s" "$t")x |"
    done
    echo
    echo "| rsync of a tree ($(( tree_bytes / 1000000 )) MB, $small_count small files + 4 large), median of $rounds | seconds | MB/s | x stock stunnel |"
    echo "|---|---|---|---|"
    base=$(tr ' ' '\n' <<<"${tree_times[stunnel]}" | grep . | median)
    for tunnel in stunnel sst-stunnel native; do
        m=$(tr ' ' '\n' <<<"${tree_times[$tunnel]}" | grep . | median)
        case $tunnel in
            stunnel) label="stock stunnel 5.68 (inetd donor -> daemon joiner)" ;;
            sst-stunnel) label="sst-tunnel as stunnel (same configs)" ;;
            native) label="sst-tunnel connect -> listen --exec" ;;
        esac
        echo "| $label | $m | $(rate "$tree_bytes" "$m") | $(ratio "$base" "$m") |"
    done
} | tee "$out"
