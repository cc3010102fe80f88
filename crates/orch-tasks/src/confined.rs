//! Directory access confined beneath a root directory, without following symbolic links.
//!
//! A [`Root`] holds an open file descriptor of a directory. Every operation
//! takes a path relative to it and resolves that path one component at a time
//! with `openat(O_NOFOLLOW | O_DIRECTORY)` from the descriptor of the
//! component before, then opens, creates, renames or lists the last component
//! relative to the descriptor of its parent. A path is therefore resolved by
//! the kernel at the moment it is used, not checked first and opened by name
//! later: swapping a directory for a symbolic link to somewhere else while an
//! operation runs makes the operation fail (a link is never followed), it can
//! never make it read or write outside the root.
//!
//! Absolute paths, `..` and symbolic links anywhere along a path are refused.
//! Regular files are written through a temporary file created in the same
//! directory descriptor and renamed into place with `renameat`, then the
//! directory is synced (`orch_resources::atomic::write_in_dir`), so a reader
//! never sees a half-written file and nothing is created outside the target's
//! directory. Files are read only when they are regular files with exactly one
//! link: a second hard link may be a name of a file outside the root, which
//! the root cannot tell apart from a file that belongs to it.
//!
//! ```
//! use orch_tasks::confined::Root;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let root = Root::open(dir.path()).unwrap();
//! root.write_bytes("a/b.txt", b"hello", true).unwrap();
//! let mut text = String::new();
//! std::io::Read::read_to_string(&mut root.open_file("a/b.txt").unwrap(), &mut text).unwrap();
//! assert_eq!(text, "hello");
//! assert!(root.open_file("../etc/passwd").is_err());
//! ```

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a confined operation did not happen.
#[derive(Debug)]
pub struct Error {
    /// The path as the caller gave it.
    pub path: PathBuf,
    /// What went wrong.
    pub kind: ErrorKind,
    /// What the root is, for messages ("the work directory").
    pub base: &'static str,
}

/// The reasons a confined operation fails.
#[derive(Debug)]
pub enum ErrorKind {
    /// The path is empty.
    Empty,
    /// The path is absolute.
    Absolute,
    /// The path contains `..`.
    ParentDir,
    /// The path names the root itself where a file inside it is needed.
    IsRoot,
    /// The path ends with `/` (or `/.`) where a file is needed.
    TrailingSlash,
    /// This prefix of the path is a symbolic link.
    Link(PathBuf),
    /// This prefix of the path is not a directory.
    NotDir(PathBuf),
    /// The file to read is not a regular file (the kind it is).
    NotRegular(&'static str),
    /// The file to read has this many hard links.
    HardLinked(u64),
    /// A walk went deeper than this many directories.
    TooDeep(usize),
    /// The operating system refused.
    Io(io::Error),
}

impl Error {
    /// Whether the path was refused because it could leave the root
    /// (absolute, `..`, a symbolic link, a hard-linked file).
    pub fn is_escape(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Absolute
                | ErrorKind::ParentDir
                | ErrorKind::Link(_)
                | ErrorKind::HardLinked(_)
        )
    }

