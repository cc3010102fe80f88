//! The server's bearer token: made at first start in `$ORCH_HOME/server-token` (mode 0600, written whole or not at all) and compared in constant time.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The token file's name under the engine's home.
pub const TOKEN_FILE: &str = "server-token";

/// The server's token, read from or written to its file.
#[derive(Clone)]
pub struct Token {
    value: String,
    path: PathBuf,
    created: bool,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The value is a secret: never in logs.
        f.debug_struct("Token")
            .field("path", &self.path)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

impl Token {
    /// A token given by the caller (a test, an embedding program); no file.
    pub fn from_value(value: impl Into<String>) -> Self {
        Self {
            value: value.into(),
            path: PathBuf::new(),
            created: false,
        }
    }

    /// The token of `home`: read from `home/server-token`, or made and
    /// written there (mode 0600) when the file does not exist.
    ///
    /// # Errors
    /// One line saying what failed, where, and how to fix it: a file that
    /// others can read, an empty or unreadable one, no randomness, a home
    /// that cannot be written.
    pub fn load_or_create(home: &Path) -> Result<Self, String> {
        let path = home.join(TOKEN_FILE);
        match read(&path) {
            Ok(Some(value)) => {
                return Ok(Self {
                    value,
                    path,
                    created: false,
                });
            }
            Ok(None) => {}
            Err(e) => return Err(e),
        }
        fs::create_dir_all(home).map_err(|e| format!("cannot create {}: {e}", home.display()))?;
        let value = random_hex(32)?;
        // Written to a temporary file of mode 0600 first, then linked into
        // place: the link fails when another server made the token first (its
        // token is read instead), and a reader never sees half a token.
        let tmp = home.join(format!(".{TOKEN_FILE}.{}.tmp", std::process::id()));
        let _ = fs::remove_file(&tmp);
        let written = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(value.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            fs::hard_link(&tmp, &path)
        })();
        let _ = fs::remove_file(&tmp);
        match written {
            Ok(()) => {
                if let Ok(dir) = fs::File::open(home) {
                    let _ = dir.sync_all();
                }
                Ok(Self {
                    value,
                    path,
                    created: true,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match read(&path)? {
                Some(value) => Ok(Self {
                    value,
                    path,
                    created: false,
                }),
                None => Err(format!("{} vanished while it was read", path.display())),
            },
            Err(e) => Err(format!(
                "cannot write the server token to {}: {e}",
                path.display()
            )),
        }
    }

    /// The token's text (what clients send as `Authorization: Bearer TOKEN`).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Where it is kept (empty for [`Token::from_value`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this start made it (then it is printed, once).
    pub fn created(&self) -> bool {
        self.created
    }

    /// Whether `given` is the token, in time that does not depend on where
    /// they differ.
    pub fn matches(&self, given: &str) -> bool {
        constant_time_eq(self.value.as_bytes(), given.as_bytes())
    }
}

/// Compares two byte strings in time that depends on their lengths only.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keep the compiler from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

/// The token in `path`, `None` when there is no file.
fn read(path: &Path) -> Result<Option<String>, String> {
    let f = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let meta = f
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "{} can be read by other users (mode {:o}); run `chmod 600 {}`, or delete it to \
             make a new token",
            path.display(),
            meta.permissions().mode() & 0o777,
            path.display()
        ));
    }
    let mut text = String::new();
    f.take(4096)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let value = text.trim();
    if value.len() < 16 || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{} does not hold a usable token (at least 16 printable characters); delete it to \
             make a new one",
            path.display()
        ));
    }
    Ok(Some(value.to_owned()))
}

/// `n` random bytes from the kernel, as hex.
fn random_hex(n: usize) -> Result<String, String> {
    let mut buf = vec![0u8; n];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| format!("cannot read /dev/urandom to make a token: {e}"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_made_once_with_mode_0600_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = Token::load_or_create(dir.path()).expect("made");
        assert!(first.created());
        assert_eq!(first.value().len(), 64);
        let mode = fs::metadata(first.path())
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = Token::load_or_create(dir.path()).expect("read");
        assert!(!again.created());
        assert_eq!(again.value(), first.value());
        assert!(again.matches(first.value()));
        assert!(!again.matches("wrong"));
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn a_token_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(TOKEN_FILE);
        fs::write(&path, "0123456789abcdef0123").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = Token::load_or_create(dir.path()).expect_err("refused");
        assert!(e.contains("chmod 600"), "{e}");
    }

    #[test]
    fn comparison_needs_equal_length_and_bytes() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
