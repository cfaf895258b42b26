//! Linux implementations behind the seam in `fastpath/mod.rs`.

use std::os::fd::BorrowedFd;

use nix::fcntl::{FcntlArg, fcntl};

/// Pipe buffer size to ask for: 256 KiB matches the relay buffer (more gave nothing measurable).
const PIPE_SIZE: i32 = 256 * 1024;

/// `F_SETPIPE_SZ`; fails with EBADF/EINVAL on non-pipes and EPERM above the user's limit,
/// all of which just leave the default size.
pub(super) fn enlarge_pipe(fd: BorrowedFd<'_>) {
    let _ = fcntl(fd, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
}