    /// Whether the path itself is malformed for the operation (empty, the root itself, a trailing `/`).
    pub fn is_invalid(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Empty | ErrorKind::IsRoot | ErrorKind::TrailingSlash
        )
    }

    /// The operating system's error, when that is the reason.
    pub fn io(&self) -> Option<&io::Error> {
        match &self.kind {
            ErrorKind::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.path.display();
        let base = self.base;
        match &self.kind {
            ErrorKind::Empty => write!(f, "the path is empty"),
            ErrorKind::Absolute => write!(f, "`{p}` is absolute; use a path relative to {base}"),
            ErrorKind::ParentDir => {
                write!(f, "`{p}` contains `..`; paths must stay inside {base}")
            }
            ErrorKind::IsRoot => write!(
                f,
                "`{p}` names {base} itself; name a file inside it, e.g. `out.txt`"
            ),
            ErrorKind::TrailingSlash => {
                write!(f, "`{p}` ends with `/`; name a file, not a directory")
            }
            ErrorKind::Link(at) => write!(
                f,
                "`{p}`: `{}` is a symbolic link; links are not followed, so that paths stay inside {base}",
                at.display()
            ),
            ErrorKind::NotDir(at) => write!(f, "`{p}`: `{}` is not a directory", at.display()),
            ErrorKind::NotRegular(kind) => write!(
                f,
                "`{p}` is a {kind}, not a regular file; only regular files are read"
            ),
            ErrorKind::HardLinked(n) => write!(
                f,
                "`{p}` has {n} hard links; a file with more than one name may be a file outside {base}, \
                 so it is not read (replace the link by a copy)"
            ),
            ErrorKind::TooDeep(max) => write!(
                f,
                "`{p}` is more than {max} directories deep; walk a directory nearer the files"
            ),
            ErrorKind::Io(e) => write!(f, "`{p}`: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ErrorKind::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        let kind = match &e.kind {
            ErrorKind::Io(io) => io.kind(),
            ErrorKind::Absolute
            | ErrorKind::ParentDir
            | ErrorKind::Link(_)
            | ErrorKind::HardLinked(_) => io::ErrorKind::PermissionDenied,
            ErrorKind::NotDir(_) => io::ErrorKind::NotADirectory,
            ErrorKind::TooDeep(_) => io::ErrorKind::Other,
            ErrorKind::Empty
            | ErrorKind::IsRoot
            | ErrorKind::TrailingSlash
            | ErrorKind::NotRegular(_) => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, e.to_string())
    }
}

/// What a directory entry is (not following links).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// Anything else (FIFO, socket, device).
    Other,
}

impl EntryKind {
    fn of(t: FileType) -> Self {
        match t {
            FileType::RegularFile => Self::File,
            FileType::Directory => Self::Dir,
            FileType::Symlink => Self::Symlink,
            _ => Self::Other,
        }
    }
}

/// One entry of [`Root::list`].
#[derive(Debug, Clone)]
pub struct Entry {
    /// The entry's name.
    pub name: OsString,
    /// What it is (a link is reported as a link, not followed).
    pub kind: EntryKind,
    /// Its size in bytes (of the link itself for a link).
    pub bytes: u64,
}

/// An open directory that paths are resolved beneath, never following links.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    base: &'static str,
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// A parsed relative path: its components and whether it ends with `/` or `/.`.
struct Parsed<'a> {
    parts: Vec<&'a OsStr>,
    trailing_slash: bool,
}

fn parse<'a>(path: &'a Path, base: &'static str) -> Result<Parsed<'a>, Error> {
    let err = |kind| Error {
        path: path.to_path_buf(),
        kind,
        base,
    };
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() {
        return Err(err(ErrorKind::Empty));
    }
    if bytes.starts_with(b"/") {
        return Err(err(ErrorKind::Absolute));
    }
    let mut parts = Vec::new();
    for part in bytes.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(err(ErrorKind::ParentDir)),
            _ if part.contains(&0) => {
                return Err(err(ErrorKind::Io(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the path contains a NUL byte",
                ))));
            }
            _ => parts.push(OsStr::from_bytes(part)),
        }
    }
    let trailing_slash = bytes.ends_with(b"/") || bytes.ends_with(b"/.");
    Ok(Parsed {
        parts,
        trailing_slash,
    })
}

fn prefix(parts: &[&OsStr]) -> PathBuf {
    parts.iter().collect()
}

static NEXT_TMP: AtomicU64 = AtomicU64::new(0);

