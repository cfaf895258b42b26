//! Linux implementations behind the seam in `fastpath/mod.rs`.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;

use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl};
use nix::libc;
use nix::sys::socket::{
    self, ControlMessageOwned, MsgFlags, TlsGetRecordType, setsockopt, sockopt,
};
use rustls::ConnectionTrafficSecrets;

use super::{Cipher, Direction, TlsVersion};

/// A splice pipe's size: 256 KiB matches the relay buffer (more gave nothing measurable).
const SPLICE_PIPE: usize = 256 * 1024;

/// `F_SETPIPE_SZ`, only ever growing a pipe (the other end may have made it larger already);
/// non-pipes fail F_GETPIPE_SZ and are left alone, as is a pipe above the user's limit (EPERM).
pub(super) fn enlarge_pipe(fd: BorrowedFd<'_>, bytes: usize) {
    let bytes = i32::try_from(bytes).unwrap_or(i32::MAX);
    if let Ok(current) = fcntl(fd, FcntlArg::F_GETPIPE_SZ)
        && current < bytes
    {
        let _ = fcntl(fd, FcntlArg::F_SETPIPE_SZ(bytes));
    }
}

/// Allocations up to this size come from the heap, not a fresh mmap each time.
#[cfg(target_env = "gnu")]
const MMAP_THRESHOLD: i32 = 4 << 20;
/// Free heap kept before glibc gives memory back to the kernel.
#[cfg(target_env = "gnu")]
const TRIM_THRESHOLD: i32 = 64 << 20;

