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
# Every run is verified: a Galera case counts only when galera-sst.sh passed it (node2
# synced, data checksums equal on both nodes); an rsync run only when rsync and the tunnel
# exited as they should and the copy equals the source. A failed run makes its row say
# FAILED with the reason, and the script exits 1 after writing the table.
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

failures=0
# --- 1. Galera SST ---
declare -A sst_seconds=() sst_bytes=() sst_failed=()
for tunnel in stock sst-tunnel; do
    echo "sst-bench: Galera SST with $tunnel ($data_mb MB)" >&2
    while read -r word case rest; do
        case $word in
            PASS)
                sst_seconds[$tunnel,$case]=$(sed -n 's/.*sst_seconds=\([0-9.]*\).*/\1/p' <<<"$rest")
                sst_bytes[$tunnel,$case]=$(sed -n 's/.*datadir_bytes=\([0-9]*\).*/\1/p' <<<"$rest")
                ;;
            FAIL) sst_failed[$tunnel,${case%:}]=${rest:0:120} ;;
        esac
    done < <("$here/galera-sst.sh" --bin "$bin" --tunnel "$tunnel" --data-mb "$data_mb" \
        rsync:VERIFY_CA mariabackup:encrypt=4 2>"$T/galera-$tunnel.log" || true)
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

# One timed rsync through `tunnel`; prints seconds, or `FAILED: why` (the row then fails).
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
    if ! wait_port "$port"; then
        kill "$server" 2>/dev/null || true
        echo "FAILED: $tunnel did not listen"
        return
    fi
    local start=$EPOCHREALTIME rc=0 src=0 why=
    rsync -a --whole-file --inplace --rsh="$rsh" "$T/src/" "rsync://127.0.0.1/sst/" \
        2>"$T/rsync.err" || rc=$?
    local end=$EPOCHREALTIME
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || src=$?
    [ $rc = 0 ] || why="$why rsync exit $rc ($(tail -n 1 "$T/rsync.err"));"
    # Stopped by our SIGTERM: 0 (stunnel) or 143 (sst-tunnel); anything else is a failure.
    [ $src = 0 ] || [ $src = 143 ] || why="$why the joiner's tunnel exited $src;"
    diff -r -q "$T/src" "$T/dest" >/dev/null 2>&1 || why="$why the copy differs from the source;"
    if [ -n "$why" ]; then
        echo "FAILED:$why"
        return
    fi
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f\n", b - a }'
}
declare -A tree_times=() tree_failed=()
order=(stunnel sst-stunnel native)
for round in $(seq 0 $((rounds - 1))); do
    # Rotate the order each round, and start every run with no dirty pages from the last
    # one, so that writeback does not bill one tunnel for another's bytes.
    for k in 0 1 2; do
        tunnel=${order[$(((round + k) % 3))]}
        sync
        result=$(rsync_once "$tunnel")
        case $result in
            FAILED*) tree_failed[$tunnel]=$result; echo "sst-bench: $tunnel: $result" >&2 ;;
            *) tree_times[$tunnel]+="$result " ;;
        esac
    done
done

# --- report ---
for case in rsync:VERIFY_CA mariabackup:encrypt=4; do
    for tunnel in stock sst-tunnel; do
        [ -n "${sst_seconds[$tunnel,$case]:-}" ] || failures=$((failures + 1))
    done
done
failures=$((failures + ${#tree_failed[@]}))
{
    echo "Loopback, $(nproc) CPUs, $(date -u +%Y-%m-%d). sst-tunnel: $("$bin" --version)."
    echo
    echo "| Galera SST (${data_mb} MB of rows) | stock s | sst-tunnel s | stock MB/s | sst-tunnel MB/s | speed-up |"
    echo "|---|---|---|---|---|---|"
    for case in rsync:VERIFY_CA mariabackup:encrypt=4; do
        s=${sst_seconds[stock,$case]:-} t=${sst_seconds[sst-tunnel,$case]:-}
        b=${sst_bytes[sst-tunnel,$case]:-0}
        if [ -z "$s" ] || [ -z "$t" ]; then
            fs=${sst_failed[stock,$case]:-no result} ft=${sst_failed[sst-tunnel,$case]:-no result}
            echo "| $case | ${s:-FAILED: $fs} | ${t:-FAILED: $ft} | | | |"
            continue
        fi
        echo "| $case (node2 start -> Synced) | $s | $t | $(rate "$b" "$s") | $(rate "$b" "$t") | $(ratio "$s" "$t")x |"
    done
    echo
    echo "| rsync of a tree ($(( tree_bytes / 1000000 )) MB, $small_count small files + 4 large), median of $rounds | seconds | MB/s | x stock stunnel |"
    echo "|---|---|---|---|"
    base=$(tr ' ' '\n' <<<"${tree_times[stunnel]}" | grep . | median)
    for tunnel in stunnel sst-stunnel native; do
        case $tunnel in
            stunnel) label="stock stunnel (inetd donor -> daemon joiner)" ;;
            sst-stunnel) label="sst-tunnel as stunnel (same configs)" ;;
            native) label="sst-tunnel connect -> listen --exec" ;;
        esac
        # One failed run fails the row: a median would hide it.
        if [ -n "${tree_failed[$tunnel]:-}" ]; then
            echo "| $label | ${tree_failed[$tunnel]} | | |"
            continue
        fi
        m=$(tr ' ' '\n' <<<"${tree_times[$tunnel]}" | grep . | median)
        if [ -n "${tree_failed[stunnel]:-}" ]; then
            echo "| $label | $m | $(rate "$tree_bytes" "$m") | |"
        else
            echo "| $label | $m | $(rate "$tree_bytes" "$m") | $(ratio "$base" "$m") |"
        fi
    done
    echo
    echo "Every run verified: Galera cases passed galera-sst.sh's checks (node2 synced, equal checksums); every rsync copy equals its source and every process exited as it should."
} | tee "$out"
if [ "$failures" -gt 0 ]; then
    cp "$T"/galera-*.log "$(dirname "$out")/" 2>/dev/null || true
    echo "sst-bench: FAILED: $failures run(s) failed; galera-sst.sh's logs are beside $out" >&2
    exit 1
fi
