#!/bin/sh
# tests/ktls/guest.sh KERNEL_VERSION MIB_PER_CASE
#
# The kernel-TLS tests, run by scripts/ktls-vm-test.sh inside a QEMU guest (busybox sh as
# root, loopback only). Stage 1 runs before tls.ko exists (module autoloading is switched
# off): every connection must take the buffered path. Stage 2 loads tls.ko and the AEAD
# modules: every connection that can be offloaded must be, and must move every byte.
# Prints PASS/FAIL lines (and indented log excerpts on failure); exits 1 on any failure.

KVER=$1
MB=${2:-2}
P=/test/pki
T=/tmp
failures=0

pass() { echo "PASS $*"; }
fail() {
    echo "FAIL $*"
    failures=$((failures + 1))
}
show() { for f in "$@"; do [ -s "$f" ] && tail -n 12 "$f" | sed "s|^|  $(basename "$f"): |"; done; }
# judge PASS_TEXT FAIL_TEXT LOG...: the verdict on a case whose checks collected their
# complaints in $why: PASS_TEXT when there are none, else FAIL_TEXT with them and the logs.
judge() {
    ok=$1 ko=$2
    shift 2
    if [ -z "$why" ]; then
        pass "$ok"
    else
        fail "$ko:$why"
        show "$@"
    fi
}

# Two sst-tunnels resume a broken stream by default, which copies through a replay buffer;
# these cases are about kTLS and splice, so they turn resuming off (one case below keeps it).
NO_RESUME="--resume-window 0"
SRV_ECDSA="--cert $P/node2-cert.pem --key $P/node2-key.pem --ca $P/ca.pem $NO_RESUME"
SRV_RSA="--cert $P/rsa-cert.pem --key $P/rsa-key.pem --ca $P/ca.pem $NO_RESUME"
CLI="--cert $P/node1-cert.pem --key $P/node1-key.pem --ca $P/ca.pem $NO_RESUME"

# Kernels from 6.14 take new TLS 1.3 keys on a socket that has keys (KeyUpdate): there the
# key-usage limit and a peer's KeyUpdate are rekeys, not stops.
kmaj=${KVER%%.*}
krest=${KVER#*.}
kmin=${krest%%.*}
REKEY=0
if [ "$kmaj" -gt 6 ] || { [ "$kmaj" -eq 6 ] && [ "$kmin" -ge 14 ]; }; then
    REKEY=1
fi
SENT_UPDATE="rekeyed (TLS 1.3 KeyUpdate sent through kernel TLS)"
FOLLOWED_UPDATE="peer rekeyed (TLS 1.3 KeyUpdate followed through kernel TLS)"

head -c $((MB * 1048576)) /dev/urandom >$T/up
head -c $((MB * 1048576 + 12345)) /dev/urandom >$T/down

# until PID CONDITION...: polls CONDITION (a command) every 20 ms for up to 30 s; fails
# early when PID (0: none) has died. The conditions are the readiness signals themselves (a
# log line, a listening port, bytes arrived), never a fixed delay.
until_true() {
    pid=$1
    shift
    i=0
    while [ $i -lt 1500 ]; do
        "$@" && return 0
        [ "$pid" = 0 ] || kill -0 "$pid" 2>/dev/null || return 1
        usleep 20000
        i=$((i + 1))
    done
    return 1
}

listen_port() { sed -n 's/.*listening on [^ ]*:\([0-9][0-9]*\).*/\1/p' "$1" | head -n 1; }
has_port() { [ -n "$(listen_port "$1")" ]; }
port_open() { netstat -ltn 2>/dev/null | grep -q ":$1 "; }
bigger() { [ "$(wc -c <"$1")" -gt "$2" ]; }

# Waits for a listener's "listening on HOST:PORT" line and prints the port.
wait_listen() { until_true "$2" has_port "$1" && listen_port "$1"; }
# Waits for a TCP port to be listened on (stunnel, socat print nothing we can wait for).
wait_port() { until_true "$2" port_open "$1"; }
# Waits until FILE has a line matching PATTERN.
wait_grep() { until_true 0 grep -q "$2" "$1"; }
# Waits until FILE holds more than BYTES.
wait_size() { until_true 0 bigger "$1" "$2"; }

# expect NAME "PATTERN;PATTERN..." COMMAND...: COMMAND must exit 0 and print (stdout or
# stderr) a line matching each pattern.
expect() {
    name=$1 patterns=$2
    shift 2
    "$@" >$T/x.out 2>&1
    rc=$?
    missing=""
    saved_ifs=$IFS
    IFS=';'
    for pattern in $patterns; do
        grep -q "$pattern" $T/x.out || missing="$missing [$pattern]"
    done
    IFS=$saved_ifs
    if [ $rc = 0 ] && [ -z "$missing" ]; then
        pass "$name"
    else
        fail "$name: exit $rc, missing$missing"
        show $T/x.out
    fi
}

# pair NAME SERVER_PATH CLIENT_PATH SUITE "SERVER ARGS" "CLIENT ARGS"
# listen --stdio and connect, data both ways at once; checks exit codes, bytes, the suite
# and which path each end reports in its summary line. Both ends' stdin and stdout are FIFOs
# (as under mariabackup | ... | mbstream), which splice can use; with FILES=1 they are
# regular files, which it does not, so the kernel path copies through user space.
pair() {
    name=$1 spath=$2 cpath=$3 suite=$4 sargs=$5 cargs=$6
    rm -f $T/s.* $T/c.*
    if [ "${FILES:-0}" = 1 ]; then
        sin=$T/down sout=$T/s.out cin=$T/up cout=$T/c.out
    else
        mkfifo $T/s.in $T/s.pipe $T/c.in $T/c.pipe
        sin=$T/s.in sout=$T/s.pipe cin=$T/c.in cout=$T/c.pipe
        cat $T/down >$T/s.in &
        cat $T/s.pipe >$T/s.out &
        cat $T/up >$T/c.in &
        cat $T/c.pipe >$T/c.out &
    fi
    # shellcheck disable=SC2086
    sst-tunnel listen 127.0.0.1:0 --stdio $sargs <$sin >$sout 2>$T/s.log &
    spid=$!
    if ! port=$(wait_listen $T/s.log $spid); then
        fail "$name: the listener did not start"
        show $T/s.log
        return
    fi
    # shellcheck disable=SC2086
    sst-tunnel connect 127.0.0.1:"$port" $cargs <$cin >$cout 2>$T/c.log
    crc=$?
    wait $spid
    src=$?
    wait # the cats
    why=""
    [ $crc = 0 ] || why="$why client exit $crc;"
    [ $src = 0 ] || why="$why server exit $src;"
    cmp -s $T/up $T/s.out || why="$why client->server bytes differ;"
    cmp -s $T/down $T/c.out || why="$why server->client bytes differ;"
    grep -q "$suite, path $spath\$" $T/s.log || why="$why server not '$suite, path $spath';"
    grep -q "$suite, path $cpath\$" $T/c.log || why="$why client not '$suite, path $cpath';"
    judge "$name ($suite; server $spath, client $cpath)" "$name" $T/s.log $T/c.log
}

# bench NAME pipes|files "EXTRA ARGS": one client->server stream of $MB MiB; prints the
# server's own rate (relay time, handshake excluded) and path. Pipes: both ends' stdio are
# FIFOs, fed by cat and drained by cmp against the input (splice can run); files: stdin a
# file, stdout a tmpfs file compared afterwards. A run counts only when both ends exit 0,
# the server's summary says every byte arrived and the bytes are the input's.
bench() {
    name=$1 shape=$2 extra=$3
    rm -f $T/b.*
    if [ "$shape" = pipes ]; then
        mkfifo $T/b.in $T/b.out
        cat $T/up >$T/b.in &
        (cmp $T/up $T/b.out >$T/b.cmp 2>&1; echo "cmp exit $?" >>$T/b.cmp) &
        cin=$T/b.in sout=$T/b.out
    else
        cin=$T/up sout=$T/b.file
    fi
    srv=$SRV_ECDSA cli=$CLI
    # A resumable row: the ends' own `--resume-window 0` gives way to the row's.
    case $extra in *--resume-window*) srv=${SRV_ECDSA% $NO_RESUME} cli=${CLI% $NO_RESUME} ;; esac
    # shellcheck disable=SC2086
    sst-tunnel listen 127.0.0.1:0 --stdio $srv $extra </dev/null >$sout 2>$T/b.slog &
    spid=$!
    if ! port=$(wait_listen $T/b.slog $spid); then
        fail "bench $name $shape: no listener"
        return
    fi
    # shellcheck disable=SC2086
    sst-tunnel connect 127.0.0.1:"$port" $cli $extra <$cin >/dev/null 2>$T/b.clog
    crc=$?
    wait $spid
    src=$?
    wait
    if [ "$shape" = files ]; then
        cmp $T/up $T/b.file >$T/b.cmp 2>&1
        echo "cmp exit $?" >>$T/b.cmp
    fi
    line=$(grep "closed .*received $((MB * 1048576)) bytes" $T/b.slog)
    why=""
    [ $crc = 0 ] || why="$why client exit $crc;"
    [ $src = 0 ] || why="$why server exit $src;"
    [ -n "$line" ] || why="$why the server did not receive $((MB * 1048576)) bytes;"
    grep -q "^cmp exit 0\$" $T/b.cmp || why="$why bytes differ from the input ($(head -n 1 $T/b.cmp));"
    if [ -z "$why" ]; then
        rate=$(echo "$line" | sed -n 's/.*(\([0-9.]*\) MB\/s).*/\1/p')
        suite=$(echo "$line" | sed -n 's/.* \(TLS[A-Z0-9_]*\), path .*/\1/p')
        echo "BENCH $name $shape ${line##*path } $suite $rate"
    else
        fail "bench $name $shape:$why"
        show $T/b.slog $T/b.clog
    fi
}