/// rustls allocates and frees record-sized buffers continuously; with glibc's defaults the
/// freed memory goes back to the kernel and is faulted in again (measured: two thirds of the
/// tunnel's system time). Keeping it costs nothing in RSS (still about 7.5 MiB peak).
#[cfg(target_env = "gnu")]
#[allow(unsafe_code)]
pub(super) fn tune_allocator() {
    // SAFETY: mallopt only changes glibc malloc tunables; it is called once, before the
    // runtime starts any other thread.
    unsafe {
        libc::mallopt(nix::libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(nix::libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

/// Other C libraries keep their defaults.
#[cfg(not(target_env = "gnu"))]
pub(super) fn tune_allocator() {}

/// `prctl(PR_SET_NAME)` on the calling (main) thread, which names the process; the kernel
/// keeps 15 bytes. Failure leaves the executable's name, which is all that is lost.
pub(super) fn set_process_name(name: &str) {
    if let Ok(name) = std::ffi::CString::new(name) {
        let _ = nix::sys::prctl::set_name(&name);
    }
}

// ---------------------------------------------------------------------------------------
// Kernel TLS (see the kernel's Documentation/networking/tls.rst).

/// The crypto parameters the kernel takes for one direction of one connection. rustls hands
/// over the full 12-byte nonce base; the kernel wants AES-GCM's as a 4-byte salt and an
/// 8-byte IV, and ChaCha20's as one 12-byte IV.
fn crypto_info(
    version: TlsVersion,
    seq: u64,
    cipher: Cipher,
    key: &[u8],
    nonce: &[u8],
) -> io::Result<sockopt::TlsCryptoInfo> {
    let info = |cipher_type| libc::tls_crypto_info {
        version: match version {
            TlsVersion::Tls12 => libc::TLS_1_2_VERSION,
            TlsVersion::Tls13 => libc::TLS_1_3_VERSION,
        },
        cipher_type,
    };
    let rec_seq = seq.to_be_bytes();
    let (salt, iv) = nonce.split_at(nonce.len().min(4));
    Ok(match cipher {
        Cipher::Aes128Gcm => {
            sockopt::TlsCryptoInfo::Aes128Gcm(libc::tls12_crypto_info_aes_gcm_128 {
                info: info(libc::TLS_CIPHER_AES_GCM_128),
                iv: iv.try_into().map_err(bad_len)?,
                key: key.try_into().map_err(bad_len)?,
                salt: salt.try_into().map_err(bad_len)?,
                rec_seq,
            })
        }
        Cipher::Aes256Gcm => {
            sockopt::TlsCryptoInfo::Aes256Gcm(libc::tls12_crypto_info_aes_gcm_256 {
                info: info(libc::TLS_CIPHER_AES_GCM_256),
                iv: iv.try_into().map_err(bad_len)?,
                key: key.try_into().map_err(bad_len)?,
                salt: salt.try_into().map_err(bad_len)?,
                rec_seq,
            })
        }
        Cipher::Chacha20Poly1305 => {
            sockopt::TlsCryptoInfo::Chacha20Poly1305(libc::tls12_crypto_info_chacha20_poly1305 {
                info: info(libc::TLS_CIPHER_CHACHA20_POLY1305),
                iv: nonce.try_into().map_err(bad_len)?,
                key: key.try_into().map_err(bad_len)?,
                salt: [],
                rec_seq,
            })
        }
    })
}

fn bad_len<E>(_: E) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "key material of unexpected size",
    )
}

fn set_raw(
    fd: BorrowedFd<'_>,
    direction: Direction,
    version: TlsVersion,
    seq: u64,
    cipher: Cipher,
    key: &[u8],
    nonce: &[u8],
) -> io::Result<()> {
    let info = Wiped(crypto_info(version, seq, cipher, key, nonce)?);
    match direction {
        Direction::Tx => setsockopt(&fd, sockopt::TcpTlsTx, &info.0),
        Direction::Rx => setsockopt(&fd, sockopt::TcpTlsRx, &info.0),
    }
    .map_err(io::Error::from)
}

/// The kernel's copy of a traffic key, wiped when it goes out of scope: once the kernel holds
/// the key, no copy of ours may outlive the call that handed it over.
struct Wiped(sockopt::TlsCryptoInfo);

impl Drop for Wiped {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        match &mut self.0 {
            sockopt::TlsCryptoInfo::Aes128Gcm(i) => {
                i.key.zeroize();
                i.iv.zeroize();
                i.salt.zeroize();
            }
            sockopt::TlsCryptoInfo::Aes256Gcm(i) => {
                i.key.zeroize();
                i.iv.zeroize();
                i.salt.zeroize();
            }
            sockopt::TlsCryptoInfo::Chacha20Poly1305(i) => {
                i.key.zeroize();
                i.iv.zeroize();
            }
        }
    }
}

/// Attaches the "tls" upper-layer protocol; until keys are set the socket is plain TCP.
pub(super) fn attach_ulp(fd: BorrowedFd<'_>) -> io::Result<()> {
    setsockopt(&fd, sockopt::TcpUlp::default(), b"tls").map_err(io::Error::from)
}

/// Gives one direction's key and sequence number to the kernel.
pub(super) fn set_keys(
    fd: BorrowedFd<'_>,
    direction: Direction,
    version: TlsVersion,
    seq: u64,
    secrets: &ConnectionTrafficSecrets,
) -> io::Result<()> {
    let unsupported = || {
        io::Error::new(
            io::ErrorKind::Unsupported,
            "no kernel cipher for this suite",
        )
    };
    let cipher = Cipher::of(secrets).ok_or_else(unsupported)?;
    let (key, iv) = match secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv }
        | ConnectionTrafficSecrets::Aes256Gcm { key, iv }
        | ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => (key.as_ref(), iv.as_ref()),
        _ => return Err(unsupported()),
    };
    set_raw(fd, direction, version, seq, cipher, key, iv)
}

