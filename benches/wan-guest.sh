#!/bin/sh
# benches/wan-guest.sh KERNEL_VERSION
#
# The guest half of `cargo bench --bench wan` (benches/wan.rs), run by
# scripts/ktls-vm-test.sh --wan inside a QEMU guest (busybox sh as root). For every link
# profile and tool it builds a fresh link: two network namespaces, sa (the donor, 10.9.0.1)
# and sb (the joiner, 10.9.0.2), joined by a veth pair with the same netem (half the round
# trip as delay, the loss, the rate) on both ends. Fresh per row, so no row inherits another's
# queue or cached TCP metrics. The donor's feeder and the joiner's sink are the bench binary
# (/test/wan-helper): the feeder writes a deterministic stream until told to stop, the sink
# compares every byte with it, times a window after a warm-up from its first byte, then
# tells the feeder to stop and drains the rest, so every row also ends the way an SST ends
# (end of input, close_notify, exit 0).
#
# Prints one line per row:
#   WAN PROFILE RTT_MS LOSS_PCT RATE_MBIT TOOL STREAMS AUTO CONGESTION SECONDS BYTES VERIFIED [WHY]
# (AUTO 1 on `--streams auto` rows, STREAMS the number used; VERIFIED 1 when every byte was
# the source's and every process ended as it should). /test/wan.env sets WAN_PROFILES,
# WAN_TOOLS, WAN_SECONDS, WAN_WARMUP, WAN_EXTRA (benches/wan.rs writes it).

KVER=$1
. /test/wan.env
P=/test/pki
T=/tmp
HELPER=/test/wan-helper
IP=/usr/sbin/ip TC=/usr/sbin/tc
PORT=4444

insmod /lib/modules/"$KVER"/kernel/net/tls/tls.ko
for m in aesni-intel ghash-clmulni-intel gcm chacha20poly1305 chacha-x86_64 poly1305-x86_64 \
    veth sch_netem tcp_bbr; do
    modprobe $m 2>/dev/null || echo "  (modprobe $m failed)"
done
echo "KTLSVM congestion control available: $(cat /proc/sys/net/ipv4/tcp_available_congestion_control)"

# until_true SECONDS CONDITION...: polls CONDITION every 20 ms for up to SECONDS.
until_true() {
    limit=$(($1 * 50))
    shift
    i=0
    while [ $i -lt $limit ]; do
        "$@" && return 0
        usleep 20000
        i=$((i + 1))
    done
    return 1
}
listen_port() { sed -n 's/.*listening on [^ ]*:\([0-9][0-9]*\).*/\1/p' "$1" | head -n 1; }
has_port() { [ -n "$(listen_port "$1")" ]; }
ns_port_open() { $IP netns exec sb netstat -ltn 2>/dev/null | grep -q ":$PORT "; }
gone() { ! kill -0 "$1" 2>/dev/null; }
show() { for f in "$@"; do [ -s "$f" ] && tail -n 6 "$f" | sed "s|^|  $(basename "$f"): |"; done; }

# link_up RTT_MS LOSS_PCT RATE_MBIT: netem on both ends, so the delay counts twice in the
# round trip and loss hits both directions (data and acknowledgements), as on a real path.
# The queue holds two bandwidth-delay products (a router's buffer, not a bottomless one).
# gso_max_segs 1: TCP hands the veth single segments, so netem drops packets one at a time
# as a link would, not 64 KiB offload bursts at once.
link_up() {
    rtt=$1 loss=$2 rate=$3
    half=$((rtt / 2))
    limit=$((2 * rtt * rate * 1000 / 8 / 1500))
    [ $limit -ge 1000 ] || limit=1000
    lossargs=""
    [ "$loss" = 0 ] || lossargs="loss ${loss}%"
    mkdir -p /run/netns
    # shellcheck disable=SC2086
    $IP netns add sa && $IP netns add sb &&
        $IP link add va netns sa type veth peer name vb netns sb &&
        $IP -n sa link set va gso_max_segs 1 && $IP -n sb link set vb gso_max_segs 1 &&
        $IP -n sa addr add 10.9.0.1/24 dev va && $IP -n sb addr add 10.9.0.2/24 dev vb &&
        $IP -n sa link set va up && $IP -n sb link set vb up &&
        $IP -n sa link set lo up && $IP -n sb link set lo up &&
        $IP netns exec sa $TC qdisc add dev va root netem delay ${half}ms $lossargs rate ${rate}mbit limit $limit &&
        $IP netns exec sb $TC qdisc add dev vb root netem delay ${half}ms $lossargs rate ${rate}mbit limit $limit &&
        neighbours
}
# Each end knows the other's MAC address from the start, as a host knows its router's: an
# ARP exchange would cross the emulated delay too, so the first SYN would wait a whole extra
# round trip (the first connection's RTT, which --streams auto reads, would be doubled).
neighbours() {
    mac_a=$($IP -n sa link show va | sed -n 's|.*link/ether \([0-9a-f:]*\).*|\1|p')
    mac_b=$($IP -n sb link show vb | sed -n 's|.*link/ether \([0-9a-f:]*\).*|\1|p')
    [ -n "$mac_a" ] && [ -n "$mac_b" ] &&
        $IP -n sa neigh replace 10.9.0.2 lladdr "$mac_b" dev va nud permanent &&
        $IP -n sb neigh replace 10.9.0.1 lladdr "$mac_a" dev vb nud permanent
}
link_down() {
    $IP netns del sa 2>/dev/null
    $IP netns del sb 2>/dev/null
}
# set_cc NAME: every new socket in both namespaces defaults to NAME (the socat and stunnel
# rows; sst-tunnel's rows leave the default and pass --congestion); read back to be sure.
set_cc() {
    for ns in sa sb; do
        $IP netns exec $ns sh -c "echo $1 >/proc/sys/net/ipv4/tcp_congestion_control" || return 1
        [ "$($IP netns exec $ns cat /proc/sys/net/ipv4/tcp_congestion_control)" = "$1" ] || return 1
    done
}