impl Root {
    /// Opens the directory at `path` as a root. Links in `path` itself are
    /// followed (the caller chose the directory); nothing beneath it is.
    ///
    /// # Errors
    /// The operating system's error when `path` is not an openable directory.
    pub fn open(path: &Path) -> io::Result<Self> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self {
            fd,
            base: "the directory",
        })
    }

    /// Sets what the root is called in error messages, e.g. "the work directory".
    #[must_use]
    pub fn named(mut self, base: &'static str) -> Self {
        self.base = base;
        self
    }

    /// The directory's file descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn err(&self, path: &Path, kind: ErrorKind) -> Error {
        Error {
            path: path.to_path_buf(),
            kind,
            base: self.base,
        }
    }

    fn io_err(&self, path: &Path, e: impl Into<io::Error>) -> Error {
        self.err(path, ErrorKind::Io(e.into()))
    }

    /// Explains why opening `name` in `dir` as a directory failed with `errno`.
    fn classify(&self, path: &Path, dir: BorrowedFd<'_>, at: &[&OsStr], errno: Errno) -> Error {
        if errno == Errno::LOOP || errno == Errno::NOTDIR {
            if let Some(name) = at.last() {
                if let Ok(st) = rustix::fs::statat(dir, *name, AtFlags::SYMLINK_NOFOLLOW) {
                    let kind = if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
                        ErrorKind::Link(prefix(at))
                    } else {
                        ErrorKind::NotDir(prefix(at))
                    };
                    return self.err(path, kind);
                }
            }
            if errno == Errno::LOOP {
                return self.err(path, ErrorKind::Link(prefix(at)));
            }
            return self.err(path, ErrorKind::NotDir(prefix(at)));
        }
        self.io_err(path, errno)
    }

    /// Opens the directory `parts` beneath this root, creating missing
    /// directories when `create` is set. Returns the descriptor and whether
    /// anything was created.
    fn walk(&self, path: &Path, parts: &[&OsStr], create: bool) -> Result<(OwnedFd, bool), Error> {
        let mut cur = rustix::fs::openat(&self.fd, ".", DIR_FLAGS, Mode::empty())
            .map_err(|e| self.io_err(path, e))?;
        let mut created = false;
        for (i, name) in parts.iter().enumerate() {
            let next = match rustix::fs::openat(&cur, *name, DIR_FLAGS, Mode::empty()) {
                Ok(fd) => fd,
                Err(e) if e == Errno::NOENT && create => {
                    match rustix::fs::mkdirat(&cur, *name, Mode::from_raw_mode(0o777)) {
                        Ok(()) => created = true,
                        Err(e) if e == Errno::EXIST => {}
                        Err(e) => return Err(self.io_err(path, e)),
                    }
                    // Opened again without following links: a link put in the new
                    // directory's place is refused like any other.
                    rustix::fs::openat(&cur, *name, DIR_FLAGS, Mode::empty())
                        .map_err(|e| self.classify(path, cur.as_fd(), &parts[..=i], e))?
                }
                Err(e) => return Err(self.classify(path, cur.as_fd(), &parts[..=i], e)),
            };
            cur = next;
        }
        Ok((cur, created))
    }

    /// The parent descriptor and the last component of a path that must name
    /// an entry inside the root (not the root itself).
    fn parent_of<'a>(
        &self,
        path: &'a Path,
        create_dirs: bool,
    ) -> Result<(OwnedFd, &'a OsStr), Error> {
        let parsed = parse(path, self.base)?;
        let Some((last, dirs)) = parsed.parts.split_last() else {
            return Err(self.err(path, ErrorKind::IsRoot));
        };
        if parsed.trailing_slash {
            return Err(self.err(path, ErrorKind::TrailingSlash));
        }
        let (fd, _) = self.walk(path, dirs, create_dirs)?;
        Ok((fd, last))
    }

    /// Opens the directory `path` beneath the root (`"."` is the root itself).
    ///
    /// # Errors
    /// A refused path, a link along it, or the operating system's error.
    pub fn open_dir(&self, path: impl AsRef<Path>) -> Result<Root, Error> {
        let path = path.as_ref();
        let parsed = parse(path, self.base)?;
        let (fd, _) = self.walk(path, &parsed.parts, false)?;
        Ok(Root {
            fd,
            base: self.base,
        })
    }

    /// Creates the directory `path` and its missing parents beneath the root
    /// (an existing directory is fine). Returns the directory and whether
    /// anything was created.
    ///
    /// # Errors
    /// A refused path, a link along it, or the operating system's error.
    pub fn create_dir_all(&self, path: impl AsRef<Path>) -> Result<(Root, bool), Error> {
        let path = path.as_ref();
        let parsed = parse(path, self.base)?;
        let (fd, created) = self.walk(path, &parsed.parts, true)?;
        Ok((
            Root {
                fd,
                base: self.base,
            },
            created,
        ))
    }

    /// Opens the regular file `path` for reading. Refuses links, anything but
    /// a regular file (without blocking on a FIFO) and files with more than
    /// one hard link.
    ///
    /// # Errors
    /// A refused path or file, or the operating system's error.
    pub fn open_file(&self, path: impl AsRef<Path>) -> Result<File, Error> {
        let path = path.as_ref();
        let (dir, name) = self.parent_of(path, false)?;
        open_regular(dir.as_fd(), name, path, self.base)
    }

    /// Checks `path` as every operation does before it touches the file
    /// system: an empty or absolute path and `..` are refused. Links along
    /// the path are found only when the path is used (that is what makes it
    /// race-free), so this is for early, clear errors, not a guarantee.
    ///
    /// # Errors
    /// The refused path.
    pub fn check(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        parse(path.as_ref(), self.base).map(|_| ())
    }

    /// What `path` is, without following a link at its end; `None` when it does not exist.
    ///
    /// # Errors
    /// A refused path, a link along it, or the operating system's error.
    pub fn kind_of(&self, path: impl AsRef<Path>) -> Result<Option<EntryKind>, Error> {
        let path = path.as_ref();
        let parsed = parse(path, self.base)?;
        let Some((last, dirs)) = parsed.parts.split_last() else {
            return Ok(Some(EntryKind::Dir));
        };
        let (dir, _) = self.walk(path, dirs, false)?;
        match rustix::fs::statat(&dir, *last, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(EntryKind::of(FileType::from_raw_mode(st.st_mode)))),
            Err(e) if e == Errno::NOENT => Ok(None),
            Err(e) => Err(self.io_err(path, e)),
        }
    }

    /// Writes the file `path` atomically and durably: `fill` writes the
    /// content into a temporary file created in the same directory (by
    /// descriptor), which is then synced and renamed over `path`, and the
    /// directory is synced ([`orch_resources::atomic::write_in_dir`], on the
    /// descriptor this root resolved). A reader sees the old file or the new
    /// one, never a part. With `create_dirs`, missing parent directories are
    /// created. A link at `path` is refused, not replaced.
    ///
    /// Returns what `fill` returned.
    ///
    /// # Errors
    /// A refused path, a link along it, `fill`'s error or the operating system's.
    pub fn write_with<T>(
        &self,
        path: impl AsRef<Path>,
        create_dirs: bool,
        fill: impl FnOnce(&mut File) -> io::Result<T>,
    ) -> Result<T, Error> {
        let path = path.as_ref();
        let (dir, name) = self.parent_of(path, create_dirs)?;
        if let Ok(st) = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
                return Err(self.err(path, ErrorKind::Link(path.to_path_buf())));
            }
        }
        orch_resources::atomic::write_in_dir(dir.as_fd(), name, fill)
            .map_err(|e| self.io_err(path, e))
    }

    /// Writes `bytes` to `path` atomically (see [`Root::write_with`]).
    ///
    /// # Errors
    /// As [`Root::write_with`].
    pub fn write_bytes(
        &self,
        path: impl AsRef<Path>,
        bytes: &[u8],
        create_dirs: bool,
    ) -> Result<(), Error> {
        self.write_with(path, create_dirs, |f| io::Write::write_all(f, bytes))
    }

    /// Copies the regular file `from` to `to` by streaming (never holding the
    /// whole file in memory), writing `to` atomically. Returns the bytes copied.
    ///
    /// # Errors
    /// As [`Root::open_file`] for `from` and [`Root::write_with`] for `to`.
    pub fn copy(
        &self,
        from: impl AsRef<Path>,
        to: impl AsRef<Path>,
        create_dirs: bool,
    ) -> Result<u64, Error> {
        let mut src = self.open_file(from)?;
        self.write_with(to, create_dirs, |dst| io::copy(&mut src, dst))
    }

    /// The entries of the directory `path` (without `.` and `..`), in the
    /// order the file system returns them. Links are reported, not followed.
    ///
    /// # Errors
    /// A refused path, a link along it, or the operating system's error.
    pub fn list(&self, path: impl AsRef<Path>) -> Result<Vec<Entry>, Error> {
        let path = path.as_ref();
        let dir = self.open_dir(path)?;
        let mut out = Vec::new();
        let stream = rustix::fs::Dir::read_from(&dir.fd).map_err(|e| self.io_err(path, e))?;
        for entry in stream {
            let entry = entry.map_err(|e| self.io_err(path, e))?;
            let name = entry.file_name();
            let bytes = name.to_bytes();
            if bytes == b"." || bytes == b".." {
                continue;
            }
            let name = OsStr::from_bytes(bytes);
            match rustix::fs::statat(&dir.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => out.push(Entry {
                    name: name.to_os_string(),
                    kind: EntryKind::of(FileType::from_raw_mode(st.st_mode)),
                    bytes: u64::try_from(st.st_size).unwrap_or(0),
                }),
                // Removed since the directory was read.
                Err(e) if e == Errno::NOENT => {}
                Err(e) => return Err(self.io_err(path, e)),
            }
        }
        Ok(out)
    }

    /// Walks the directory `start` beneath the root, depth first, each
    /// directory's entries in byte order of their names (as `walkdir` sorted
    /// by file name does), calling `visit` for every entry. Directories are
    /// opened by their parent's descriptor without following links, so the
    /// walk never leaves `start`: a symbolic link is reported as
    /// [`EntryKind::Symlink`] and never followed, and a directory replaced by
    /// a link (or removed) after its parent was read is not walked. `visit`
    /// returns whether to walk into a directory (ignored for other entries);
    /// [`WalkEntry::open_file`] reads a file through the same descriptors.
    /// The walk goes at most [`MAX_WALK_DEPTH`] directories deep.
    ///
    /// # Errors
    /// [`WalkError::Walk`] for a refused `start`, a directory that cannot be
    /// read or a tree too deep; [`WalkError::Visit`] with `visit`'s error,
    /// which stops the walk.
    pub fn walk_tree<E>(
        &self,
        start: impl AsRef<Path>,
        mut visit: impl FnMut(&WalkEntry<'_>) -> Result<bool, E>,
    ) -> Result<(), WalkError<E>> {
        let start = start.as_ref();
        let dir = self.open_dir(start).map_err(WalkError::Walk)?;
        let mut rel = PathBuf::new();
        self.walk_dir(start, dir.fd.as_fd(), &mut rel, 1, &mut visit)
    }

    fn walk_dir<E>(
        &self,
        start: &Path,
        dir: BorrowedFd<'_>,
        rel: &mut PathBuf,
        depth: usize,
        visit: &mut dyn FnMut(&WalkEntry<'_>) -> Result<bool, E>,
    ) -> Result<(), WalkError<E>> {
        let fail = |rel: &Path, e: Errno| WalkError::Walk(self.io_err(&start.join(rel), e));
        let mut entries: Vec<(OsString, EntryKind)> = Vec::new();
        let stream = rustix::fs::Dir::read_from(dir).map_err(|e| fail(rel, e))?;
        for entry in stream {
            let entry = entry.map_err(|e| fail(rel, e))?;
            let bytes = entry.file_name().to_bytes();
            if bytes == b"." || bytes == b".." {
                continue;
            }
            let name = OsStr::from_bytes(bytes);
            let kind = match entry.file_type() {
                FileType::Unknown => {
                    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(st) => EntryKind::of(FileType::from_raw_mode(st.st_mode)),
                        // Removed since the directory was read.
                        Err(e) if e == Errno::NOENT => continue,
                        Err(e) => return Err(fail(&rel.join(name), e)),
                    }
                }
                t => EntryKind::of(t),
            };
            entries.push((name.to_os_string(), kind));
        }
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (name, kind) in &entries {
            rel.push(name);
            let descend = visit(&WalkEntry {
                path: rel,
                name,
                kind: *kind,
                depth,
                dir,
                start,
                base: self.base,
            })
            .map_err(WalkError::Visit)?;
            if *kind == EntryKind::Dir && descend {
                if depth >= MAX_WALK_DEPTH {
                    return Err(WalkError::Walk(
                        self.err(&start.join(&*rel), ErrorKind::TooDeep(MAX_WALK_DEPTH)),
                    ));
                }
                match rustix::fs::openat(dir, name.as_os_str(), DIR_FLAGS, Mode::empty()) {
                    Ok(sub) => self.walk_dir(start, sub.as_fd(), rel, depth + 1, visit)?,
                    // Replaced by a link or by a file, or removed, since the
                    // directory was read: not walked (a link is never followed).
                    Err(e) if e == Errno::LOOP || e == Errno::NOTDIR || e == Errno::NOENT => {}
                    Err(e) => return Err(fail(rel, e)),
                }
            }
            rel.pop();
        }
        Ok(())
    }

    /// Creates a new, uniquely named directory `<prefix><random>` directly in
    /// the root and returns its name and handle.
    ///
    /// # Errors
    /// The operating system's error.
    pub fn create_unique_dir(&self, prefix: &str) -> Result<(OsString, Root), Error> {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        for attempt in 0..100u64 {
            let n = NEXT_TMP.fetch_add(1, Ordering::Relaxed);
            let name = OsString::from(format!(
                "{prefix}{}-{seed:08x}-{n}-{attempt}",
                std::process::id()
            ));
            let path = Path::new(&name);
            match rustix::fs::mkdirat(&self.fd, name.as_os_str(), Mode::from_raw_mode(0o700)) {
                Ok(()) => {
                    let fd =
                        rustix::fs::openat(&self.fd, name.as_os_str(), DIR_FLAGS, Mode::empty())
                            .map_err(|e| {
                                self.classify(path, self.fd.as_fd(), &[name.as_os_str()], e)
                            })?;
                    return Ok((
                        name.clone(),
                        Root {
                            fd,
                            base: self.base,
                        },
                    ));
                }
                Err(e) if e == Errno::EXIST => {}
                Err(e) => return Err(self.io_err(path, e)),
            }
        }
        Err(self.io_err(
            Path::new(prefix),
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                "no free name for a new directory",
            ),
        ))
    }

    /// Renames the entry `from` to `to`, both directly in the root (single
    /// components), replacing an empty directory or a file at `to`.
    ///
    /// # Errors
    /// The operating system's error.
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> Result<(), Error> {
        rustix::fs::renameat(&self.fd, from, &self.fd, to)
            .map_err(|e| self.io_err(Path::new(to), e))
    }

    /// Removes the empty directory `name` directly in the root.
    ///
    /// # Errors
    /// The operating system's error (for example when it is not empty).
    pub fn remove_empty_dir(&self, name: &OsStr) -> Result<(), Error> {
        rustix::fs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR)
            .map_err(|e| self.io_err(Path::new(name), e))
    }

    /// Creates the empty directory `name` directly in the root.
    ///
    /// # Errors
    /// The operating system's error.
    pub fn create_dir(&self, name: &OsStr) -> Result<(), Error> {
        rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o777))
            .map_err(|e| self.io_err(Path::new(name), e))
    }

    /// Removes `name` (directly in the root) and everything beneath it,
    /// never following a link: a link is removed, not what it points to.
    ///
    /// # Errors
    /// The operating system's error.
    pub fn remove_tree(&self, name: &OsStr) -> Result<(), Error> {
        remove_tree_at(self.fd.as_fd(), name, 0).map_err(|e| self.io_err(Path::new(name), e))
    }
}

