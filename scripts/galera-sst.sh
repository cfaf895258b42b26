#!/bin/bash
# galera-sst.sh: a real 2-node MariaDB Galera cluster on loopback, joined by SST through
# sst-tunnel (or the stock tools), checked and timed.
#
#   scripts/galera-sst.sh [--bin PATH] [--tunnel sst-tunnel|stock] [--data-mb N] [--keep]
#                         CASE [CASE...]
#
# CASE is METHOD:MODE, e.g. rsync:VERIFY_CA, rsync:REQUIRED, rsync:VERIFY_IDENTITY,
# rsync:CAPATH, rsync:IPV6, mariabackup:encrypt=4, mariabackup:STRIPED (encrypt=4 with
# SST_TUNNEL_STREAMS=4 at both ends: one stream over 4 connections), mariabackup:encrypt=3,
# mariabackup:encrypt=2, mariabackup:VERIFY_IDENTITY, mariabackup:CAPATH, the failure
# network faults rsync:RESETS and mariabackup:RESETS (the SST runs through a middlebox,
# NAT to a stock socat relay, whose connections are reset twice mid-stream: the stream
# resumes, node2 joins), the failure
# drills rsync:KILL_TUNNEL, rsync:WRONG_CA, mariabackup:WRONG_CA, and the checks' own drills
# rsync:CLEARTEXT and mariabackup:CLEARTEXT (no TLS at all: the wire check must find the
# rows in the capture, or it could not fail).
#
# node1 (127.0.0.1) is bootstrapped once and loaded with N MB of InnoDB rows in three schemas
# plus an Aria table; for each case node2 (127.0.0.2, or ::1 for IPV6) starts empty and joins
# by SST. mysqld runs as `mysql` (rsync SST fails as root) with the PATH that
# `sst-tunnel-switch on` gives it, so the unmodified wsrep_sst_* scripts run `stunnel` and
# `socat` from sst-tunnel. Each passing case prints one line:
#   PASS METHOD:MODE tunnel=T sst_seconds=S datadir_bytes=B      (joins; RESETS add resumed=N)
#   PASS METHOD:MODE tunnel=T donor_error="..."                  (failure drills)
#   PASS METHOD:CLEARTEXT wire=cleartext datadir_bytes=B            (the wire check's drill)
# Every encrypted join is checked on the wire: the full capture of the SST port must hold
# none of the rows' known text (and no rsync/mbstream magic), both nodes' error logs hold
# sst-tunnel's summary lines, and the IPV6 case's capture is IPv6 only.
# sst_seconds runs from node2's start to Synced, as "node2 start->Synced" in the contract.
# The run has a network namespace of its own (its loopback is the cluster's): no port of the
# machine's is taken or seen, and the middlebox's NAT touches nothing outside it.
# Needs root, mariadb-server, galera-4, mariadb-backup, rsync, tcpdump, openssl, iproute2,
# socat and nftables (the RESETS middlebox).
set -euo pipefail
if [ -z "${GALERA_SST_NETNS:-}" ] && [ "$(id -u)" = 0 ]; then
    exec env GALERA_SST_NETNS=1 unshare --net -- "$0" "$@"
fi

here=$(cd "$(dirname "$0")" && pwd)
bin=
tunnel=sst-tunnel
data_mb=200
keep=no
cases=()
while [ $# -gt 0 ]; do
    case $1 in
        --bin) bin=$2; shift 2 ;;
        --tunnel) tunnel=$2; shift 2 ;;
        --data-mb) data_mb=$2; shift 2 ;;
        --keep) keep=yes; shift ;;
        -*) echo "galera-sst: unknown option $1" >&2; exit 2 ;;
        *) cases+=("$1"); shift ;;
    esac
done
[ ${#cases[@]} -gt 0 ] || { sed -n '5,10p' "$0" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "galera-sst: needs root (to run mysqld as mysql and tcpdump)" >&2; exit 2; }
for tool in mariadbd mariadb-install-db mariadb mariadb-admin rsync tcpdump openssl ss; do
    command -v "$tool" >/dev/null || { echo "galera-sst: $tool is not installed" >&2; exit 2; }
done
[ -e /usr/lib/galera/libgalera_smm.so ] || { echo "galera-sst: galera-4 is not installed" >&2; exit 2; }
for c in "${cases[@]}"; do
    [[ $c != *:RESETS ]] && continue
    for tool in socat nft; do
        command -v "$tool" >/dev/null || { echo "galera-sst: $tool is not installed (the $c middlebox)" >&2; exit 2; }
    done
done
ip link set lo up

T=$(mktemp -d /tmp/galera-sst.XXXXXX)
# Known row text (in logs.marker) that must never cross the wire in clear.
MARKER="galera-sst cleartext marker row"
chmod 755 "$T"
pids=()
step="setting up"

log() { echo "galera-sst: $(date +%T) $*" >&2; }
# What the harness is doing now: logged, and named by fail and the TERM trap.
at() { step=$*; log "$step"; }

# alive PID: true while PID runs (a zombie child counts as gone, unlike `kill -0`).
alive() {
    local st
    st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ $st != Z* ]]
}