SRV="--cert $P/node2-cert.pem --key $P/node2-key.pem --ca $P/ca.pem"
CLI="--cert $P/node1-cert.pem --key $P/node1-key.pem --ca $P/ca.pem"

# row PROFILE RTT LOSS RATE TOOL STREAMS CONGESTION
row() {
    profile=$1 rtt=$2 loss=$3 rate=$4 tool=$5 streams=$6 cc=$7
    rm -f $T/w.*
    link_down
    why=""
    if ! link_up "$rtt" "$loss" "$rate" 2>$T/w.link; then
        why="the link could not be set up: $(tr '\n' ' ' <$T/w.link)"
    elif [ "$tool" != sst-tunnel ] && ! set_cc "$cc"; then
        why="cannot make $cc the namespaces' congestion control"
    fi
    if [ -n "$why" ]; then
        echo "WAN $profile $rtt $loss $rate $tool $streams 0 $cc 0 0 0 $why"
        link_down
        return
    fi
    # The emulation checked once per profile: what ping sees of the round trip.
    if [ "$profile" != "${pinged:-}" ]; then
        pinged=$profile
        echo "KTLSVM link $profile: configured ${rtt} ms, ping $($IP netns exec sa ping -q -c 5 -i 0.2 10.9.0.2 2>&1 | sed -n 's|.*min/avg/max = \(.*\)|min/avg/max \1|p')"
    fi
    mkfifo $T/w.in $T/w.out
    # The feeder: the deterministic stream into the donor's stdin until the sink says stop.
    $HELPER --wan-source $T/w.stop >$T/w.in 2>$T/w.src &
    fpid=$!
    # The whole row is bounded: warm-up, window, the drain at the slowest rate and set-up.
    limit=$((WAN_WARMUP + WAN_SECONDS + 150))
    sink="$HELPER --wan-sink $WAN_WARMUP $WAN_SECONDS $T/w.stop $T/w.result"
    spid= kpid=
    case $tool in
    socat)
        # The stock mariabackup shape (contract 3.3): socat -u, 8 KiB blocks, verify on.
        $sink <$T/w.out &
        kpid=$!
        $IP netns exec sb socat -u \
            openssl-listen:$PORT,reuseaddr,cert=$P/node2-cert.pem,key=$P/node2-key.pem,cafile=$P/ca.pem,commonname= \
            stdio >$T/w.out 2>$T/w.slog &
        spid=$!
        until_true 30 ns_port_open || why="socat did not listen;"
        [ -n "$why" ] || timeout $limit $IP netns exec sa socat -u stdio \
            openssl-connect:10.9.0.2:$PORT,no-sni=1,cert=$P/node1-cert.pem,key=$P/node1-key.pem,cafile=$P/ca.pem,commonname= \
            <$T/w.in 2>$T/w.clog
        crc=$?
        ;;
    stunnel)
        # The rsync shape (contract 2.3): an exec'ing server (here the sink instead of
        # rsync --daemon), an inetd-mode client fed on its stdin.
        cat >$T/w.sconf <<CONF
cert = $P/node2-cert.pem
key = $P/node2-key.pem
CAfile = $P/ca.pem
foreground = yes
pid =
debug = warning
client = no
verifyChain = yes
[sink]
accept = 10.9.0.2:$PORT
exec = $HELPER
execargs = wan --wan-sink $WAN_WARMUP $WAN_SECONDS $T/w.stop $T/w.result
CONF
        cat >$T/w.cconf <<CONF
