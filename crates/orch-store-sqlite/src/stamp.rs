//! Whether the database has changed, without a read transaction: the
//! header of the WAL index (the `-shm` file) as a change stamp.
//!
//! Every commit to a WAL database, from any connection of any process,
//! rewrites the header of the WAL index before the commit returns: its
//! change counter (`iChange`) goes up, and the count of frames and the
//! checksum of the last one change with it. Two equal headers read at two
//! moments thus mean that nothing was committed in between. The header's
//! layout is the one <https://www.sqlite.org/walformat.html> (§2.1)
//! describes, which every SQLite since 3.7.0 reads and writes (processes
//! linked with different versions share one WAL index): 48 bytes, written
//! twice (the second copy first, then the first one), version `3007000`.
//!
//! Reading it is one `pread` of 96 bytes, where a read transaction takes
//! and releases the WAL index's read lock (two `fcntl` calls) besides the
//! statement. A header that cannot be read, is not initialised, has
//! another version, or whose two copies differ (a commit in progress)
//! gives no stamp: the caller then reads the database as usual.
//!
//! The `-shm` file is the same file for as long as a connection of this
//! store keeps the database open (SQLite removes it only when the last
//! connection to the database closes), and the store's writing connection
//! stays open: the file opened here is the one every process writes.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Bytes in one copy of the header.
const HEADER: usize = 48;
/// The only version of the WAL index format (SQLite 3.7.0 and later).
const VERSION: u32 = 3_007_000;

/// The `-shm` file of a WAL database, opened for reading.
#[derive(Debug)]
pub(crate) struct WalIndex {
    file: File,
}

/// One reading of the header: equal stamps, nothing committed in between.
pub(crate) type Stamp = [u8; HEADER];

impl WalIndex {
    /// The WAL index of the database at `db`, if the database is in WAL
    /// mode (its header's read and write versions are 2: the file format's
    /// §1.3) and has its index now. (A database cannot leave WAL mode while
    /// another connection, such as the store's, has it open.)
    pub(crate) fn open(db: &Path) -> Option<Self> {
        let mut header = [0u8; 20];
        File::open(db).ok()?.read_exact_at(&mut header, 0).ok()?;
        if header[18] != 2 || header[19] != 2 {
            return None;
        }
        let mut name = db.as_os_str().to_owned();
        name.push("-shm");
        File::open(name).ok().map(|file| Self { file })
    }

    /// The header now, or `None` (see the module's text).
    pub(crate) fn stamp(&self) -> Option<Stamp> {
        // Reads of other processes' commits come after this point.
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        let mut both = [0u8; 2 * HEADER];
        self.file.read_exact_at(&mut both, 0).ok()?;
        let (first, second) = both.split_at(HEADER);
        if first != second {
            return None;
        }
        let version = u32::from_ne_bytes(first[0..4].try_into().ok()?);
        let initialised = first[12] == 1;
        if version != VERSION || !initialised {
            return None;
        }
        first.try_into().ok()
    }
}

/// Most runs kept by [`Briefs`] (all are dropped at the next change).
const MOST_RUNS: usize = 4096;

/// Runs' records without their definitions ([`orch_model::Store::get_run_brief`])
/// as read while the database had one stamp: answers for as long as the
/// stamp stays the same, that is while nothing at all is committed. (A
/// dashboard or a client polling runs that have ended, over a store that
/// is not being written, then costs no read transaction and no scan of the
/// runs' tasks; any commit, of any run, drops them all.)
#[derive(Debug, Default)]
pub(crate) struct Briefs {
    /// The WAL index, opened once the store's writing connection is open.
    index: std::sync::OnceLock<Option<WalIndex>>,
    kept: std::sync::Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    stamp: Option<Stamp>,
    runs: std::collections::HashMap<orch_model::RunId, orch_model::store::RunRecord>,
}

impl Briefs {
    /// The stamp of the database at `path` now. Call only once the store's
    /// writing connection has the database open (it has made the `-shm`
    /// file).
    pub(crate) fn stamp(&self, path: &Path) -> Option<Stamp> {
        self.index
            .get_or_init(|| WalIndex::open(path))
            .as_ref()?
            .stamp()
    }

    /// Run `id` as read under `stamp`, if it was.
    pub(crate) fn get(
        &self,
        stamp: &Stamp,
        id: orch_model::RunId,
    ) -> Option<orch_model::store::RunRecord> {
        let kept = self.kept.lock().ok()?;
        if kept.stamp.as_ref() != Some(stamp) {
            return None;
        }
        kept.runs.get(&id).cloned()
    }

    /// Keeps `run`, read after `stamp` was taken (so that it is what the
    /// database held under `stamp` if the stamp is seen again).
    pub(crate) fn put(&self, stamp: Stamp, run: &orch_model::store::RunRecord) {
        let Ok(mut kept) = self.kept.lock() else {
            return;
        };
        if kept.stamp != Some(stamp) || kept.runs.len() >= MOST_RUNS {
            kept.runs.clear();
            kept.stamp = Some(stamp);
        }
        kept.runs.insert(run.id, run.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::WalIndex;

    #[test]
    fn the_stamp_changes_with_each_commit_and_only_then() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let w = rusqlite::Connection::open(&path).expect("open");
        w.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER);")
            .expect("wal");
        let index = WalIndex::open(&path).expect("the -shm file");
        let first = index.stamp().expect("a stamp");
        // Reads change nothing.
        let r = rusqlite::Connection::open(&path).expect("open");
        let n: i64 = r
            .query_row("SELECT COUNT(*) FROM t", [], |row| row.get(0))
            .expect("count");
        assert_eq!(n, 0);
        assert_eq!(index.stamp(), Some(first));
        let mut seen = vec![first];
        for i in 0..5 {
            w.execute("INSERT INTO t VALUES (?1)", [i]).expect("insert");
            let s = index.stamp().expect("a stamp");
            assert!(!seen.contains(&s), "commit {i} left the stamp as it was");
            seen.push(s);
        }
        // A rolled back transaction commits nothing.
        w.execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (9); ROLLBACK;")
            .expect("rollback");
        assert_eq!(index.stamp().as_ref(), seen.last());
    }

    #[test]
    fn no_stamp_without_a_wal_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let c = rusqlite::Connection::open(&path).expect("open");
        c.execute_batch("CREATE TABLE t (x INTEGER);")
            .expect("create");
        assert!(WalIndex::open(&path).is_none());
        // Not in WAL mode: a `-shm` file left there is not read.
        std::fs::write(dir.path().join("t.db-shm"), [0u8; 200]).expect("write");
        assert!(WalIndex::open(&path).is_none());
        // In WAL mode, a file that is not a WAL index gives no stamp.
        let wal: String = c
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .expect("wal");
        assert_eq!(wal, "wal");
        drop(c);
        std::fs::write(dir.path().join("t.db-shm"), [0u8; 200]).expect("write");
        let index = WalIndex::open(&path).expect("opened");
        assert_eq!(index.stamp(), None);
    }
}