# gone PID SECONDS: waits a bounded time for PID to end, reaping it if it is our child.
gone() {
    local deadline=$((SECONDS + $2))
    while alive "$1"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.2
    done
    wait "$1" 2>/dev/null || true
}

# Every process this run started: ours directly, and what mysqld started under $T (SST
# scripts, rsync daemons, tunnels), found by the run's directory in their command lines.
ours() { printf '%s\n' "${pids[@]}"; pgrep -f -- "$T" 2>/dev/null || true; }

diagnose() {
    for n in node1 node2; do
        [ -s "$T/$n/error.log" ] || continue
        echo "--- last lines of $n's error log" >&2
        tail -n 40 "$T/$n/error.log" >&2
    done
    echo "--- processes of this run" >&2
    ps -o pid,ppid,stat,etime,args -p "$(ours | sort -u | paste -sd, -)" >&2 2>/dev/null || true
}

cleanup() {
    trap - EXIT TERM INT
    local pid
    for pid in $(ours | sort -u); do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do gone "$pid" 60 || kill -9 "$pid" 2>/dev/null || true; done
    # Stragglers that ignored SIGTERM (e.g. an SST script waiting on a dead peer).
    for pid in $(ours | sort -u); do kill -9 "$pid" 2>/dev/null || true; done
    if [ "$keep" = no ]; then rm -rf "$T"; else echo "galera-sst: kept $T" >&2; fi
}
trap cleanup EXIT
trap 'fail "interrupted"' TERM INT

fail() {
    echo "FAIL $* (while: $step)" >&2
    diagnose
    exit 1
}

