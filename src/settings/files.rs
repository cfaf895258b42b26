//! Reading the files an operator names (configs, certificates, keys, CRLs): regular files only
//! and of a bounded size, so a path such as /dev/zero or a FIFO is a one-line error rather than
//! a process that eats memory or blocks forever.

use std::fs::{self, File};
use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// Largest configuration or option file read (the stock ones are a few hundred bytes).
pub const CONFIG_LIMIT: u64 = 1 << 20;
/// Largest PEM file read: a system CA bundle is about 200 KiB.
pub const PEM_LIMIT: u64 = 16 << 20;
/// Largest CRL file read: a big CA's CRL runs to tens of MiB.
pub const CRL_LIMIT: u64 = 256 << 20;

/// The whole of `path`, which must be a regular file of at most `limit` bytes.
pub fn read_bytes(path: &Path, limit: u64) -> Result<Vec<u8>> {
    // Checked before opening: opening a FIFO for reading would block until a writer comes.
    let meta = fs::metadata(path).map_err(|e| Error::file_io(path, &e))?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "is a directory, not a file"
        } else {
            "is not a regular file (a device, FIFO or socket)"
        };
        return Err(Error::file(path, what));
    }
    let file = File::open(path).map_err(|e| Error::file_io(path, &e))?;
    let mut bytes = Vec::with_capacity(meta.len().min(limit) as usize);
    // +1 so an over-long file is told apart from one of exactly `limit` bytes; /proc-style
    // files report a size of 0, so the length read is what counts.
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::file_io(path, &e))?;
    if bytes.len() as u64 > limit {
        return Err(Error::file(
            path,
            format!(
                "is larger than {}: not a file sst-tunnel reads",
                size(limit)
            ),
        ));
    }
    Ok(bytes)
}

/// What a trust file holds, for [`exposure`]: a key must also be kept from other users' eyes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holds {
    /// A certificate or CA bundle: only who may *change* it matters.
    Public,
    /// A private key: who may read it matters too.
    Secret,
}

/// Why other users could plant or read what this file holds: a file or its directory that
/// group or others may write (they could swap in their own CA, certificate or key), or a key
/// every user may read. One line per problem, each naming the path and the fix; empty when
/// the file is kept as it should be (or cannot be looked at: loading it reports that).
pub fn exposure(path: &Path, holds: Holds) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut problems = Vec::new();
    let Ok(meta) = fs::metadata(path) else {
        return problems;
    };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        problems.push(format!(
            "{}: writable by {} (mode {:03o}): another user could replace it with their own; \
             chmod go-w {}",
            path.display(),
            who_writes(mode),
            mode & 0o777,
            path.display()
        ));
    }
    if holds == Holds::Secret && mode & 0o004 != 0 {
        problems.push(format!(
            "{}: private key is readable by every user (mode {:03o}); chmod 600 (or 640 with \
             group mysql) {}",
            path.display(),
            mode & 0o777,
            path.display()
        ));
    }
    let dir = match path.parent() {
        Some(d) if d.as_os_str().is_empty() => Path::new("."),
        Some(d) => d,
        None => return problems,
    };
    if let Ok(meta) = fs::metadata(dir) {
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o022 != 0 {
            problems.push(format!(
                "{}: directory writable by {} (mode {:03o}): another user could put their own \
                 files in place of the ones it holds; chmod go-w {} (or keep the files elsewhere)",
                dir.display(),
                who_writes(mode),
                mode & 0o777,
                dir.display()
            ));
        }
    }
    problems
}

/// [`exposure`] of a node's trust files, each problem once (files in one directory share
/// its problem): the certificate (holding the key too when no key file is given), the key,
/// the CAs.
pub fn trust_exposure(cert: Option<&Path>, key: Option<&Path>, ca: Option<&Path>) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(cert) = cert {
        let holds = if key.is_none() {
            Holds::Secret
        } else {
            Holds::Public
        };
        problems.extend(exposure(cert, holds));
    }
    if let Some(key) = key {
        problems.extend(exposure(key, Holds::Secret));
    }
    if let Some(ca) = ca {
        problems.extend(exposure(ca, Holds::Public));
    }
    let mut seen = std::collections::HashSet::new();
    problems.retain(|p| seen.insert(p.clone()));
    problems
}

/// The effective user id: whose files a CA directory must be.
pub fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

fn who_writes(mode: u32) -> &'static str {
    match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => "group and others",
        (true, false) => "its group",
        _ => "every user",
    }
}

/// `limit` for a message: MiB when whole, else bytes.
fn size(limit: u64) -> String {
    if limit >= 1 << 20 && limit.is_multiple_of(1 << 20) {
        format!("{} MiB", limit >> 20)
    } else {
        format!("{limit} bytes")
    }
}

/// Like [`read_bytes`], as UTF-8 text.
pub fn read_text(path: &Path, limit: u64) -> Result<String> {
    String::from_utf8(read_bytes(path, limit)?).map_err(|_| Error::file(path, "is not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_fifos_directories_and_huge_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_bytes(Path::new("/dev/zero"), PEM_LIMIT).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = read_bytes(&fifo, PEM_LIMIT).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let err = read_bytes(dir.path(), PEM_LIMIT).unwrap_err();
        assert!(err.to_string().contains("is a directory"), "{err}");
        let big = dir.path().join("big");
        fs::write(&big, vec![b'x'; 2048]).unwrap();
        let err = read_bytes(&big, 1024).unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
        assert_eq!(read_bytes(&big, 2048).unwrap().len(), 2048);
        fs::write(&big, [0xff, 0xfe]).unwrap();
        let err = read_text(&big, 1024).unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
    }
}
