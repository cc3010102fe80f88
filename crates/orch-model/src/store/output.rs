//! A step's output kept while it is produced: chunks of its standard output
//! and error ([`OutputChunk`]), the optional store concern that keeps them
//! ([`OutputStore`]), and what a reader makes of them ([`OutputSoFar`]).
//!
//! A step that runs a program (`shell.exec`, `shell.script`, an external
//! module) has its output cut into chunks as it arrives: a chunk is written
//! when [`CHUNK_BYTES`] have gathered, or [`FLUSH_INTERVAL`] after its first
//! byte, whichever comes first, and the writer sends every chunk waiting in
//! one call ([`OutputStore::append_output`]). Each stream keeps at most the
//! run's output limit (1 MiB by default) per attempt, as the step's result
//! does; the chunk that reaches the limit says so (`truncated`) and nothing
//! of that stream is kept after it. A step that prints nothing writes
//! nothing.

use crate::error::Result;
use crate::ids::RunId;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The most bytes in one chunk.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// The longest a produced byte waits before its chunk is written.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(200);

/// Which stream a chunk comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl OutputStream {
    /// `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }

    /// The number a store keeps for it: 1 for stdout, 2 for stderr (their
    /// file descriptors).
    pub fn code(self) -> i16 {
        match self {
            Self::Stdout => 1,
            Self::Stderr => 2,
        }
    }

    /// The stream of [`OutputStream::code`]'s number.
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            1 => Some(Self::Stdout),
            2 => Some(Self::Stderr),
            _ => None,
        }
    }
}

/// A piece of a step's output, in the order it was produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputChunk {
    /// The run.
    pub run: RunId,
    /// The step's index in the run.
    pub task: u32,
    /// The attempt that produced it, as the task's recorded attempt count
    /// will number it (the first run of a step is attempt 1, its first
    /// retry attempt 2, ...).
    pub attempt: u32,
    /// Standard output or error.
    pub stream: OutputStream,
    /// Its place among the step's chunks, from 1 (assigned by the store:
    /// the value given to [`OutputStore::append_output`] is not read).
    pub seq: u64,
    /// The bytes, as the program wrote them (at most [`CHUNK_BYTES`]).
    pub data: Vec<u8>,
    /// The stream reached the output limit with this chunk: what the
    /// program wrote to it afterwards (in this attempt) was not kept.
    pub truncated: bool,
    /// When it was cut.
    pub at: DateTime<Utc>,
}

/// Output kept while it is produced (optional: [`Store::output_store`](super::Store::output_store)).
///
/// # Contract
/// - `append_output` stores chunks of any runs and steps in one
///   transaction, in the order given; each chunk gets the next `seq` of its
///   step (consecutive per run and step, from 1, across attempts and
///   streams). A chunk naming a run or a step the store does not have fails
///   the whole call with `NotFound`, and nothing of it is stored. An empty
///   list changes nothing.
/// - `output` gives a step's chunks with `seq > after`, in order, at most
///   `limit` of them: a reader keeps the last `seq` it saw as its cursor.
/// - Appending changes nothing else: not the step's state, its attempt or
///   its result (its final output stays in the result, as before).
#[async_trait]
pub trait OutputStore: Send + Sync {
    /// Appends chunks, numbering each after its step's last one.
    async fn append_output(&self, chunks: Vec<OutputChunk>) -> Result<()>;
    /// A step's chunks after the cursor `after`, at most `limit`.
    async fn output(
        &self,
        run: RunId,
        task: u32,
        after: u64,
        limit: usize,
    ) -> Result<Vec<OutputChunk>>;
}

/// A step's output so far, as chunks give it: the text of the latest
/// attempt that wrote any (what `orch logs` and `GET .../logs` show of a
/// running step).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputSoFar {
    /// The attempt shown (0: no chunk yet).
    pub attempt: u32,
    /// Its standard output so far.
    pub stdout: Vec<u8>,
    /// Its standard error so far.
    pub stderr: Vec<u8>,
    /// Standard output reached the limit.
    pub stdout_truncated: bool,
    /// Standard error reached the limit.
    pub stderr_truncated: bool,
    /// The `seq` of the last chunk read (a cursor for what comes next).
    pub next: u64,
}

impl OutputSoFar {
    /// Adds chunks read after `self.next`, in order. A chunk of a later
    /// attempt starts the text again.
    pub fn extend(&mut self, chunks: &[OutputChunk]) {
        for c in chunks {
            if c.attempt > self.attempt {
                *self = Self {
                    attempt: c.attempt,
                    next: self.next,
                    ..Self::default()
                };
            }
            self.next = self.next.max(c.seq);
            if c.attempt < self.attempt {
                continue;
            }
            let (text, cut) = match c.stream {
                OutputStream::Stdout => (&mut self.stdout, &mut self.stdout_truncated),
                OutputStream::Stderr => (&mut self.stderr, &mut self.stderr_truncated),
            };
            text.extend_from_slice(&c.data);
            *cut |= c.truncated;
        }
    }

    /// Whether any chunk was read.
    pub fn is_empty(&self) -> bool {
        self.attempt == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(attempt: u32, stream: OutputStream, seq: u64, data: &[u8]) -> OutputChunk {
        OutputChunk {
            run: RunId::new(),
            task: 0,
            attempt,
            stream,
            seq,
            data: data.to_vec(),
            truncated: false,
            at: DateTime::<Utc>::default(),
        }
    }

    #[test]
    fn the_latest_attempt_is_shown() {
        let mut so_far = OutputSoFar::default();
        assert!(so_far.is_empty());
        so_far.extend(&[
            chunk(1, OutputStream::Stdout, 1, b"one "),
            chunk(1, OutputStream::Stderr, 2, b"warn"),
        ]);
        assert_eq!(
            (so_far.attempt, &so_far.stdout[..], &so_far.stderr[..]),
            (1, &b"one "[..], &b"warn"[..])
        );
        so_far.extend(&[chunk(2, OutputStream::Stdout, 3, b"two")]);
        assert_eq!(
            (so_far.attempt, &so_far.stdout[..], &so_far.stderr[..]),
            (2, &b"two"[..], &b""[..])
        );
        assert_eq!(so_far.next, 3);
        let mut cut = chunk(2, OutputStream::Stderr, 4, b"x");
        cut.truncated = true;
        so_far.extend(&[cut]);
        assert!(so_far.stderr_truncated && !so_far.stdout_truncated);
    }

    #[test]
    fn streams_have_codes() {
        for s in [OutputStream::Stdout, OutputStream::Stderr] {
            assert_eq!(OutputStream::from_code(i64::from(s.code())), Some(s));
        }
        assert_eq!(OutputStream::from_code(0), None);
    }
}