# --- certificates: a cluster CA and one node certificate each (CN = node name, SANs) ---
mkdir -p "$T/ssl" "$T/ssl/capath"
(
    cd "$T/ssl"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj "/CN=SST Acceptance CA" -keyout ca-key.pem -out ca.pem \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=keyCertSign,cRLSign 2>/dev/null
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj "/CN=Wrong CA" -keyout wrong-ca-key.pem -out wrong-ca.pem \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=keyCertSign,cRLSign 2>/dev/null
    for node in node1:127.0.0.1 node2:127.0.0.2; do
        name=${node%%:*} ip=${node#*:}
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
            -keyout "$name-key.pem" -out "$name.csr" 2>/dev/null
        printf 'subjectAltName=DNS:%s,DNS:localhost,IP:%s,IP:::1\nextendedKeyUsage=serverAuth,clientAuth\n' \
            "$name" "$ip" >"$name.ext"
        openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 30 \
            -extfile "$name.ext" -out "$name-cert.pem" 2>/dev/null
        cat "$name-cert.pem" "$name-key.pem" >"$name-combined.pem"
    done
    # node2 as issued by another CA: its own files verify (the scripts pre-check that), but
    # the donor, trusting only the cluster CA, must refuse it and be refused.
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=node2" \
        -keyout node2-wrong-key.pem -out node2-wrong.csr 2>/dev/null
    openssl x509 -req -in node2-wrong.csr -CA wrong-ca.pem -CAkey wrong-ca-key.pem \
        -CAcreateserial -days 30 -extfile node2.ext -out node2-wrong-cert.pem 2>/dev/null
    cat ca.pem node1-cert.pem node2-cert.pem >leaves.pem
    cp ca.pem capath/
    openssl rehash capath >/dev/null
)
chown -R mysql:mysql "$T/ssl"

# --- how mysqld finds stunnel/socat: the DBA switch, applied in a scratch root ---
mysqld_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
if [ "$tunnel" = sst-tunnel ]; then
    [ -n "$bin" ] || bin=$(command -v sst-tunnel || true)
    [ -x "$bin" ] || { echo "galera-sst: give --bin PATH to the sst-tunnel binary" >&2; exit 2; }
    # A copy mysql can execute whatever the permissions of the build tree.
    install -m 755 "$bin" "$T/sst-tunnel"
    "$here/sst-tunnel-switch" on --root "$T/root" --bin "$T/sst-tunnel" --no-reload >/dev/null
    dropin_path=$(sed -n 's/^Environment="PATH=\(.*\)"$/\1/p' "$T/root/etc/systemd/system/mariadb.service.d/sst-tunnel.conf")
    mysqld_path=${dropin_path//\/usr\/lib\/sst-tunnel\/bin/$T/root/usr/lib/sst-tunnel/bin}
fi

# --- node configuration ---
write_cnf() { # NODE IP PORT SST_BLOCK METHOD [SST_ADDR]
    local node=$1 ip=$2 port=$3 sst=$4 method=$5
    local sst_addr=${6:-$2} gaddr=$2
    cat >"$T/$node/my.cnf" <<EOF
[mysqld]
user=mysql
datadir=$T/$node/data
socket=$T/$node/mysqld.sock
pid-file=$T/$node/mysqld.pid
log-error=$T/$node/error.log
port=$port
bind-address=$ip
skip-name-resolve
innodb_buffer_pool_size=256M
innodb_log_file_size=96M
innodb_flush_log_at_trx_commit=2
binlog_format=ROW
innodb_autoinc_lock_mode=2
wsrep_on=ON
wsrep_provider=/usr/lib/galera/libgalera_smm.so
wsrep_cluster_name=sst-tunnel-test
wsrep_cluster_address=gcomm://$cluster_address
wsrep_node_address=$gaddr:14567
wsrep_node_name=$node
wsrep_provider_options="gmcast.listen_addr=tcp://$gaddr:14567;ist.recv_addr=$gaddr:14568;gcache.size=64M"
wsrep_sst_method=$method
wsrep_sst_auth=sst:sst-secret
wsrep_sst_receive_address=$sst_addr:24444
[sst]
$sst
EOF
}

sst_block() { # NODE MODE METHOD
    local node=$1 mode=$2 method=$3
    local ca=$T/ssl/ca.pem cert=$node
    [ "$mode" = WRONG_CA ] && [ "$node" = node2 ] && ca=$T/ssl/wrong-ca.pem cert=node2-wrong
    local files="tkey=$T/ssl/$cert-key.pem
tcert=$T/ssl/$cert-cert.pem
tca=$ca"
    case $method:$mode in
        rsync:VERIFY_CA | rsync:IPV6 | rsync:KILL_TUNNEL | rsync:WRONG_CA | rsync:RESETS) echo "$files" ;;
        rsync:CLEARTEXT) echo "" ;;
        mariabackup:CLEARTEXT) echo "encrypt=0" ;;
        rsync:REQUIRED) printf '%s\nssl-mode=REQUIRED\n' "$files" ;;
        rsync:VERIFY_IDENTITY) printf 'tkey=%s\ntcert=%s\ntca=%s\nssl-mode=VERIFY_IDENTITY\n' \
            "$T/ssl/$node-key.pem" "$T/ssl/$node-cert.pem" "$T/ssl/leaves.pem" ;;
        rsync:CAPATH) printf 'tkey=%s\ntcert=%s\ntca=%s/\n' \
            "$T/ssl/$node-key.pem" "$T/ssl/$node-cert.pem" "$T/ssl/capath" ;;
        mariabackup:encrypt=4 | mariabackup:WRONG_CA | mariabackup:STRIPED | mariabackup:RESETS)
            printf '%s\nencrypt=4\n' "$files" ;;
        mariabackup:encrypt=3) printf '%s\nencrypt=3\n' "$files" ;;
        mariabackup:encrypt=2) printf 'tcert=%s\ntca=%s\nencrypt=2\n' "$T/ssl/$node-combined.pem" "$ca" ;;
        mariabackup:VERIFY_IDENTITY) printf '%s\nencrypt=4\nssl-mode=VERIFY_IDENTITY\n' "$files" ;;
        mariabackup:CAPATH) printf 'tkey=%s\ntcert=%s\ntca=%s/\nencrypt=4\n' \
            "$T/ssl/$node-key.pem" "$T/ssl/$node-cert.pem" "$T/ssl/capath" ;;
        *) echo "galera-sst: unknown case $method:$mode" >&2; exit 2 ;;
    esac
}

sql() { # NODE SQL   (bounded: a wedged server fails the run instead of hanging it)
    timeout 300 mariadb --defaults-file="$T/$1/my.cnf" -S "$T/$1/mysqld.sock" -u root -N -B \
        --connect-timeout=10 -e "$2"
}