/// Opens `name` in `dir` for reading: a regular file with one link, never a
/// link, without blocking on a FIFO. `path` is what errors name.
fn open_regular(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    path: &Path,
    base: &'static str,
) -> Result<File, Error> {
    let err = |kind| Error {
        path: path.to_path_buf(),
        kind,
        base,
    };
    let io_err = |e: Errno| err(ErrorKind::Io(e.into()));
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(|e| {
        if e == Errno::LOOP {
            err(ErrorKind::Link(path.to_path_buf()))
        } else {
            io_err(e)
        }
    })?;
    let st = rustix::fs::fstat(&fd).map_err(io_err)?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => {}
        FileType::Directory => return Err(err(ErrorKind::NotRegular("directory"))),
        FileType::Fifo => return Err(err(ErrorKind::NotRegular("FIFO"))),
        FileType::Socket => return Err(err(ErrorKind::NotRegular("socket"))),
        _ => return Err(err(ErrorKind::NotRegular("device or special file"))),
    }
    #[allow(clippy::useless_conversion)] // st_nlink is u32 on some targets
    let links = u64::from(st.st_nlink);
    if links > 1 {
        return Err(err(ErrorKind::HardLinked(links)));
    }
    Ok(File::from(fd))
}

/// Deepest [`Root::walk_tree`] goes: directories nested more deeply are an error
/// (each level holds a descriptor open).
pub const MAX_WALK_DEPTH: usize = 256;