if [ "${3:-test}" = bench ]; then
    insmod /lib/modules/"$KVER"/kernel/net/tls/tls.ko
    for m in aesni-intel ghash-clmulni-intel gcm chacha20poly1305 chacha-x86_64 poly1305-x86_64; do
        modprobe $m 2>/dev/null
    done
    for round in 1 2 3; do
        for shape in pipes files; do
            bench buffered $shape --no-ktls
            bench kernel-aes $shape "--ciphers TLS13_AES_256_GCM_SHA384"
            bench kernel $shape ""
            # Resumable (both ends sst-tunnel): frames copied through the replay buffer.
            bench kernel-resume $shape "--resume-window 120s"
        done
    done
    echo "KTLSVM $failures failure(s)"
    [ $failures = 0 ]
    exit
fi

# conformance, links: only the conformance suite's kernel cases, or only the hostile links
# (KTLS_VM_ONLY=..., for working on one part: a boot and that part, not the whole run).
if [ "${3:-test}" = conformance ] || [ "${3:-test}" = links ]; then
    insmod /lib/modules/"$KVER"/kernel/net/tls/tls.ko
    for m in aesni-intel ghash-clmulni-intel gcm chacha20poly1305 chacha-x86_64 poly1305-x86_64; do
        modprobe $m 2>/dev/null
    done
fi

if [ "${3:-test}" = test ]; then
# ------------------------------------------------------------------ stage 1: no tls.ko
echo /nonexistent >/proc/sys/kernel/modprobe
pair "no tls.ko: falls back" buffered buffered TLS13_AES_256_GCM_SHA384 "$SRV_ECDSA" "$CLI"
expect "no tls.ko: selftest reports the buffered path and why" \
    "copy path: *buffered;kernel TLS unavailable, using the buffered path: TCP_ULP" \
    sst-tunnel selftest --size 1MiB --log-level debug
expect "no tls.ko: check reports the buffered path and how to enable kTLS" \
    "ok: kernel TLS unavailable here (TCP_ULP;modprobe tls" \
    sst-tunnel check --cert $P/node2-cert.pem --key $P/node2-key.pem --ca $P/ca.pem