start_node() { # NODE [ARGS]
    local node=$1
    shift
    mkdir -p "$T/$node/data"
    chown -R mysql:mysql "$T/$node"
    : >"$T/$node/error.log"
    chown mysql:mysql "$T/$node/error.log"
    env -i PATH="$mysqld_path" HOME=/tmp LANG=C.UTF-8 RUST_LOG="${RUST_LOG:-info}" \
        SST_TUNNEL_STREAMS="$node_streams" mariadbd --defaults-file="$T/$node/my.cnf" "$@" &
    node_pid=$!
    pids+=("$node_pid")
}

wait_synced() { # NODE PID SECONDS
    local node=$1 pid=$2 limit=$3 start=$SECONDS state=
    while [ $((SECONDS - start)) -lt "$limit" ]; do
        alive "$pid" || return 1
        state=$(timeout 20 mariadb --defaults-file="$T/$node/my.cnf" -S "$T/$node/mysqld.sock" -u root -N -B \
            --connect-timeout=5 -e "SHOW STATUS LIKE 'wsrep_local_state_comment'" 2>/dev/null | cut -f2 || true)
        [ "$state" = Synced ] && return 0
        sleep 0.2
    done
    return 1
}

stop_node() { # NODE PID
    local node=$1 pid=$2
    timeout 60 mariadb-admin --defaults-file="$T/$node/my.cnf" -S "$T/$node/mysqld.sock" -u root \
        --connect-timeout=10 shutdown 2>/dev/null || kill "$pid" 2>/dev/null || true
    gone "$pid" 120 || fail "$node (pid $pid) did not shut down within 120 s"
}

# --- node1: bootstrap and load ---
mkdir -p "$T/node1" "$T/node2"
cluster_address=127.0.0.1:14567,127.0.0.2:14567
write_cnf node1 127.0.0.1 13306 "$(sst_block node1 VERIFY_CA rsync)" rsync
mkdir -p "$T/node1/data"
chown -R mysql:mysql "$T/node1"
at "node1: mariadb-install-db"
timeout 300 mariadb-install-db --defaults-file="$T/node1/my.cnf" --user=mysql --auth-root-authentication-method=socket >"$T/node1/install.log" 2>&1 ||
    { cat "$T/node1/install.log" >&2; fail "mariadb-install-db"; }
at "node1: bootstrapping the cluster"
# The donor offers to stripe mariabackup streams over 4 connections; each joiner says
# whether it takes them (only mariabackup:STRIPED does, so the other cases stay one stream on
# any machine).
node_streams=4
start_node node1 --wsrep-new-cluster
node1_pid=$node_pid
wait_synced node1 "$node1_pid" 120 || fail "node1 did not start"
at "node1: loading ${data_mb} MB"
sql node1 "CREATE USER 'sst'@'localhost' IDENTIFIED BY 'sst-secret';
GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR, REPLICA MONITOR ON *.* TO 'sst'@'localhost';"
rows=$(( data_mb * 1024 / 3 ))   # about 1 KiB per row, three schemas
for db in shop crm logs; do
    sql node1 "CREATE DATABASE $db;
USE $db;
CREATE TABLE $db.t (id INT AUTO_INCREMENT PRIMARY KEY, k INT, pad VARBINARY(1000)) ENGINE=InnoDB;
CREATE TABLE $db.seq (n INT PRIMARY KEY) ENGINE=InnoDB;
INSERT INTO $db.seq SELECT seq FROM seq_1_to_1024;
INSERT INTO $db.t (k, pad) SELECT a.n * 1024 + b.n, RANDOM_BYTES(1000) FROM $db.seq a JOIN $db.seq b WHERE a.n * 1024 + b.n <= $rows;"
done
sql node1 "USE logs;
CREATE TABLE logs.aria (id INT PRIMARY KEY, note VARCHAR(100)) ENGINE=Aria;
INSERT INTO logs.aria SELECT seq, CONCAT('aria row ', seq) FROM seq_1_to_5000;
CREATE TABLE logs.marker (id INT PRIMARY KEY, note VARCHAR(1000)) ENGINE=InnoDB;
INSERT INTO logs.marker SELECT seq, REPEAT('$MARKER ', 30) FROM seq_1_to_2000;"
tables="shop.t shop.seq crm.t crm.seq logs.t logs.seq logs.aria logs.marker"

# Row text the wire check looks for: it is in the datadir's InnoDB and Aria files, so a
# cleartext SST carries it, whatever the method.
wire_rows() { grep -a -c -e "$MARKER" -e 'aria row 4999' "$1" || true; }

checksums() { # NODE
    sql "$1" "CHECKSUM TABLE ${tables// /, }; SELECT COUNT(*) FROM shop.t; SELECT COUNT(*) FROM logs.aria;"
}
expected=$(checksums node1)

