//! A loopback TCP proxy that breaks connections the way networks do, for the resume tests:
//! connection k is reset (RST, no FIN) once `resets[k]` bytes have crossed it either way,
//! and after each reset every new connection is refused (accepted, then reset at once) for
//! the outage. Connections past the list are left alone. A black-holing proxy instead stops
//! forwarding the first connection after N bytes without closing it (what a dead path
//! looks like: no reset, nothing moves). Its threads end with the test.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the proxy did, for the test to check.
#[derive(Default)]
pub struct Seen {
    /// Connections accepted and forwarded.
    pub forwarded: AtomicUsize,
    /// Connections reset mid-stream.
    pub reset: AtomicUsize,
    /// Connections refused during an outage.
    pub refused: AtomicUsize,
}

/// A running proxy.
pub struct FaultProxy {
    pub port: u16,
    pub seen: Arc<Seen>,
}

/// Sets SO_LINGER to zero, so the last close sends RST.
fn abortive(sock: &TcpStream) {
    let _ = socket2::SockRef::from(sock).set_linger(Some(Duration::ZERO));
}

impl FaultProxy {
    /// Forwards 127.0.0.1:`port` (a new port) to 127.0.0.1:`target`.
    pub fn start(target: u16, resets: Vec<u64>, outage: Duration) -> Self {
        Self::with(target, resets, outage, None)
    }

    /// Forwards to `target`; the first connection goes silent both ways (bytes read and
    /// dropped, the sockets left open) once `after` bytes have crossed it.
    pub fn black_hole(target: u16, after: u64) -> Self {
        Self::with(target, Vec::new(), Duration::ZERO, Some(after))
    }

    fn with(target: u16, resets: Vec<u64>, outage: Duration, hole: Option<u64>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Seen::default());
        let seen_by_thread = seen.clone();
        let down_until: Arc<Mutex<Option<Instant>>> = Arc::default();
        std::thread::spawn(move || {
            let seen = seen_by_thread;
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let down = down_until
                    .lock()
                    .unwrap()
                    .is_some_and(|t| Instant::now() < t);
                if down {
                    seen.refused.fetch_add(1, Ordering::Relaxed);
                    abortive(&client);
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    abortive(&client);
                    continue;
                };
                let index = seen.forwarded.fetch_add(1, Ordering::Relaxed);
                let limit = resets.get(index).copied();
                let hole = hole.filter(|_| index == 0);
                let crossed = Arc::new(AtomicU64::new(0));
                let broken = Arc::new(AtomicBool::new(false));
                for (from, to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server.try_clone().unwrap(), client.try_clone().unwrap()),
                ] {
                    let (crossed, broken, seen, down_until) = (
                        crossed.clone(),
                        broken.clone(),
                        seen.clone(),
                        down_until.clone(),
                    );
                    std::thread::spawn(move || {
                        pump(
                            from,
                            to,
                            limit,
                            hole,
                            &crossed,
                            &broken,
                            &seen,
                            &down_until,
                            outage,
                        )
                    });
                }
            }
        });
        Self { port, seen }
    }
}

/// One direction of one connection; at the limit, both sockets are reset.
#[allow(clippy::too_many_arguments)]
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    limit: Option<u64>,
    hole: Option<u64>,
    crossed: &AtomicU64,
    broken: &AtomicBool,
    seen: &Seen,
    down_until: &Mutex<Option<Instant>>,
    outage: Duration,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if broken.load(Ordering::Relaxed) {
            break;
        }
        let total = crossed.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if limit.is_some_and(|l| total >= l) && !broken.swap(true, Ordering::Relaxed) {
            seen.reset.fetch_add(1, Ordering::Relaxed);
            *down_until.lock().unwrap() = Some(Instant::now() + outage);
            // RST both ways: linger zero, then wake both readers without a FIN; the last
            // close of each socket resets it.
            abortive(&from);
            abortive(&to);
            let _ = from.shutdown(Shutdown::Read);
            let _ = to.shutdown(Shutdown::Read);
            return;
        }
        if hole.is_some_and(|h| total >= h) {
            // Swallowed: the path is dead, and nobody is told.
            continue;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    if !broken.load(Ordering::Relaxed) {
        // A clean end passes on as one.
        let _ = to.shutdown(Shutdown::Write);
    }
}