# ------------------------------------------------------------------ stage 2: kTLS
echo /sbin/modprobe >/proc/sys/kernel/modprobe
insmod /lib/modules/"$KVER"/kernel/net/tls/tls.ko || fail "insmod tls.ko"
# Preloaded: with nothing to load them by CPU features, the kernel would pick generic C AES.
for m in aesni-intel ghash-clmulni-intel gcm chacha20poly1305 chacha-x86_64 poly1305-x86_64; do
    modprobe $m 2>/dev/null || echo "  (modprobe $m failed)"
done
echo "KTLSVM tcp_available_ulp: $(cat /proc/sys/net/ipv4/tcp_available_ulp)"

expect "selftest runs on kernel TLS, with ChaCha20 preferred (no key-usage limit)" \
    "copy path: *ktls;cipher suite: *TLS13_CHACHA20_POLY1305_SHA256" \
    sst-tunnel selftest --size 4MiB
expect "check reports kernel TLS for all three ciphers" \
    "ok: kernel TLS available for AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305" \
    sst-tunnel check --cert $P/node2-cert.pem --key $P/node2-key.pem --ca $P/ca.pem

for s in TLS13_AES_128_GCM_SHA256 TLS13_AES_256_GCM_SHA384 TLS13_CHACHA20_POLY1305_SHA256; do
    pair "TLS 1.3 both ends kTLS" ktls+splice ktls+splice $s "$SRV_ECDSA" "$CLI --ciphers $s"
done
for s in ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 \
    ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256; do
    pair "TLS 1.2 both ends kTLS" ktls+splice ktls+splice TLS_$s "$SRV_ECDSA" "$CLI --tls-max 1.2 --ciphers TLS_$s"
done
for s in ECDHE_RSA_WITH_AES_128_GCM_SHA256 ECDHE_RSA_WITH_AES_256_GCM_SHA384; do
    pair "TLS 1.2 RSA both ends kTLS" ktls+splice ktls+splice TLS_$s "$SRV_RSA" "$CLI --tls-max 1.2 --ciphers TLS_$s"
done
# Where the kernel carries it, ChaCha20 comes first on our side (the client's offer, the
# server's choice): AES-GCM would have to stop a single stream at 256 GiB on a kernel that
# cannot rekey.
pair "default suite under kTLS" ktls+splice ktls+splice TLS13_CHACHA20_POLY1305_SHA256 "$SRV_ECDSA" "$CLI"
# The default between two sst-tunnels: resumable, its frames copied over kernel TLS.
pair "resumable stream over kTLS" ktls ktls TLS13_CHACHA20_POLY1305_SHA256 \
    "${SRV_ECDSA% $NO_RESUME} --resume-window 120s" "${CLI% $NO_RESUME} --resume-window 120s"
pair "kTLS client, buffered server" buffered ktls+splice TLS13_CHACHA20_POLY1305_SHA256 "$SRV_ECDSA --no-ktls" "$CLI"
pair "buffered client, kTLS server" ktls+splice buffered TLS13_CHACHA20_POLY1305_SHA256 "$SRV_ECDSA" "$CLI --no-ktls"
FILES=1
pair "TLS 1.2 kTLS client (files: no splice), buffered server" buffered ktls TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 \
    "$SRV_ECDSA --no-ktls" "$CLI --tls-max 1.2 --ciphers ECDHE-ECDSA-AES128-GCM-SHA256"
pair "kTLS without splice (files)" ktls ktls TLS13_AES_128_GCM_SHA256 "$SRV_ECDSA" \
    "$CLI --ciphers TLS13_AES_128_GCM_SHA256"
FILES=0
SST_TUNNEL_KTLS=off pair "SST_TUNNEL_KTLS=off" buffered buffered TLS13_AES_256_GCM_SHA384 "$SRV_ECDSA" "$CLI"

# Striping: one stream over 4 connections, each on kernel TLS (copied: stripes never splice).
rm -f $T/s.* $T/c.*
sst-tunnel listen 127.0.0.1:0 --stdio --streams 4 $SRV_ECDSA </dev/null >$T/s.out 2>$T/s.log &
spid=$!
if port=$(wait_listen $T/s.log $spid); then
    # shellcheck disable=SC2086
    sst-tunnel connect 127.0.0.1:"$port" --streams 4 $CLI <$T/up >/dev/null 2>$T/c.log
    crc=$?
    wait $spid
    src=$?
    why=""
    [ $crc = 0 ] || why="$why client exit $crc;"
    [ $src = 0 ] || why="$why server exit $src;"
    cmp -s $T/up $T/s.out || why="$why bytes differ;"
    grep -q "path ktls, 4 streams\$" $T/s.log || why="$why server not 'path ktls, 4 streams';"
    grep -q "path ktls, 4 streams\$" $T/c.log || why="$why client not 'path ktls, 4 streams';"
    judge "one stream striped over 4 connections, each on kernel TLS" "striped over 4 connections" $T/s.log $T/c.log
else
    fail "striped: the listener did not start"
    show $T/s.log
fi

# The rsync shape: listen --exec, the child on a socketpair (splice both ways), echoing.
rm -f $T/s.* $T/c.*
mkfifo $T/c.in $T/c.pipe
sst-tunnel listen 127.0.0.1:0 $SRV_ECDSA --exec /bin/cat 2>$T/s.log &
spid=$!
if port=$(wait_listen $T/s.log $spid); then
    cat $T/up >$T/c.in &
    cat $T/c.pipe >$T/c.out &
    # shellcheck disable=SC2086
    sst-tunnel connect 127.0.0.1:"$port" $CLI <$T/c.in >$T/c.pipe 2>$T/c.log
    crc=$?
    wait_size $T/c.out $((MB * 1048576 - 1))
    wait_grep $T/s.log "closed .*path"
    kill $spid
    wait
    if [ $crc = 0 ] && cmp -s $T/up $T/c.out && grep -q "path ktls+splice" $T/c.log &&
        grep -q "path ktls+splice" $T/s.log; then
        pass "listen --exec over kTLS+splice (the child's socketpair): echo intact"
    else
        fail "listen --exec over kTLS: client exit $crc"
        show $T/c.log $T/s.log
    fi