# mid_sst CASE PART LIMIT WHAT READY...: waits (up to LIMIT s) for a moment mid-SST: more than 1/PART
# of the data landed in node2's datadir (a measure of the SST itself, unlike packet counts,
# which depend on the loopback's segment sizes), the datadir grown since the last look, and
# READY true (WHAT says what it checks: a stream is moving). Leaves the size in `landed`;
# fails the case if node2 ends first, or past the deadline.
mid_sst() {
    local name=$1 part=$2 limit=$3 what=$4 before=0 deadline=$((SECONDS + $3))
    shift 4
    landed=0
    while :; do
        alive "$node2_pid" || fail "$name: node2 ended before the fault, with $landed bytes landed"
        before=$landed
        landed=$(du -sb --exclude=galera.cache "$T/node2/data" 2>/dev/null | cut -f1 || echo 0)
        if [ "$landed" -gt $((data_mb * 1024 * 1024 / part)) ] && [ "$landed" -gt "$before" ] &&
            "$@"; then
            return 0
        fi
        [ "$SECONDS" -lt "$deadline" ] ||
            fail "$name: no moment in $limit s with over 1/$part of the SST landed and $what ($landed bytes landed)"
        sleep 0.1
    done
}

# KILL_TUNNEL's moment: the joiner's tunnel is up (its pid in `tunnel_pid`) and a
# connection to the SST port carries a stream: over 1 MB from the donor, far past its
# handshake (rsync's next connection, met in its handshake, is dialled again and then
# refused: no stream was cut short, and the drill is about one that is).
tunnel_moving() {
    tunnel_pid=$(cat "$T/node2/data/stunnel.pid" 2>/dev/null || true)
    [ -n "$tunnel_pid" ] && carries_a_stream 24444
}

# carries_a_stream PORT: an established connection accepted on PORT has received over
# 1 MB, far past its handshake and binding, and is still receiving: over 1 MB more within
# 50 ms. (One rsync stream can cross loopback in under 0.2 s; a connection that had merely
# received its stream, waiting to close, let a fault land between two of rsync's.) Sets
# `moving_peer` to that connection's peer address.
carries_a_stream() {
    local before after peer
    read -r before peer <<<"$(most_received "$1")"
    [ "$before" -gt 1000000 ] || return 1
    sleep 0.05
    read -r after _ <<<"$(most_received "$1")"
    [ $((after - before)) -gt 1000000 ] || return 1
    moving_peer=$peer
}

# most_received PORT: the most bytes any established connection accepted on PORT has
# received, and that connection's peer address ("0" when there is none).
most_received() {
    ss -Htni state established "( sport = :$1 )" | awk '
        /^[^ \t]/ { peer = $4; next }
        match($0, /bytes_received:[0-9]+/) {
            b = substr($0, RSTART + 15, RLENGTH - 15) + 0
            if (b > most) { most = b; best = peer }
        }
        END { print most + 0, best }'
}

# RESETS's moment: both ends have resumed from every reset so far (a reset of a connection
# still being bound is another fault: the joiner never counts a connection it had not taken
# yet), the middlebox has relays carrying connections (their pids in `relays`; none while
# rsync is between two), and one of them carries a stream: over 1 MB from the donor, far
# past its handshake and binding. (A reset that meets rsync's next connection in its
# handshake is dialled again, not resumed: no resumption to count.)
middlebox_moving() {
    local r1 r2
    alive "$middlebox" || fail "$name: the middlebox ended: $(cat "$T/middlebox.log")"
    r1=$(tail -n +"$log1_from" "$T/node1/error.log" | grep -c ": resumed after " || true)
    r2=$(grep -c ": resumed after " "$T/node2/error.log" || true)
    [ "$r1" -ge "$resets" ] && [ "$r2" -ge "$resets" ] || return 1
    carries_a_stream 24445 || return 1
    relays=$(pgrep -P "$middlebox" | paste -sd' ' || true)
    [ -n "$relays" ]
}

