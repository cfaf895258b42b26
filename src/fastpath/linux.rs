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
        nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        nix::libc::mallopt(nix::libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
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
