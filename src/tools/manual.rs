//! What the man pages say beyond the flags clap knows: exit status, environment, examples,
//! and for the stunnel and socat front-ends the subset of their syntax that is accepted and
//! what is handed to the real tool. Kept as data beside the generator so a page never lacks
//! a section; `tests/docs.rs` checks every page has them.

/// The exit statuses of the native commands and the stunnel front-end.
pub const EXIT_STATUS: &[(&str, &str)] = &[
    (
        "0",
        "Success: every byte delivered both ways and the TLS close_notify seen.",
    ),
    ("1", "Internal error."),
    (
        "2",
        "Usage or configuration error: a bad flag, an unreadable or malformed file, a key \
         that does not match its certificate.",
    ),
    (
        "3",
        "Certificate verification failed: ours of the peer's, or the peer's of ours (its \
         alert). Also what check exits with when it found problems.",
    ),
    (
        "4",
        "Connection failed: refused, unreachable, timed out, address in use.",
    ),
    (
        "5",
        "The TLS handshake failed for another reason: not TLS, garbage, no common version \
         or cipher suite, handshake timeout.",
    ),
    (
        "6",
        "The transfer failed: a truncated stream (no close_notify), a reset, an idle \
         timeout, a local I/O error.",
    ),
    (
        "128+N",
        "Aborted by signal N (143 for SIGTERM, 130 for SIGINT), logged as an info line.",
    ),
];

/// The environment every command reads.
pub const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "SST_TUNNEL_KTLS",
        "off keeps TLS in user space (rustls) even where the kernel could take it over; the \
         same as --no-ktls, and the way to say it to the stunnel and socat front-ends.",
    ),
    (
        "SST_TUNNEL_STREAMS",
        "N or auto: how many TLS connections the socat front-end may stripe one one-way \
         stream over (at most 8; 1 never stripes; default auto, one per two cores). Both \
         ends must be sst-tunnel; otherwise one connection, as stock socat.",
    ),
    (
        "SST_TUNNEL_REAL_STUNNEL, SST_TUNNEL_REAL_SOCAT",
        "The real stunnel or socat to run for a configuration or command line outside the \
         front-end's subset; empty means none (then such input fails, naming the line or \
         argument). By default stunnel4, stunnel.distrib, socat.distrib, or the tool further \
         down PATH, never sst-tunnel itself.",
    ),
    (
        "SST_TUNNEL_RESUME_WINDOW",
        "The stunnel and socat front-ends' --resume-window: how long a stream between two \
         sst-tunnels may stay disconnected and still resume on a new connection (a duration; \
         by default 120s, the stock scripts' own idle timeouts; 0 turns resuming off).",
    ),
    (
        "SST_TUNNEL_RESUME_BUFFER",
        "The stunnel and socat front-ends' --resume-buffer: the unacknowledged bytes each end \
         of a resumable stream keeps for resending (a size such as 64MiB, the default; at \
         least 1MiB). Below the path's bandwidth-delay product the sender waits for \
         acknowledgements. Set the same on both nodes.",
    ),
    (
        "SST_TUNNEL_CONGESTION",
        "The stunnel and socat front-ends' --congestion: the TCP congestion control of every \
         connection (e.g. bbr). It must be loaded (modprobe tcp_bbr) and, for an unprivileged \
         mysqld, listed in net.ipv4.tcp_allowed_congestion_control.",
    ),
    (
        "RUST_LOG",
        "A log filter (tracing's syntax) that overrides --log-level.",
    ),
];

/// Worked examples, by page (`sst-tunnel`, `connect`, ...): (what it does, the command).
pub fn examples(page: &str) -> &'static [(&'static str, &'static str)] {
    match page {
        "sst-tunnel" => &[
            (
                "Check the whole data path on this machine, with throwaway certificates:",
                "sst-tunnel selftest",
            ),
            (
                "Make a CA and certificates for a three-node cluster:",
                "sst-tunnel gen-certs --out /etc/mysql/sst-ca --node node1=10.0.0.1 \
                 --node node2=10.0.0.2 --node node3=10.0.0.3",
            ),
        ],
        "connect" => &[
            (
                "Send a mariabackup stream to a joiner, verifying its certificate chain:",
                "mariabackup --backup --stream=xbstream | sst-tunnel connect node2:4444 \
                 --cert node1-cert.pem --key node1-key.pem --ca ca.pem",
            ),
            (
                "The same with the files named in the node's option file:",
                "mariabackup --backup --stream=xbstream | sst-tunnel connect node2:4444 \
                 --defaults-file /etc/mysql/my.cnf",
            ),
        ],
        "listen" => &[
            (
                "Receive one stream into mbstream, accepting only node1's certificate:",
                "sst-tunnel listen 4444 --stdio --cert node2-cert.pem --key node2-key.pem \
                 --ca ca.pem --verify identity --peer-name node1 | mbstream -x",
            ),
            (
                "Serve rsync for each verified connection:",
                "sst-tunnel listen 4444 --defaults-file /etc/mysql/my.cnf --exec rsync \
                 --server --daemon --config=/var/lib/mysql/rsyncd.conf .",
            ),
        ],
        "gen-certs" => &[
            (
                "A CA and two nodes (their names and addresses as certificate names):",
                "sst-tunnel gen-certs --out ./sst-ca --node node1=10.0.0.1 --node node2=10.0.0.2",
            ),
            (
                "Renew one node, keeping its names and addresses:",
                "sst-tunnel gen-certs --out ./sst-ca --renew --node node2",
            ),
            (
                "Rotate the CA in three steps (start, renew every node, finish):",
                "sst-tunnel gen-certs --out ./sst-ca --rotate-ca start",
            ),
        ],
        "check" => &[
            (
                "Check the files a node's option file names, as its SSTs will use them:",
                "sst-tunnel check --defaults-file /etc/mysql/my.cnf",
            ),
            (
                "Check a certificate against the name its peers will ask for:",
                "sst-tunnel check --cert node2-cert.pem --key node2-key.pem --ca ca.pem \
                 --peer-name node2",
            ),
        ],
        "selftest" => &[("Run the loopback self-test:", "sst-tunnel selftest")],
        "stunnel" => &[
            (
                "What wsrep_sst_rsync runs on the joiner (its generated config):",
                "stunnel /var/lib/mysql/stunnel.conf",
            ),
            ("Ask which stunnel this is:", "stunnel -version"),
        ],
        "socat" => &[
            (
                "What wsrep_sst_mariabackup runs on the donor (encrypt=4):",
                "socat -u stdio openssl-connect:node2:4444,cert=/etc/mysql/cert.pem,\
                 key=/etc/mysql/key.pem,cafile=/etc/mysql/ca.pem,verify=1",
            ),
            (
                "And on the joiner:",
                "socat -u openssl-listen:4444,reuseaddr,cert=/etc/mysql/cert.pem,\
                 key=/etc/mysql/key.pem,cafile=/etc/mysql/ca.pem,verify=1 stdio",
            ),
        ],
        _ => &[],
    }
}

