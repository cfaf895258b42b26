//! Linux implementations behind the seam in `fastpath/mod.rs`.

use std::os::fd::BorrowedFd;

use nix::fcntl::{FcntlArg, fcntl};

/// Pipe buffer size to ask for: 256 KiB matches the relay buffer (more gave nothing measurable).
const PIPE_SIZE: i32 = 256 * 1024;

/// `F_SETPIPE_SZ`, only ever growing a pipe (the other end may have made it larger already);
/// non-pipes fail F_GETPIPE_SZ and are left alone, as is a pipe above the user's limit (EPERM).
pub(super) fn enlarge_pipe(fd: BorrowedFd<'_>) {
    if let Ok(current) = fcntl(fd, FcntlArg::F_GETPIPE_SZ)
        && current < PIPE_SIZE
    {
        let _ = fcntl(fd, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
    }
}