run_case() { # METHOD:MODE
    local method=${1%%:*} mode=${1#*:} sst_addr=127.0.0.2 resumptions=
    # IPv6 SST: the SST address is [::1]; Galera itself stays on 127.0.0.x.
    [ "$mode" = IPV6 ] && sst_addr="[::1]"
    # node1's [sst] section is re-read by its SST script on every donation.
    write_cnf node1 127.0.0.1 13306 "$(sst_block node1 "$mode" "$method")" "$method"
    rm -rf "$T/node2"
    mkdir -p "$T/node2"
    write_cnf node2 127.0.0.2 13307 "$(sst_block node2 "$mode" "$method")" "$method" "$sst_addr"
    at "$1: starting"
    local capture=$T/sst-$method.pcap filter="tcp port 24444" middlebox=
    # Whole packets, so the search for row text covers every byte that crossed; IPV6 captures
    # IPv6 only, so its size proves which family carried the SST.
    [ "$mode" = IPV6 ] && filter="ip6 and tcp port 24444"
    if [ "$mode" = RESETS ]; then
        # The SST through a middlebox, as across a NAT: node1 dials node2's SST address,
        # 127.0.0.2:24444, as the joiner announced it; NAT sends that to a stock socat relay
        # at 127.0.0.3:24445 (one process per connection), which dials node2 from 127.0.0.4
        # (left alone by the NAT). Killing a relay process resets both of its connections
        # (SO_LINGER 0: an RST each way), as a middlebox that drops its state does.
        nft -f - <<'NFT' || fail "$1: nft could not set up the middlebox's NAT"
table ip galera_sst {
    chain output {
        type nat hook output priority -100;
        ip saddr != 127.0.0.4 ip daddr 127.0.0.2 tcp dport 24444 dnat to 127.0.0.3:24445
    }
}
NFT
        socat TCP-LISTEN:24445,bind=127.0.0.3,reuseaddr,fork,so-linger=0 \
            TCP:127.0.0.2:24444,bind=127.0.0.4,so-linger=0 2>"$T/middlebox.log" &
        middlebox=$!
        pids+=("$middlebox")
        # Both legs on the wire check: donor -> middlebox and middlebox -> joiner.
        filter="tcp port 24444 or tcp port 24445"
    fi
    tcpdump -i lo -s 0 -U -w "$capture" "$filter" 2>"$T/tcpdump.log" &
    local dump=$!
    pids+=("$dump")
    # Capture is on once tcpdump says so. A slow start (a loaded CI machine) is waited for
    # up to 60 s; a tcpdump that exits is a failure at once, with its own words.
    local dump_deadline=$((SECONDS + 60))
    until grep -q listening "$T/tcpdump.log"; do
        alive "$dump" || fail "$1: tcpdump exited before capturing: $(cat "$T/tcpdump.log")"
        [ "$SECONDS" -lt "$dump_deadline" ] ||
            fail "$1: tcpdump runs but did not say it was listening within 60 s: $(cat "$T/tcpdump.log")"
        sleep 0.1
    done
    local log1_from started=$EPOCHREALTIME
    log1_from=$(( $(wc -l <"$T/node1/error.log") + 1 ))
    node_streams=1
    [ "$mode" = STRIPED ] && node_streams=4
    start_node node2
    local node2_pid=$node_pid
    case $mode in
        KILL_TUNNEL | WRONG_CA)
            if [ "$mode" = KILL_TUNNEL ]; then
                # The joiner's tunnel dies mid-SST: once a fifth of the data has landed and
                # while a stream is moving, kill it: the donor must then see a stream cut
                # short, not a refused connection between two of rsync's.
                at "$1: waiting for the SST to be a fifth done, mid-stream"
                local tunnel_pid= landed moving_peer=
                mid_sst "$1" 5 180 "the joiner's tunnel up with a connection established" \
                    tunnel_moving
                # Only a process of this run: the pid file's process must run this run's config.
                tr '\0' ' ' <"/proc/$tunnel_pid/cmdline" 2>/dev/null | grep -q -F -- "$T/" ||
                    fail "$1: stunnel.pid names $tunnel_pid, which is not this run's tunnel"
                # At once: the stream was moving a moment ago, and may end in a tenth of a second.
                kill -9 "$tunnel_pid"
                log "$1: killed the joiner's tunnel (pid $tunnel_pid) with $landed bytes landed"
            fi
            at "$1: waiting for node2 to abort"
            gone "$node2_pid" 300 || fail "$1: node2 neither joined nor aborted within 300 s"
            grep -q "Synchronized with group, ready for connections" "$T/node2/error.log" &&
                fail "$1: node2 joined despite the fault"
            # mysqld words the abort one of two ways, depending on which side noticed first.
            grep -q -E "Will never receive state. Need to abort.|Application state transfer failed" "$T/node2/error.log" ||
                fail "$1: node2 did not abort cleanly"
            wait_synced node1 "$node1_pid" 60 || fail "$1: node1 did not return to Synced"
            kill "$dump" 2>/dev/null || true
            gone "$dump" 30 || true
            # Both scripts' cleanups run after mysqld has its answer: give them a bounded while.
            local left=1
            for _ in $(seq 1 300); do
                pgrep -f "(^|/)(stunnel|socat) .*$T" >/dev/null || { left=0; break; }
                sleep 0.1
            done
            [ "$left" = 0 ] || fail "$1: a tunnel process outlived the SST: $(pgrep -af "(^|/)(stunnel|socat) .*$T")"
            # The orphaned joiner script notices its parent is gone within a second or two
            # and removes the pid file (even of a SIGKILLed tunnel) in its cleanup.
            for _ in $(seq 1 300); do
                [ -e "$T/node2/data/stunnel.pid" ] || break
                sleep 0.1
            done
            [ ! -e "$T/node2/data/stunnel.pid" ] || fail "$1: stunnel.pid left behind"
            # The donor saw the failure through its tunnel, and says why in one line.
            local why errors
            errors=$(tail -n +"$log1_from" "$T/node1/error.log" | grep -E '^(sst-tunnel|.*socat|.*stunnel).*(error|E )' || true)
            why=$(grep -m1 'transfer failed.*(stream truncated)' <<<"$errors" || true)
            [ -n "$why" ] || why=$(grep -m1 'transfer failed' <<<"$errors" || true)
            [ -n "$why" ] || why=$(head -n1 <<<"$errors")
            [ -n "$why" ] || fail "$1: no tunnel error line in the donor's error log"
            if [ "$mode" = WRONG_CA ] && [[ $why != *"certificate verification failed"* ]]; then
                fail "$1: expected a certificate error from the donor's tunnel, got: $why"
            fi
            # Killed mid-stream: the donor reports the stream it was sending as truncated
            # (README's promise), whatever rsync's other connections then met.
            if [ "$mode" = KILL_TUNNEL ] && [ "$tunnel" = sst-tunnel ] &&
                [[ $why != *"transfer failed"*"(stream truncated)"* ]]; then
                # The stream moving a moment before the kill may still have ended first (a
                # whole rsync run can take 0.3 s here): node2's tunnel then logged it closed,
                # cleanly, and the kill met only rsync's next connection. The drill missed;
                # run it again (twice at most). A stream the kill did cut is never logged so.
                if [ -n "$moving_peer" ] && [ "${kill_attempt:-1}" -lt 3 ] &&
                    grep -qF "closed $moving_peer: " "$T/node2/error.log"; then
                    log "$1: the stream the kill aimed at ($moving_peer) ended cleanly just before it; again"
                    kill_attempt=$((${kill_attempt:-1} + 1)) run_case "$1"
                    return
                fi
                fail "$1: expected the donor's tunnel to report a truncated transfer, got: $(head -n 5 <<<"$errors")"
            fi
            echo "PASS $1 tunnel=$tunnel donor_error=\"$why\""
            return
            ;;
    esac
    if [ "$mode" = RESETS ]; then
        # The middlebox resets the SST's connections twice mid-stream, once a fifth and once
        # a third of the data has landed in node2's datadir, each time while a stream is
        # moving through it. Both ends are sst-tunnel, so the stream must resume (the donor
        # dials again, through the NAT and the middlebox) and node2 still join.
        # Both resets within 300 s.
        local landed part relays pid killed moving_peer= resets=0 deadline=$((SECONDS + 300))
        for part in 5 3; do
            at "$1: waiting for 1/$part of the SST, mid-stream"
            while :; do
                mid_sst "$1" "$part" $((deadline - SECONDS)) "both ends resumed and a connection through the middlebox" \
                    middlebox_moving
                ss -Htn state established "( sport = :24445 )" >"$T/reset.log" 2>&1 || true
                # A relay whose connection ended since it was listed is gone (rsync closes
                # one connection and opens the next): kill what is left, and if nothing
                # was, wait for the next moment rather than count a reset that was not.
                killed=0
                for pid in $relays; do
                    kill -KILL "$pid" 2>/dev/null && killed=$((killed + 1))
                done
                [ "$killed" -eq 0 ] || break
                log "$1: the middlebox's relays ($relays) ended before the reset; waiting again"
            done
            resets=$((resets + 1))
            log "$1: the middlebox reset its connections (relays $relays) with $landed bytes landed: $(tr -s ' \n' ' ' <"$T/reset.log")"
        done
    fi
    at "$1: waiting for node2 to join by SST"
    wait_synced node2 "$node2_pid" 600 || fail "$1: node2 did not reach Synced"
    local seconds
    seconds=$(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
    kill "$dump" 2>/dev/null || true
    gone "$dump" 30 || true
    at "$1: comparing data"
    [ "$(checksums node2)" = "$expected" ] || fail "$1: data differs after SST"
    # Replication both ways after the join.
    sql node2 "INSERT INTO shop.t (k, pad) VALUES (-2, 'from node2')"
    sql node1 "INSERT INTO shop.t (k, pad) VALUES (-1, 'from node1')"
    for n in node1 node2; do
        local got=0
        for _ in $(seq 1 100); do
            got=$(sql $n "SELECT COUNT(*) FROM shop.t WHERE k < 0")
            [ "$got" = 2 ] && break
            sleep 0.1
        done
        [ "$got" = 2 ] || fail "$1: replication after SST: $n sees $got of 2 rows"
    done
    sql node1 "DELETE FROM shop.t WHERE k < 0"
    # The wire was TLS: none of the rows' text, no rsync greeting and no mbstream chunk magic
    # in the whole capture. (IPV6: the capture holds IPv6 packets only, so its size is the
    # proof that IPv6 carried the SST.)
    local bytes rows
    bytes=$(stat -c %s "$capture")
    [ "$bytes" -gt 100000 ] || fail "$1: capture too small ($bytes bytes): nothing crossed port 24444 ($filter)?"
    rows=$(wire_rows "$capture")
    if [ "$mode" = CLEARTEXT ]; then
        # The check's own drill: without TLS, it must see the rows.
        [ "$rows" -gt 0 ] || fail "$1: a cleartext SST, yet the wire check found no row text in $bytes bytes"
        grep -a -q -e '@RSYNCD' -e 'XBSTCK01' "$capture" ||
            fail "$1: a cleartext SST, yet no rsync/mbstream magic on the wire"
    else
        [ "$rows" = 0 ] || fail "$1: row text in clear on the wire ($rows packets)"
        if grep -a -q -e '@RSYNCD' -e 'XBSTCK01' "$capture"; then
            fail "$1: plaintext rsync/mbstream markers on the wire"
        fi
    fi
    rm -f "$capture"
    if [ "$tunnel" = sst-tunnel ] && [ "$mode" != CLEARTEXT ]; then
        # sst-tunnel, not stunnel or socat, carried it at both ends: their summary lines in
        # both error logs (node1's since this case began).
        grep -q "path buffered" "$T/node2/error.log" ||
            fail "$1: no sst-tunnel summary line in node2's (the joiner's) error log"
        # The donor's script may still be finishing (its tunnel's stderr reaches the log
        # when it does) after node2 is Synced: the line is waited for, with a deadline.
        local donor_deadline=$((SECONDS + 60))
        until tail -n +"$log1_from" "$T/node1/error.log" | grep -q "path buffered"; do
            [ "$SECONDS" -lt "$donor_deadline" ] ||
                fail "$1: no sst-tunnel summary line in node1's (the donor's) error log within 60 s"
            sleep 0.2
        done
        # Reset twice: the stream resumed (at least) twice, both ends saying so.
        if [ "$mode" = RESETS ]; then
            local resumed1 resumed2
            resumed1=$(tail -n +"$log1_from" "$T/node1/error.log" | grep -c ": resumed after " || true)
            resumed2=$(grep -c ": resumed after " "$T/node2/error.log" || true)
            [ "$resumed1" -ge 2 ] && [ "$resumed2" -ge 2 ] ||
                fail "$1: expected the stream to resume after each of the 2 resets; the donor logged $resumed1, the joiner $resumed2 resumption(s)"
            resumptions=" resumed=$resumed2"
        fi
        # Striped where asked (both ends sst-tunnel), one stream everywhere else.
        if [ "$mode" = STRIPED ]; then
            grep -q "path buffered, 4 streams" "$T/node2/error.log" ||
                fail "$1: the mariabackup stream was not striped over 4 connections"
        elif grep -q " streams$" "$T/node2/error.log"; then
            fail "$1: striped although the joiner did not ask for it"
        fi
    fi
    local moved
    moved=$(du -sb --exclude=galera.cache "$T/node2/data" | cut -f1)
    stop_node node2 "$node2_pid"
    if [ -n "$middlebox" ]; then
        kill "$middlebox" 2>/dev/null || true
        gone "$middlebox" 30 || fail "$1: the middlebox did not stop"
        nft delete table ip galera_sst
    fi
    [ ! -e "$T/node2/data/stunnel.pid" ] || fail "$1: stunnel.pid left behind"
    if [ "$mode" = CLEARTEXT ]; then
        echo "PASS $1 wire=cleartext datadir_bytes=$moved"
        return
    fi
    echo "PASS $1 tunnel=$tunnel sst_seconds=$seconds datadir_bytes=$moved$resumptions"
}

for c in "${cases[@]}"; do
    run_case "$c"
done
stop_node node1 "$node1_pid"