else
    fail "listen --exec did not start"
    show $T/s.log
fi

# Stock stunnel as the server (OpenSSL sends TLS 1.3 session tickets after the handshake,
# which the kernel hands us as handshake records): it echoes through `exec = /bin/cat`.
cat >$T/stunnel.conf <<EOF
foreground = yes
pid =
debug = 4
[echo]
accept = 127.0.0.1:4444
cert = $P/node2-cert.pem
key = $P/node2-key.pem
CAfile = $P/ca.pem
verifyChain = yes
exec = /bin/cat
EOF
stunnel $T/stunnel.conf 2>$T/stunnel.log &
tpid=$!
if wait_port 4444 $tpid; then
    # shellcheck disable=SC2086
    sst-tunnel connect 127.0.0.1:4444 $CLI <$T/up >$T/c.out 2>$T/c.log
    crc=$?
    if [ $crc = 0 ] && cmp -s $T/up $T/c.out && grep -q "path ktls" $T/c.log; then
        pass "kTLS client against stock stunnel (tickets skipped, echo intact)"
    else
        fail "kTLS client against stunnel: exit $crc"
        show $T/c.log $T/stunnel.log
    fi
else
    fail "stunnel did not listen"
    show $T/stunnel.log
fi
kill $tpid 2>/dev/null
wait $tpid 2>/dev/null

# socat as the joiner (OPENSSL-LISTEN -> stdout), our kTLS client as the donor.
socat -u OPENSSL-LISTEN:4445,reuseaddr,cert=$P/node2-cert.pem,key=$P/node2-key.pem,cafile=$P/ca.pem,verify=1 \
    STDOUT >$T/s.out 2>$T/socat.log &
opid=$!
if wait_port 4445 $opid; then
    # shellcheck disable=SC2086
    sst-tunnel connect 127.0.0.1:4445 $CLI <$T/up >/dev/null 2>$T/c.log
    crc=$?
    wait $opid
    orc=$?
    if [ $crc = 0 ] && [ $orc = 0 ] && cmp -s $T/up $T/s.out && grep -q "path ktls" $T/c.log; then
        pass "kTLS client into socat OPENSSL-LISTEN"
    else
        fail "kTLS client into socat: client exit $crc, socat exit $orc"
        show $T/c.log $T/socat.log
    fi
else
    fail "socat did not listen"
    show $T/socat.log
    kill $opid 2>/dev/null
fi

# socat as the donor (stdin -> OPENSSL-CONNECT), our kTLS listener as the joiner.
rm -f $T/s.*
mkfifo $T/s.pipe
cat $T/s.pipe >$T/s.out &
sst-tunnel listen 127.0.0.1:0 --stdio $SRV_ECDSA </dev/null >$T/s.pipe 2>$T/s.log &
spid=$!
if port=$(wait_listen $T/s.log $spid); then
    socat -u STDIN OPENSSL-CONNECT:127.0.0.1:"$port",cert=$P/node1-cert.pem,key=$P/node1-key.pem,cafile=$P/ca.pem,verify=1,commonname=node2 \
        <$T/up 2>$T/socat.log
    orc=$?
    wait $spid
    src=$?
    wait
    if [ $orc = 0 ] && [ $src = 0 ] && cmp -s $T/up $T/s.out && grep -q "path ktls+splice" $T/s.log; then
        pass "socat OPENSSL-CONNECT into a kTLS listener (splice to a pipe)"
    else
        fail "socat into kTLS listener: socat exit $orc, listener exit $src"
        show $T/s.log $T/socat.log
    fi
else
    fail "listener for socat did not start"
    show $T/s.log
fi

# The debug line that proves a connection went to the kernel before the failure under test.
HANDED="handed the connection to kernel TLS"

# killed VICTIM: a kTLS stream from the server (VICTIM=server) or the client (VICTIM=client),
# both ends on kernel TLS, and the sender is SIGKILLed mid-stream; the receiver must fail
# (exit 6, "(stream truncated)"), not end cleanly, because no close_notify came.
killed() {
    victim=$1
    rm -f $T/s.* $T/c.*
    if [ "$victim" = client ]; then sfeed=/dev/null cfeed=/dev/urandom; else sfeed=/dev/urandom cfeed=/dev/null; fi
    sst-tunnel --log-level debug listen 127.0.0.1:0 --stdio $SRV_ECDSA <$sfeed >$T/s.out 2>$T/s.log &
    spid=$!
    if ! port=$(wait_listen $T/s.log $spid); then
        fail "listener for the killed-$victim test did not start"
        return
    fi
    # shellcheck disable=SC2086
    sst-tunnel --log-level debug connect 127.0.0.1:"$port" $CLI <$cfeed >$T/c.out 2>$T/c.log &
    cpid=$!
    if [ "$victim" = client ]; then
        wait_size $T/s.out 262144
        kill -9 $cpid
        wait $cpid 2>/dev/null
        wait $spid
        rc=$? log=$T/s.log
    else
        wait_size $T/c.out 262144
        kill -9 $spid
        wait $spid 2>/dev/null
        wait $cpid
        rc=$? log=$T/c.log
    fi
    if [ $rc = 6 ] && grep -q "(stream truncated)" $log && grep -q "$HANDED" $log; then
        pass "kTLS receiver: a killed $victim is a truncation (exit 6)"
    else
        fail "kTLS receiver after a killed $victim: exit $rc"
        show $log
    fi
}
killed client
killed server