/// One entry met by [`Root::walk_tree`].
#[derive(Debug)]
pub struct WalkEntry<'a> {
    /// Its path relative to the directory walked.
    pub path: &'a Path,
    /// Its name.
    pub name: &'a OsStr,
    /// What it was when its directory was read (a link is reported as a
    /// link, never followed).
    pub kind: EntryKind,
    /// 1 for the entries of the directory walked, 2 for theirs, and so on.
    pub depth: usize,
    dir: BorrowedFd<'a>,
    start: &'a Path,
    base: &'static str,
}

impl WalkEntry<'_> {
    /// Opens the entry for reading through its directory's descriptor, with
    /// the rules of [`Root::open_file`]: a regular file with a single link,
    /// never a link, never blocking on a FIFO. Errors name the path as the
    /// walk's start joined with [`WalkEntry::path`].
    ///
    /// # Errors
    /// A link, anything but a regular file, a hard-linked file, or the
    /// operating system's error.
    pub fn open_file(&self) -> Result<File, Error> {
        open_regular(self.dir, self.name, &self.start.join(self.path), self.base)
    }
}

/// Why [`Root::walk_tree`] stopped.
#[derive(Debug)]
pub enum WalkError<E> {
    /// The walk failed: its start was refused, a directory could not be
    /// read, or the tree is too deep.
    Walk(Error),
    /// What the visitor returned.
    Visit(E),
}