key = $P/node1-key.pem
cert = $P/node1-cert.pem
CAfile = $P/ca.pem
foreground = yes
pid =
debug = warning
client = yes
connect = 10.9.0.2:$PORT
TIMEOUTclose = 0
verifyChain = yes
CONF
        $IP netns exec sb stunnel $T/w.sconf 2>$T/w.slog &
        spid=$!
        until_true 30 ns_port_open || why="stunnel did not listen;"
        [ -n "$why" ] || timeout $limit $IP netns exec sa stunnel $T/w.cconf <$T/w.in >/dev/null 2>$T/w.clog
        crc=$?
        ;;
    sst-tunnel)
        # WAN_EXTRA: flags for both sst-tunnels (SST_BENCH_WAN_EXTRA, to measure a variant).
        extra="--streams $streams ${WAN_EXTRA:-}"
        [ "$cc" = cubic ] || extra="$extra --congestion $cc"
        $sink <$T/w.out &
        kpid=$!
        # shellcheck disable=SC2086
        $IP netns exec sb sst-tunnel listen 10.9.0.2:0 --stdio $SRV $extra </dev/null >$T/w.out 2>$T/w.slog &
        spid=$!
        port=""
        until_true 30 has_port $T/w.slog && port=$(listen_port $T/w.slog)
        [ -n "$port" ] || why="sst-tunnel did not listen;"
        # shellcheck disable=SC2086
        [ -n "$why" ] || timeout $limit $IP netns exec sa sst-tunnel connect 10.9.0.2:$port $CLI $extra \
            <$T/w.in >/dev/null 2>$T/w.clog
        crc=$?
        ;;
    esac
    [ -z "$why" ] && [ $crc != 0 ] && why="the donor's tunnel exited $crc;"
    # The joiner's side ends by itself once the stream has (stunnel's server stays: it is a
    # daemon, and only its exec'd sink ends).
    if [ $tool = stunnel ]; then
        until_true 30 test -s $T/w.result || why="$why the sink never reported;"
        kill $spid 2>/dev/null
        wait $spid 2>/dev/null
    else
        until_true 30 gone $spid || { why="$why the joiner's tunnel did not exit;"; kill $spid 2>/dev/null; }
        wait $spid
        src=$?
        [ $src = 0 ] || why="$why the joiner's tunnel exited $src;"
        until_true 30 gone $kpid || { why="$why the sink did not exit;"; kill $kpid 2>/dev/null; }
        wait $kpid || why="$why the sink failed;"
    fi
    kill $fpid 2>/dev/null
    wait $fpid 2>/dev/null
    # The sink's verdict: "WINDOW BYTES SECONDS TOTAL ok", or what was wrong.
    set -- $(cat $T/w.result 2>/dev/null)
    if [ "${1:-}" = WINDOW ] && [ "${5:-}" = ok ]; then
        bytes=$2 secs=$3
    else
        bytes=0 secs=0
        why="$why the sink: $(cat $T/w.result 2>/dev/null)$(tail -n 1 $T/w.src 2>/dev/null);"
    fi
    used=$streams auto=0
    if [ "$streams" = auto ]; then
        auto=1
        # What auto saw and chose, for the table's notes.
        echo "KTLSVM auto $profile $cc: $(sed -n 's/.*\(round trip .*\)/\1/p' $T/w.clog | head -n 1)"
        used=$(sed -n 's/.*path [a-z+]*, \([0-9]*\) streams.*/\1/p' $T/w.slog | tail -n 1)
        [ -n "$used" ] || used=1
    fi
    if [ $tool = sst-tunnel ]; then
        grep -q "closed .*path " $T/w.slog || why="$why no summary line from the joiner;"
        if [ "$streams" != auto ] && [ "$streams" != 1 ] && ! grep -q "path [a-z+]*, $streams streams" $T/w.slog; then
            why="$why the joiner did not run $streams streams;"
        fi
    fi
    verified=1
    [ -z "$why" ] || verified=0
    echo "WAN $profile $rtt $loss $rate $tool $used $auto $cc $secs $bytes $verified $why"
    [ -z "$why" ] || show $T/w.slog $T/w.clog $T/w.src
    link_down
}

# WAN_PROFILES: ID:RTT_MS:LOSS_PCT:RATE_MBIT,... (benches/wan.rs holds the table).
for spec in $(echo "$WAN_PROFILES" | tr ',' ' '); do
    # shellcheck disable=SC2046
    set -- $(echo "$spec" | tr ':' ' ')
    profile=$1
    shift
    for tool in $(echo "$WAN_TOOLS" | tr ',' ' '); do
        case $tool in
        socat | stunnel) runs="$tool:1" ;;
        sst-tunnel) runs="sst-tunnel:1 sst-tunnel:8 sst-tunnel:auto" ;;
        sst-tunnel:*) runs=$tool ;;
        *)
            echo "FAIL unknown tool $tool"
            continue
            ;;
        esac
        for run in $runs; do
            for cc in cubic bbr; do
                row "$profile" "$@" "${run%%:*}" "${run#*:}" $cc
            done
        done
    done
done
echo "KTLSVM done"