# Alerts after the hand-off: under TLS 1.3 the client's handshake ends before the server
# has checked its certificate, so the server's rejection arrives as an alert record through
# the client's kernel TLS; it must be reported as such (exit 3), never as a clean end.
# The server may reject and close before the client has moved its socket to the kernel
# (TCP_ULP then fails with ENOTCONN and the alert is read by rustls, correctly, but not
# through kTLS): such an attempt does not test the kernel path, so it is tried again.
alert_attempt() {
    rm -f $T/s.* $T/c.*
    sst-tunnel --log-level debug listen 127.0.0.1:0 --stdio $SRV_ECDSA </dev/null >$T/s.out 2>$T/s.log &
    spid=$!
    if ! port=$(wait_listen $T/s.log $spid); then
        echo "listener for the alert test did not start"
        return 2
    fi
    sst-tunnel --log-level debug connect 127.0.0.1:"$port" --cert $P/rogue-cert.pem --key $P/rogue-key.pem \
        --ca $P/ca.pem <$T/up >$T/c.out 2>$T/c.log
    crc=$?
    wait $spid
    src=$?
    if [ $crc != 3 ] || ! grep -q "the peer rejected our certificate" $T/c.log || [ $src != 3 ]; then
        echo "client exit $crc, server exit $src"
        return 2
    fi
    grep -q "$HANDED" $T/c.log || return 1
}
for attempt in 1 2 3 4 5; do
    alert_attempt >$T/alert.why
    result=$?
    [ $result = 1 ] || break
done
if [ $result = 0 ]; then
    pass "kTLS client gets the server's certificate alert (exit 3)"
elif [ $result = 1 ]; then
    fail "alert after hand-off: the client never got to hand off in $attempt attempts"
    show $T/c.log $T/s.log
else
    fail "alert after hand-off: $(cat $T/alert.why)"
    show $T/c.log $T/s.log
fi

# key_limit files|pipe: AES-GCM's key-usage limit, lowered to 64 records, on the copy engine
# (stdin a file) and on the splice engine (stdin a pipe), both ends on kernel TLS. A kernel
# that cannot rekey: the sender must stop with an error before the limit (and the receiver
# see a truncation). One that can: the sender sends KeyUpdates and gives the kernel its next
# keys, the kTLS receiver follows each, and every byte arrives.
key_limit() {
    engine=$1
    rm -f $T/s.* $T/c.*
    sst-tunnel --log-level debug listen 127.0.0.1:0 --stdio $SRV_ECDSA </dev/null >$T/s.out 2>$T/s.log &
    spid=$!
    if ! port=$(wait_listen $T/s.log $spid); then
        fail "listener for the key-limit test ($engine) did not start"
        return
    fi
    feed=$T/up want="path\|key-usage"
    if [ "$engine" = pipe ]; then
        mkfifo $T/c.in
        cat $T/up >$T/c.in &
        feed=$T/c.in want="splicing up=true"
    fi
    # shellcheck disable=SC2086
    SST_TUNNEL_TEST_RECORD_LIMIT=64 sst-tunnel --log-level debug connect 127.0.0.1:"$port" $CLI \
        --ciphers TLS13_AES_128_GCM_SHA256 <$feed >/dev/null 2>$T/c.log
    crc=$?
    wait $spid
    src=$?
    kill %1 2>/dev/null
    wait
    got=$(wc -c <$T/s.out)
    if [ $REKEY = 1 ]; then
        sent=$(grep -c "$SENT_UPDATE" $T/c.log)
        followed=$(grep -c "$FOLLOWED_UPDATE" $T/s.log)
        if [ $crc = 0 ] && [ $src = 0 ] && cmp -s $T/up $T/s.out && [ "$sent" -ge 1 ] &&
            [ "$sent" = "$followed" ] && grep -q "$want" $T/c.log; then
            pass "kTLS sender ($engine) rekeys at the lowered AES-GCM limit ($sent KeyUpdates, each followed by the kTLS receiver; $got bytes intact)"
        else
            fail "key-usage rekey ($engine): client exit $crc, server exit $src, $got bytes, $sent sent, $followed followed"
            show $T/c.log $T/s.log
        fi
        return
    fi
    if [ $crc = 6 ] && grep -q "key-usage limit is reached" $T/c.log && [ $src = 6 ] &&
        grep -q "$want" $T/c.log && [ "$got" -le $((64 * 16384)) ]; then
        pass "kTLS sender ($engine) stops at the lowered AES-GCM key-usage limit ($got bytes arrived)"
    else
        fail "key-usage limit ($engine): client exit $crc, server exit $src, $got bytes arrived"
        show $T/c.log $T/s.log
    fi
}
key_limit files
key_limit pipe

# A peer that rekeys: a buffered sst-tunnel sender with the lowered limit sends a TLS 1.3
# KeyUpdate after 64 records. A kernel that cannot take new keys: the kTLS receiver must stop
# with a clear error (exit 6) instead of failing to decrypt what follows. One that can: it
# follows every KeyUpdate and the stream arrives whole.
rm -f $T/s.* $T/c.*
sst-tunnel --log-level debug listen 127.0.0.1:0 --stdio $SRV_ECDSA </dev/null >$T/s.out 2>$T/s.log &
spid=$!
if port=$(wait_listen $T/s.log $spid); then
    # shellcheck disable=SC2086
    SST_TUNNEL_TEST_RECORD_LIMIT=64 sst-tunnel connect 127.0.0.1:"$port" $CLI --no-ktls \
        --ciphers TLS13_AES_128_GCM_SHA256 <$T/up >/dev/null 2>$T/c.log
    crc=$?
    wait $spid
    src=$?
    followed=$(grep -c "$FOLLOWED_UPDATE" $T/s.log)
    if [ $REKEY = 1 ]; then
        if [ $crc = 0 ] && [ $src = 0 ] && cmp -s $T/up $T/s.out && [ "$followed" -ge 1 ]; then
            pass "kTLS receiver follows a buffered peer's KeyUpdates ($followed, data intact)"
        else
            fail "peer KeyUpdate (rekeying kernel): receiver exit $src, sender exit $crc, $followed followed"
            show $T/s.log $T/c.log
        fi
    # (The sender may already have finished: its bytes and close_notify were out and the
    # receiver's close_notify in before the receiver failed, so its exit status is a race.)
    elif [ $src = 6 ] && grep -q "the peer rekeyed (TLS 1.3 KeyUpdate).*rerun with --no-ktls" $T/s.log; then
        pass "kTLS receiver: a peer's KeyUpdate is a clear error (exit 6), sender exit $crc"
    else
        fail "peer KeyUpdate: receiver exit $src, sender exit $crc"
        show $T/s.log $T/c.log
    fi