/// Whether this kernel takes `cipher` for both directions, tried once per process on a
/// throwaway loopback connection with dummy keys (this also loads tls.ko and the AEAD
/// modules where module autoloading works). `Err` says why not; `Ok(true)` when it also takes
/// new TLS 1.3 keys on a socket that has some (KeyUpdate, Linux 6.14 and later).
pub(super) fn probe(cipher: Cipher) -> Result<bool, String> {
    static PROBES: [OnceLock<Result<bool, String>>; 3] =
        [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    PROBES[cipher as usize]
        .get_or_init(|| probe_now(cipher))
        .clone()
}

fn probe_now(cipher: Cipher) -> Result<bool, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("no loopback socket to probe with: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let tcp = std::net::TcpStream::connect(addr).map_err(|e| format!("probe connect: {e}"))?;
    let _accepted = listener
        .accept()
        .map_err(|e| format!("probe accept: {e}"))?;
    attach_ulp(tcp.as_fd()).map_err(|e| format!("TCP_ULP \"tls\": {e} (is tls.ko available?)"))?;
    let key_len = if cipher == Cipher::Aes128Gcm { 16 } else { 32 };
    let (key, nonce) = ([7u8; 32], [7u8; 12]);
    let set = |direction, key: &[u8]| {
        set_raw(
            tcp.as_fd(),
            direction,
            TlsVersion::Tls13,
            0,
            cipher,
            key,
            &nonce,
        )
    };
    for direction in [Direction::Tx, Direction::Rx] {
        set(direction, &key[..key_len]).map_err(|e| format!("{direction:?} {cipher:?}: {e}"))?;
    }
    // A kernel without rekeying refuses keys on a socket that has them (EBUSY).
    let other = [9u8; 32];
    Ok(set(Direction::Tx, &other[..key_len]).is_ok()
        && set(Direction::Rx, &other[..key_len]).is_ok())
}

/// Receives from a kTLS socket: plaintext of data records (possibly several), or one whole
/// control record; returns its content type and length. Never blocks (MSG_DONTWAIT).
pub(super) fn recv_record(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(u8, usize)> {
    recv_with(fd, buf, MsgFlags::MSG_DONTWAIT)
}

/// read(2) straight into `buf`'s unfilled, maybe uninitialised, room.
#[allow(unsafe_code)]
pub(super) fn read_uninit(
    fd: BorrowedFd<'_>,
    buf: &mut tokio::io::ReadBuf<'_>,
) -> io::Result<usize> {
    // SAFETY: read(2) only writes, at most `room.len()` bytes into `room`, which is valid for
    // writes of that length; nothing in it is read before the kernel wrote it.
    let rc = unsafe {
        let room = buf.unfilled_mut();
        libc::read(fd.as_raw_fd(), room.as_mut_ptr().cast(), room.len())
    };
    let n = usize::try_from(rc).map_err(|_| io::Error::last_os_error())?;
    // SAFETY: the kernel wrote (initialised) the first `n` bytes of the unfilled room.
    unsafe { buf.assume_init(n) };
    buf.advance(n);
    Ok(n)
}

/// TCP_INFO's smoothed round trip (tcpi_rtt, microseconds): right after connect it is the
/// handshake's own sample.
#[allow(unsafe_code)]
pub(super) fn tcp_rtt(fd: BorrowedFd<'_>) -> Option<std::time::Duration> {
    // SAFETY: `info` is a zeroed tcp_info the kernel fills up to `len` bytes, which starts
    // as its full size; the fd is borrowed, so open for the call.
    let (rc, info) = unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        );
        (rc, info)
    };
    (rc == 0 && info.tcpi_rtt > 0)
        .then(|| std::time::Duration::from_micros(u64::from(info.tcpi_rtt)))
}

/// TCP_CONGESTION: the kernel refuses a name it has no module for (ENOENT) and, for a process
/// without CAP_NET_ADMIN, one missing from net.ipv4.tcp_allowed_congestion_control (EPERM).
pub(super) fn set_congestion(fd: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    socket2::SockRef::from(&fd).set_tcp_congestion(name.as_bytes())
}

/// The congestion control the kernel runs for this socket.
pub(super) fn congestion(fd: BorrowedFd<'_>) -> io::Result<String> {
    let name = socket2::SockRef::from(&fd).tcp_congestion()?;
    Ok(String::from_utf8_lossy(&name)
        .trim_end_matches('\0')
        .to_string())
}

/// Takes the socket's pending error (getsockopt SO_ERROR clears it), if any.
pub(super) fn socket_error(fd: BorrowedFd<'_>) -> Option<io::Error> {
    match socket::getsockopt(&fd, sockopt::SocketError) {
        Ok(0) => None,
        Ok(errno) => Some(io::Error::from_raw_os_error(errno)),
        Err(e) => Some(e.into()),
    }
}