/// Removes `name` in `dir` recursively by descriptor.
fn remove_tree_at(dir: BorrowedFd<'_>, name: &OsStr, depth: usize) -> io::Result<()> {
    const MAX_DEPTH: usize = 256;
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) => return Ok(()),
        Err(e) if e == Errno::NOENT => return Ok(()),
        Err(e) if e == Errno::ISDIR || e == Errno::PERM => {}
        Err(e) => return Err(e.into()),
    }
    if depth >= MAX_DEPTH {
        return Err(io::Error::other("the directory tree is too deep to remove"));
    }
    let sub = rustix::fs::openat(dir, name, DIR_FLAGS, Mode::empty())?;
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(&sub)? {
        let entry = entry?;
        let bytes = entry.file_name().to_bytes();
        if bytes != b"." && bytes != b".." {
            names.push(OsStr::from_bytes(bytes).to_os_string());
        }
    }
    for n in &names {
        remove_tree_at(sub.as_fd(), n, depth + 1)?;
    }
    drop(sub);
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = Root::open(dir.path())
            .expect("open")
            .named("the work directory");
        (dir, root)
    }

    #[test]
    fn paths_that_leave_the_root_are_refused() {
        let (_d, root) = root();
        for (bad, what) in [
            ("/etc/passwd", "absolute"),
            ("../x", "`..`"),
            ("a/../../x", "`..`"),
            ("", "empty"),
        ] {
            let e = root.write_bytes(bad, b"x", true).expect_err(bad);
            assert!(e.to_string().contains(what), "{bad}: {e}");
        }
    }

    #[test]
    fn links_along_the_path_are_refused() {
        let (d, root) = root();
        let outside = tempfile::tempdir().expect("outside");
        std::os::unix::fs::symlink(outside.path(), d.path().join("link")).expect("symlink");
        for e in [
            root.write_bytes("link/x", b"x", true).expect_err("write"),
            root.create_dir_all("link/sub")
                .map(|_| ())
                .expect_err("mkdir"),
            root.open_file("link/x").map(|_| ()).expect_err("read"),
            root.list("link").map(|_| ()).expect_err("list"),
            root.write_bytes("link", b"x", true)
                .expect_err("write over a link"),
        ] {
            assert!(matches!(e.kind, ErrorKind::Link(_)), "{e}");
            assert!(e.to_string().contains("symbolic link"), "{e}");
        }
        assert_eq!(std::fs::read_dir(outside.path()).expect("ls").count(), 0);
    }

    #[test]
    fn a_file_in_the_way_of_a_directory_is_named() {
        let (d, root) = root();
        std::fs::write(d.path().join("f"), "x").expect("file");
        let e = root
            .write_bytes("f/x", b"x", true)
            .expect_err("through a file");
        assert!(
            matches!(&e.kind, ErrorKind::NotDir(p) if p == Path::new("f")),
            "{e}"
        );
    }

    #[test]
    fn walk_tree_is_sorted_and_never_follows_links() {
        let (d, root) = root();
        let outside = tempfile::tempdir().expect("outside");
        std::fs::write(outside.path().join("secret"), "x").expect("secret");
        root.write_bytes("w/b/z.txt", b"z", true).expect("z");
        root.write_bytes("w/a.txt", b"a", true).expect("a");
        root.write_bytes("w/c/.h", b"h", true).expect("h");
        std::os::unix::fs::symlink(outside.path(), d.path().join("w/b/out")).expect("symlink");
        let mut seen = Vec::new();
        root.walk_tree("w", |e| {
            seen.push((e.path.display().to_string(), e.kind, e.depth));
            if e.kind == EntryKind::File {
                let mut text = String::new();
                io::Read::read_to_string(&mut e.open_file().map_err(io::Error::from)?, &mut text)?;
                assert_eq!(text.len(), 1);
            }
            Ok::<_, io::Error>(e.name != "c")
        })
        .expect("walked");
        assert_eq!(
            seen,
            [
                ("a.txt", EntryKind::File, 1),
                ("b", EntryKind::Dir, 1),
                ("b/out", EntryKind::Symlink, 2),
                ("b/z.txt", EntryKind::File, 2),
                ("c", EntryKind::Dir, 1),
            ]
            .map(|(p, k, n)| (p.to_owned(), k, n))
        );
        let e = root
            .walk_tree("w/b/out", |_| Ok::<_, io::Error>(true))
            .expect_err("a link as the start");
        assert!(
            matches!(
                e,
                WalkError::Walk(Error {
                    kind: ErrorKind::Link(_),
                    ..
                })
            ),
            "{e:?}"
        );
    }

    #[test]
    fn walk_tree_stops_at_its_depth_limit() {
        let (_d, root) = root();
        let deep: PathBuf = (0..=MAX_WALK_DEPTH).map(|_| "d").collect();
        root.create_dir_all(&deep).expect("deep");
        let e = root
            .walk_tree(".", |_| Ok::<_, io::Error>(true))
            .expect_err("too deep");
        assert!(
            matches!(&e, WalkError::Walk(Error { kind: ErrorKind::TooDeep(n), .. }) if *n == MAX_WALK_DEPTH),
            "{e:?}"
        );
    }

    #[test]
    fn remove_tree_does_not_follow_links() {
        let (d, root) = root();
        let outside = tempfile::tempdir().expect("outside");
        std::fs::write(outside.path().join("keep"), "x").expect("keep");
        root.write_bytes("t/a/b.txt", b"x", true).expect("write");
        std::os::unix::fs::symlink(outside.path(), d.path().join("t/a/out")).expect("symlink");
        root.remove_tree(OsStr::new("t")).expect("removed");
        assert!(!d.path().join("t").exists());
        assert!(outside.path().join("keep").exists());
    }
}