else
    fail "listener for the KeyUpdate test did not start"
fi

if [ $REKEY = 1 ]; then
    # Both ends on kernel TLS with the lowered limit, data both ways at once: each side sends
    # its KeyUpdates through the kernel and follows the other's.
    export SST_TUNNEL_TEST_RECORD_LIMIT=64
    pair "kTLS rekeying both ways at 64 records" ktls+splice ktls+splice TLS13_AES_128_GCM_SHA256 \
        "$SRV_ECDSA --log-level debug" "$CLI --log-level debug --ciphers TLS13_AES_128_GCM_SHA256"
    unset SST_TUNNEL_TEST_RECORD_LIMIT
    for side in s c; do
        sent=$(grep -c "$SENT_UPDATE" $T/$side.log)
        followed=$(grep -c "$FOLLOWED_UPDATE" $T/$side.log)
        if [ "$sent" -ge 1 ] && [ "$followed" -ge 1 ]; then
            pass "kTLS rekeying both ways: $side end sent $sent KeyUpdates and followed $followed"
        else
            fail "kTLS rekeying both ways: $side end sent $sent, followed $followed"
            show $T/$side.log
        fi
    done

    # Stock OpenSSL peers follow our kernel's KeyUpdates: socat as the joiner, stunnel echoing.
    socat -u OPENSSL-LISTEN:4446,reuseaddr,cert=$P/node2-cert.pem,key=$P/node2-key.pem,cafile=$P/ca.pem,verify=1 \
        STDOUT >$T/s.out 2>$T/socat.log &
    opid=$!
    if wait_port 4446 $opid; then
        # shellcheck disable=SC2086
        SST_TUNNEL_TEST_RECORD_LIMIT=64 sst-tunnel --log-level debug connect 127.0.0.1:4446 $CLI \
            --ciphers TLS13_AES_128_GCM_SHA256 <$T/up >/dev/null 2>$T/c.log
        crc=$?
        wait $opid
        orc=$?
        sent=$(grep -c "$SENT_UPDATE" $T/c.log)
        if [ $crc = 0 ] && [ $orc = 0 ] && cmp -s $T/up $T/s.out && [ "$sent" -ge 1 ]; then
            pass "socat follows a kTLS sender's KeyUpdates ($sent, data intact)"
        else
            fail "kTLS rekeying into socat: client exit $crc, socat exit $orc, $sent sent"
            show $T/c.log $T/socat.log
        fi
    else
        fail "socat did not listen (rekey test)"
        kill $opid 2>/dev/null
    fi
    sed 's/^accept = 127.0.0.1:4444$/accept = 127.0.0.1:4447/' $T/stunnel.conf >$T/stunnel2.conf
    stunnel $T/stunnel2.conf 2>$T/stunnel.log &
    tpid=$!
    if wait_port 4447 $tpid; then
        # shellcheck disable=SC2086
        SST_TUNNEL_TEST_RECORD_LIMIT=64 sst-tunnel --log-level debug connect 127.0.0.1:4447 $CLI \
            --ciphers TLS13_AES_128_GCM_SHA256 <$T/up >$T/c.out 2>$T/c.log
        crc=$?
        sent=$(grep -c "$SENT_UPDATE" $T/c.log)
        if [ $crc = 0 ] && cmp -s $T/up $T/c.out && [ "$sent" -ge 1 ]; then
            pass "stunnel follows a kTLS client's KeyUpdates ($sent, echo intact)"
        else
            fail "kTLS rekeying into stunnel: exit $crc, $sent sent"
            show $T/c.log $T/stunnel.log
        fi
    else
        fail "stunnel did not listen (rekey test)"
    fi
    kill $tpid 2>/dev/null
    wait $tpid 2>/dev/null
fi