/// The stunnel directives the front-end accepts, with what each does here.
pub const STUNNEL_DIRECTIVES: &[(&str, &str)] = &[
    (
        "cert, key",
        "our certificate chain and key (key may be in cert)",
    ),
    ("CAfile, CApath", "trusted CAs: a bundle, or a directory"),
    (
        "CRLfile, CRLpath",
        "revocation lists, checked anywhere in the chain",
    ),
    (
        "verifyChain, verifyPeer, verify",
        "stunnel's verification: none without a verify line; verifyChain checks the chain \
         (and a server then requires a client certificate); verifyPeer pins the peer's own \
         certificate, which must be in CAfile/CApath; verify = 0..4",
    ),
    ("requireCert", "a server requires a client certificate"),
    (
        "checkHost, checkIP",
        "accepted peer names and addresses (any may match; the chain is checked too)",
    ),
    ("sni", "the name a client sends"),
    (
        "sslVersion, sslVersionMin, sslVersionMax, ciphers, ciphersuites",
        "TLS 1.2 and 1.3 only; OpenSSL cipher names are mapped to rustls' suites",
    ),
    (
        "client, connect, accept, exec, execArgs",
        "inetd mode (client = yes, stdin/stdout are the plaintext side) or one service that \
         accepts connections and runs exec with execArgs (split on whitespace only)",
    ),
    (
        "TIMEOUTconnect, TIMEOUTidle, TIMEOUTclose",
        "seconds (at most 365 days); TIMEOUTclose is checked and needs nothing",
    ),
    (
        "foreground, pid, debug",
        "never forks; the pid file is written once listening and removed on exit; debug sets \
         the log level",
    ),
    (
        "setuid, setgid, socket",
        "accepted when they ask for what is already so (root; TCP_NODELAY, SO_KEEPALIVE)",
    ),
];

/// The socat syntax the front-end accepts.
pub const SOCAT_SUBSET: &[(&str, &str)] = &[
    (
        "-u, -U, -T SECONDS, -d..., -V",
        "one direction, the idle timeout (at most 365 days; idling out is a failure), \
         verbosity, and the version the scripts read",
    ),
    (
        "openssl-listen:PORT, openssl-connect:HOST:PORT, TCP-LISTEN:PORT, TCP:HOST:PORT",
        "(and the tcp4/tcp6 forms), each paired with stdio; HOST may be [v6]",
    ),
    (
        "cert, key, cafile, capath, verify, commonname",
        "our files and the peer's verification: verify=1 (the default) checks the chain and \
         makes a listener require a client certificate; commonname= compares as socat does",
    ),
    (
        "no-sni, snihost, cipher, min-proto-version, max-proto-version, dhparam",
        "TLS 1.2 and 1.3 only; dhparam is checked and unused (no finite-field DHE)",
    ),
    (
        "reuseaddr, pf, bind, retry, interval, connect-timeout",
        "as socat",
    ),
    (
        "keepalive, nodelay, linger, sndbuf, rcvbuf, backlog",
        "always on, or left to the kernel",
    ),
];

/// What a front-end does with input outside its subset, and how it ends.
pub fn front_end_notes(page: &str) -> &'static str {
    match page {
        "stunnel" => {
            "A directive not listed, a second service or an option on the command line is \
             not guessed at: the real stunnel (SST_TUNNEL_REAL_STUNNEL) runs instead with the \
             same arguments, and a line on stderr says so; without one the run fails naming \
             the file and line. Exit status as sst-tunnel's; SIGTERM ends a daemon with 0, as \
             stunnel does."
        }
        "socat" => {
            "An address, option or flag not listed is not guessed at: the real socat \
             (SST_TUNNEL_REAL_SOCAT) runs instead with the same arguments, and a line on \
             stderr says so; without one the run fails naming the argument. Exit status 0 \
             after close_notify and 1 on any failure, as the scripts expect; unlike stock \
             socat a stream without close_notify and an idle timeout are failures."
        }
        _ => "",
    }
}
