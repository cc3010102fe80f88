//! Writing a file atomically and durably: the one implementation of "temporary file, fsync, rename, fsync the directory".
//!
//! A reader sees the old content or the new, never a part; once a write has
//! returned, the new content survives a crash (the file is synced before it
//! is renamed, and the directory after). The temporary file is created in
//! the target's own directory, by descriptor, so the rename never crosses a
//! file system and stays in that directory even if its path changes
//! meanwhile; a symbolic link at the target is refused, never written
//! through or replaced.
//!
//! It lives in orch-resources because that is the lowest crate that may do
//! I/O (orch-model does none), so every crate above can use it:
//! [`write_in_dir`] is the implementation, [`write_file`] and
//! [`write_file_with`] open the target's directory by path and call it.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("state.json");
//! orch_resources::atomic::write_file(&path, b"{}\n").unwrap();
//! assert_eq!(std::fs::read(&path).unwrap(), b"{}\n");
//! ```

use rustix::fd::{AsFd, BorrowedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};
use std::sync::atomic::{AtomicU64, Ordering};

/// Makes temporary names unique within the process (the process id makes them unique between processes).
static NEXT_TMP: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` atomically and durably (see the module's documentation).
///
/// Links in the path of `path`'s directory are followed: that directory is
/// the caller's choice. A path that comes from elsewhere, or that lies
/// beneath a directory whose content others may change, must be resolved
/// without following links first (orch-tasks' `confined::Root`).
///
/// # Errors
/// The operating system's error (`NotFound` when the directory does not
/// exist); `InvalidInput` when `path` names no file or is a symbolic link.
pub fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_file_with(path, |f| f.write_all(bytes))
}

/// Like [`write_file`], with the content written by `fill` into the
/// temporary file (for content that is streamed rather than held in memory);
/// returns what `fill` returned.
///
/// # Errors
/// As [`write_file`], and `fill`'s error (the target is then unchanged).
pub fn write_file_with<T>(
    path: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<T>,
) -> io::Result<T> {
    let name = match path.components().next_back() {
        Some(Component::Normal(n)) => n,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{}` does not name a file", path.display()),
            ));
        }
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    write_in_dir(dir.as_fd(), name, fill)
}

/// Writes the file `name` of the open directory `dir` atomically and
/// durably: `fill` writes the content into a new temporary file created in
/// `dir` (exclusively, never through a link); the file is synced, renamed
/// over `name` within `dir`, and `dir` is synced. On any error the temporary
/// file is removed and `name` is unchanged. Returns what `fill` returned.
///
/// # Errors
/// `InvalidInput` when `name` is not a single file name (empty, `.`, `..`,
/// or holding a `/`) or is a symbolic link in `dir`; `fill`'s error; the
/// operating system's.
pub fn write_in_dir<T>(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    fill: impl FnOnce(&mut File) -> io::Result<T>,
) -> io::Result<T> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes == b"." || bytes == b".." || bytes.contains(&b'/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{}` is not a file name", name.to_string_lossy()),
        ));
    }
    if let Ok(st) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "`{}` is a symbolic link; it is neither written through nor replaced",
                    name.to_string_lossy()
                ),
            ));
        }
    }
    let n = NEXT_TMP.fetch_add(1, Ordering::Relaxed);
    let mut tmp = OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".orch-tmp-{}-{n}", std::process::id()));
    let fd = rustix::fs::openat(
        dir,
        tmp.as_os_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o666),
    )?;
    let mut file = File::from(fd);
    let written = (|| {
        let value = fill(&mut file)?;
        file.sync_all()?;
        rustix::fs::renameat(dir, tmp.as_os_str(), dir, name)?;
        Ok::<T, io::Error>(value)
    })();
    drop(file);
    let value = written.inspect_err(|_| {
        let _ = rustix::fs::unlinkat(dir, tmp.as_os_str(), AtFlags::empty());
    })?;
    // The rename is durable once the directory is synced.
    rustix::fs::fsync(dir)?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("the directory lists")
            .map(|e| {
                e.expect("an entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_a_new_file_and_replaces_an_old_one_leaving_no_temporary_file() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("a.json");
        write_file(&path, b"one").expect("written");
        assert_eq!(std::fs::read(&path).expect("readable"), b"one");
        write_file(&path, b"two").expect("replaced");
        assert_eq!(std::fs::read(&path).expect("readable"), b"two");
        assert_eq!(names(dir.path()), ["a.json"]);
    }

    #[test]
    fn a_failing_fill_leaves_the_old_content_and_no_temporary_file() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("a.json");
        write_file(&path, b"old").expect("written");
        let err = write_file_with(&path, |f| {
            f.write_all(b"half")?;
            Err::<(), _>(io::Error::other("disk on fire"))
        })
        .expect_err("refused");
        assert_eq!(err.to_string(), "disk on fire");
        assert_eq!(std::fs::read(&path).expect("readable"), b"old");
        assert_eq!(names(dir.path()), ["a.json"]);
    }

    #[test]
    fn a_link_at_the_target_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let outside = dir.path().join("outside");
        std::fs::write(&outside, b"keep").expect("written");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&outside, &link).expect("a link");
        let err = write_file(&link, b"evil").expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read(&outside).expect("readable"), b"keep");
        assert!(
            std::fs::symlink_metadata(&link)
                .expect("the link is there")
                .is_symlink()
        );
    }

    #[test]
    fn paths_that_name_no_file_and_missing_directories_are_errors() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let err = write_file(&dir.path().join(".."), b"x").expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err = write_file(&dir.path().join("missing/a.json"), b"x").expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let d = rustix::fs::open(
            dir.path(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .expect("the directory opens");
        for bad in ["", "a/b", ".."] {
            let err = write_in_dir(d.as_fd(), OsStr::new(bad), |_| Ok(())).expect_err("refused");
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
        assert!(names(dir.path()).is_empty());
    }
}