# ------------------------------------------------------------------ production shapes
# What production hosts run (the packages load tls at boot): a real rsync SST through the
# stunnel front-end, a long mariabackup-shaped stream into a slow consumer, and a joiner
# whose output breaks; each must be on kernel TLS. In the newest kernel's guest only (they
# are long under TCG).
if [ $REKEY = 1 ]; then
    # An rsync tree through sst-tunnel run as `stunnel` with the configs wsrep_sst_rsync
    # writes (contract 2.2 / 2.3): the daemon joiner execs `rsync --server --daemon`, the
    # donor is rsync's --rsh helper. Both ends log their summaries (debug = info).
    rm -rf $T/fe $T/src $T/dest $T/s.* $T/c.*
    mkdir -p $T/fe $T/src/db1 $T/src/db2 $T/dest
    ln -s /usr/bin/sst-tunnel $T/fe/stunnel
    head -c $((MB * 1048576)) /dev/urandom >$T/src/ibdata1
    i=0
    while [ $i -lt 40 ]; do
        head -c $((4096 + i * 997)) /dev/urandom >$T/src/db$((i % 2 + 1))/t$i.ibd
        i=$((i + 1))
    done
    printf 'use chroot = no\nread only = no\nuid = 0\ngid = 0\n[sst]\npath = %s\n' $T/dest >$T/rsyncd.conf
    printf '%s\n' "key = $P/node2-key.pem" "cert = $P/node2-cert.pem" "CAfile = $P/ca.pem" \
        "foreground = yes" "pid =" "debug = info" "client = no" "verifyChain = yes" "" \
        "[rsync]" "accept = 127.0.0.1:4450" "exec = /usr/bin/rsync" \
        "execargs = rsync --server --daemon --config=$T/rsyncd.conf ." >$T/joiner.conf
    printf '%s\n' "key = $P/node1-key.pem" "cert = $P/node1-cert.pem" "CAfile = $P/ca.pem" \
        "foreground = yes" "debug = info" "client = yes" "connect = 127.0.0.1:4450" \
        "TIMEOUTclose = 0" "verifyChain = yes" >$T/donor.conf
    $T/fe/stunnel $T/joiner.conf 2>$T/s.log &
    jpid=$!
    if wait_port 4450 $jpid; then
        rsync -a --rsh="$T/fe/stunnel $T/donor.conf" $T/src/ rsync://127.0.0.1/sst/ >$T/c.log 2>&1
        rrc=$?
        wait_grep $T/s.log "closed .*path"
        kill $jpid
        wait $jpid 2>/dev/null
        why=""
        [ $rrc = 0 ] || why="$why rsync exit $rrc;"
        diff -r $T/src $T/dest >/dev/null 2>&1 || why="$why the copy differs;"
        grep -q "path ktls" $T/s.log || why="$why joiner not on kernel TLS;"
        grep -q "path ktls" $T/c.log || why="$why donor not on kernel TLS;"
        judge "rsync SST through the stunnel front-end on kernel TLS (tree intact, both ends ktls)" "rsync through the stunnel front-end on kTLS" $T/s.log $T/c.log
    else
        fail "the stunnel front-end joiner did not listen"
        show $T/s.log
    fi

    # 256 MiB in the mariabackup shape (FIFOs both ends, so splice runs) into a consumer that
    # stalls three times for 2 s: the pipe fills, splice blocks, the kernel's socket buffers
    # fill and the sender waits. The stalls are the fault under test, not synchronisation.
    rm -f $T/s.* $T/c.*
    head -c 1048576 /dev/urandom >$T/block
    produce() {
        n=0
        while [ $n -lt 256 ]; do
            cat $T/block
            n=$((n + 1))
        done
    }
    want=$(produce | sha256sum | cut -d' ' -f1)
    mkfifo $T/c.in $T/s.pipe
    sha256sum <$T/s.pipe >$T/s.sum &
    consumer=$!
    sst-tunnel listen 127.0.0.1:0 --stdio $SRV_ECDSA </dev/null >$T/s.pipe 2>$T/s.log &
    spid=$!
    if port=$(wait_listen $T/s.log $spid); then
        produce >$T/c.in &
        # shellcheck disable=SC2086
        sst-tunnel connect 127.0.0.1:"$port" $CLI --ciphers TLS13_AES_128_GCM_SHA256 \
            <$T/c.in >/dev/null 2>$T/c.log &
        cpid=$!
        for stall in 1 2 3; do
            kill -STOP $consumer
            usleep 2000000
            kill -CONT $consumer
            usleep 1000000
        done
        wait $cpid
        crc=$?
        wait $spid
        src=$?
        wait
        got=$(cut -d' ' -f1 $T/s.sum)
        why=""
        [ $crc = 0 ] || why="$why client exit $crc;"
        [ $src = 0 ] || why="$why server exit $src;"
        [ "$got" = "$want" ] || why="$why checksum $got, want $want;"
        grep -q "received 268435456 bytes" $T/s.log || why="$why the server did not receive 256 MiB;"
        grep -q "path ktls+splice" $T/s.log || why="$why server not ktls+splice;"
        grep -q "path ktls+splice" $T/c.log || why="$why client not ktls+splice;"
        judge "256 MiB into a stalling consumer over kTLS+splice (checksum intact)" "256 MiB slow consumer over kTLS" $T/s.log $T/c.log
    else
        fail "the listener for the slow consumer did not start"
        show $T/s.log
        kill $consumer
    fi

    # A joiner whose output breaks (its reader takes 1 MiB and leaves: EPIPE on a spliced
    # pipe): the joiner fails naming it, the donor sees a truncated stream; both were on
    # kernel TLS when it happened. (The joiner's input is empty, so its close_notify went out
    # first: TLS leaves no record after it to say more; a resumable stream says it in an
    # abort frame.)
    rm -f $T/s.* $T/c.*
    mkfifo $T/s.pipe
    head -c 1048576 <$T/s.pipe >/dev/null &
    sst-tunnel --log-level debug listen 127.0.0.1:0 --stdio $SRV_ECDSA </dev/null >$T/s.pipe 2>$T/s.log &
    spid=$!
    if port=$(wait_listen $T/s.log $spid); then
        # shellcheck disable=SC2086
        sst-tunnel --log-level debug connect 127.0.0.1:"$port" $CLI </dev/urandom >/dev/null 2>$T/c.log
        crc=$?
        wait $spid
        src=$?
        wait
        why=""
        [ $src = 6 ] && grep -q "writing local output: broken pipe" $T/s.log ||
            why="$why joiner exit $src without 'writing local output: broken pipe';"
        [ $crc = 6 ] && grep -q "(stream truncated)" $T/c.log ||
            why="$why donor exit $crc without '(stream truncated)';"
        grep -q "$HANDED" $T/s.log || why="$why joiner not on kernel TLS;"
        grep -q "$HANDED" $T/c.log || why="$why donor not on kernel TLS;"
        judge "EPIPE on the joiner's output over kTLS: joiner exit 6 naming it, donor exit 6 truncated" "EPIPE on the joiner's output over kTLS" $T/s.log $T/c.log
    else
        fail "the listener for the EPIPE case did not start"
        show $T/s.log
    fi
fi

fi # the whole run only