/// Looks at what a kTLS socket has next without taking it (MSG_PEEK): 0 bytes only at the
/// end of the stream. Never blocks.
pub(super) fn peek_record(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    recv_with(fd, buf, MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_PEEK).map(|(_, n)| n)
}

fn recv_with(fd: BorrowedFd<'_>, buf: &mut [u8], flags: MsgFlags) -> io::Result<(u8, usize)> {
    let mut space = nix::cmsg_space!(u8);
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = socket::recvmsg::<()>(fd.as_raw_fd(), &mut iov, Some(&mut space), flags)
        .map_err(io::Error::from)?;
    let mut kind = 23; // application data when the kernel adds no type (it always does)
    for cmsg in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::TlsGetRecordType(t) = cmsg {
            kind = match t {
                TlsGetRecordType::ChangeCipherSpec => 20,
                TlsGetRecordType::Alert => 21,
                TlsGetRecordType::Handshake => 22,
                TlsGetRecordType::ApplicationData => 23,
                TlsGetRecordType::Unknown(other) => other,
                // A type nix learns later: not data, so it cannot pass as plaintext.
                _ => 0,
            };
        }
    }
    Ok((kind, msg.bytes))
}

/// Sends one record of content type `kind` (an alert, e.g. close_notify) through kTLS.
#[allow(unsafe_code)]
pub(super) fn send_record(fd: BorrowedFd<'_>, kind: u8, payload: &[u8]) -> io::Result<usize> {
    // nix has no TLS_SET_RECORD_TYPE control message, so the cmsg is built by hand.
    // SAFETY: `control` is sized with CMSG_SPACE for one byte, zeroed, and aligned like a
    // cmsghdr (u64 words: the header's fields are written through a pointer into it, which a
    // byte array's alignment of 1 would make undefined behaviour); the header pointer comes
    // from CMSG_FIRSTHDR on a msghdr that points at it, and the data write stays inside
    // CMSG_LEN(1). The iovec points at `payload`, which outlives the call.
    unsafe {
        let mut control = [0u64; 8];
        let space = libc::CMSG_SPACE(1) as usize;
        debug_assert!(space <= std::mem::size_of_val(&control));
        debug_assert!(std::mem::align_of_val(&control) >= std::mem::align_of::<libc::cmsghdr>());
        let mut iov = libc::iovec {
            iov_base: payload.as_ptr() as *mut libc::c_void,
            iov_len: payload.len(),
        };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_TLS;
        (*cmsg).cmsg_type = libc::TLS_SET_RECORD_TYPE;
        (*cmsg).cmsg_len = libc::CMSG_LEN(1) as _;
        *libc::CMSG_DATA(cmsg) = kind;
        let sent = libc::sendmsg(
            fd.as_raw_fd(),
            &msg,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        );
        if sent < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(sent as usize)
        }
    }
}

// ---------------------------------------------------------------------------------------
// splice(2): moving bytes between fds through a pipe without copying them to user space.

/// A non-blocking pipe for splice, grown to [`SPLICE_PIPE`]; returns (read end, write end,
/// capacity).
pub(super) fn pipe() -> io::Result<(OwnedFd, OwnedFd, usize)> {
    let (r, w) =
        nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    enlarge_pipe(r.as_fd(), SPLICE_PIPE);
    let size = fcntl(&r, FcntlArg::F_GETPIPE_SZ).map_err(io::Error::from)?;
    Ok((r, w, usize::try_from(size).unwrap_or(65536)))
}

/// One non-blocking splice of at most `len` bytes; one of the fds must be a pipe.
pub(super) fn splice(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    nix::fcntl::splice(
        from,
        None,
        to,
        None,
        len,
        SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE,
    )
    .map_err(io::Error::from)
}

/// Whether splice can use this fd as a local end: pipes, sockets and regular files can;
/// terminals and other devices are left to the copy engine.
pub(super) fn splice_capable(fd: BorrowedFd<'_>) -> bool {
    use nix::sys::stat::{SFlag, fstat};
    fstat(fd).is_ok_and(|st| {
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        kind == SFlag::S_IFIFO || kind == SFlag::S_IFSOCK || kind == SFlag::S_IFREG
    })
}
