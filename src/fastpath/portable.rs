//! The portable twin of `linux.rs`: no fast path, nothing to tune.

use std::os::fd::BorrowedFd;

/// Pipes cannot be resized portably; the default size is used.
pub(super) fn enlarge_pipe(_fd: BorrowedFd<'_>) {}

/// The allocator keeps its defaults.
pub(super) fn tune_allocator() {}

/// Process names are left as the executable's name.
pub(super) fn set_process_name(_name: &str) {}