# ------------------------------------------------------------------ hostile links
# Two network namespaces joined by a veth pair, netem on both ends (iproute2's ip and tc:
# busybox's have no netns and no netem). Under reordering, duplication and corruption a
# single and a striped stream must arrive byte-exact or fail closed: a failed end exits
# non-zero and what was delivered is a strict prefix of the input, never a wrong byte.
# (veth offloads checksums, so netem's corruption reaches TCP unchecked: TLS must catch it.)
if [ $REKEY = 1 ] && { [ "${3:-test}" = test ] || [ "${3:-test}" = links ]; }; then
    IP=/usr/sbin/ip TC=/usr/sbin/tc
    for m in veth sch_netem tcp_bbr; do
        modprobe $m 2>/dev/null || echo "  (modprobe $m failed)"
    done
    # link_up NETEM-ARGS...: namespaces sa (10.9.0.1) and sb (10.9.0.2), the same netem on
    # both ends of the pair (so the delay counts twice in the RTT).
    link_up() {
        mkdir -p /run/netns
        $IP netns add sa && $IP netns add sb &&
            $IP link add va netns sa type veth peer name vb netns sb &&
            $IP -n sa addr add 10.9.0.1/24 dev va && $IP -n sb addr add 10.9.0.2/24 dev vb &&
            $IP -n sa link set va up && $IP -n sb link set vb up &&
            $IP -n sa link set lo up && $IP -n sb link set lo up &&
            $IP netns exec sa $TC qdisc add dev va root netem "$@" &&
            $IP netns exec sb $TC qdisc add dev vb root netem "$@"
    }
    link_down() {
        $IP netns del sa 2>/dev/null
        $IP netns del sb 2>/dev/null
    }
    head -c $((MB * 2 * 1048576)) /dev/urandom >$T/hostile.in
    # hostile NAME STREAMS NETEM-ARGS...
    hostile() {
        name=$1 streams=$2
        shift 2
        rm -f $T/h.*
        link_down
        if ! link_up "$@" 2>$T/h.link; then
            fail "hostile link ($name): could not set it up: $(cat $T/h.link)"
            link_down
            return
        fi
        # shellcheck disable=SC2086
        $IP netns exec sb sst-tunnel listen 10.9.0.2:0 --stdio --streams $streams $SRV_ECDSA \
            </dev/null >$T/h.out 2>$T/h.slog &
        spid=$!
        if ! port=$(wait_listen $T/h.slog $spid); then
            fail "hostile link ($name): the listener did not start"
            show $T/h.slog
            link_down
            return
        fi
        # shellcheck disable=SC2086
        $IP netns exec sa sst-tunnel connect 10.9.0.2:"$port" --streams $streams $CLI \
            <$T/hostile.in >/dev/null 2>$T/h.clog
        crc=$?
        wait $spid
        src=$?
        link_down
        got=$(wc -c <$T/h.out)
        want=$(wc -c <$T/hostile.in)
        if [ $crc = 0 ] && [ $src = 0 ]; then
            if cmp -s $T/hostile.in $T/h.out; then
                pass "hostile link ($name, $streams stream(s)): every byte arrived, in order"
            else
                fail "hostile link ($name, $streams stream(s)): both ends exit 0 but the bytes differ ($got of $want)"
                show $T/h.slog $T/h.clog
            fi
        elif [ $src != 0 ] && [ "$got" -lt "$want" ] && head -c "$got" $T/hostile.in | cmp -s - $T/h.out; then
            pass "hostile link ($name, $streams stream(s)): failed closed (client $crc, server $src; a $got-byte prefix, nothing wrong)"
        else
            fail "hostile link ($name, $streams stream(s)): client $crc, server $src, $got of $want bytes, not a clean prefix"
            show $T/h.slog $T/h.clog
        fi
    }
    for streams in 1 4; do
        hostile "reordering 25%" $streams delay 5ms reorder 25% 50% rate 50mbit
        hostile "duplication 5%" $streams delay 5ms duplicate 5% rate 50mbit
        hostile "corruption 1%" $streams delay 5ms corrupt 1% rate 50mbit
    done

    # `--streams auto` judges the path: on an 80 ms round trip it stripes over all 8
    # connections even on this guest's 2 vCPUs (where the cores alone would say 1), and on
    # loopback it does not.
    rm -f $T/h.*
    link_down
    if link_up delay 40ms rate 50mbit 2>$T/h.link; then
        # shellcheck disable=SC2086
        $IP netns exec sb sst-tunnel listen 10.9.0.2:0 --stdio --streams auto $SRV_ECDSA \
            </dev/null >$T/h.out 2>$T/h.slog &
        spid=$!
        if port=$(wait_listen $T/h.slog $spid); then
            # shellcheck disable=SC2086
            $IP netns exec sa sst-tunnel connect 10.9.0.2:"$port" --streams auto $CLI \
                <$T/up >/dev/null 2>$T/h.clog
            crc=$?
            wait $spid
            src=$?
        else
            crc=x src=x
        fi
        link_down
        # shellcheck disable=SC2086
        pair "--streams auto on loopback" ktls+splice ktls+splice TLS13_CHACHA20_POLY1305_SHA256 \
            "$SRV_ECDSA --streams auto" "$CLI --streams auto"
        why=""
        [ "$crc" = 0 ] && [ "$src" = 0 ] || why="$why client exit $crc, server exit $src;"
        cmp -s $T/up $T/h.out || why="$why bytes differ;"
        grep -q "round trip [0-9.]* ms; --streams auto offers 8" $T/h.clog ||
            why="$why the donor did not measure the long path and offer 8;"
        grep -q "path ktls, 8 streams\$" $T/h.slog || why="$why the joiner not on 8 streams;"
        judge "--streams auto on an 80 ms path: 8 stripes on 2 vCPUs, every byte intact" "--streams auto on an 80 ms path" $T/h.slog $T/h.clog
    else
        fail "the 80 ms link: $(cat $T/h.link)"
        link_down
    fi
fi


# The conformance suite on the kernel's record layer (scripts/ktls-vm-test.sh puts the test
# binary here when asked): invalid records after a real handshake, both ends.
if [ $REKEY = 1 ] && [ -x /test/conformance ]; then
    started=$(date +%s)
    SST_TUNNEL_BIN=/usr/bin/sst-tunnel /test/conformance --ignored --test-threads=1 kernel_tls \
        >$T/conformance.log 2>&1
    rc=$?
    took=$(($(date +%s) - started))
    if [ $rc = 0 ] && grep -q "test result: ok. 4 passed" $T/conformance.log; then
        pass "conformance suite on kernel TLS: invalid records refused on both ends, valid shapes (empty records, padding, KeyUpdate each way) delivered, TLS 1.2's post-handshake rules (${took}s)"
    else
        fail "conformance suite on kernel TLS (exit $rc)"
        grep -v "^ *[0-9]*: \|^ *at " $T/conformance.log | tail -n 60 | sed 's/^/  conformance: /'
    fi
fi

echo "KTLSVM kernel rekeying: $([ $REKEY = 1 ] && echo yes || echo no)"
echo "KTLSVM $failures failure(s)"
[ $failures = 0 ]
