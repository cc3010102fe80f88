//! A step's output kept while it is produced: the capture of a process's
//! stdout and stderr cuts it into chunks (`LiveStream`), and one writer
//! per run (or per worker) sends every chunk waiting to the store in one
//! call ([`OutputWriter`]), so that a running step's output can be read.
//!
//! A chunk is cut when [`CHUNK_BYTES`] have gathered, or [`FLUSH_INTERVAL`]
//! after its first byte, whichever comes first; a cut never splits a UTF-8
//! character (a partial one waits for the rest), except at the end of the
//! stream. Each stream keeps at most the run's output limit per attempt,
//! as the step's result does: the chunk that reaches it is marked
//! `truncated` and nothing of the stream is kept after it. A step that
//! prints nothing sends nothing, and a run without output has no writer
//! task at all (it starts with the first chunk). Before a step's attempt
//! returns, its chunks are written (`OutputWriter::flush`), so that a
//! reader who sees the step ended has seen all of its output. A failed
//! write is logged and its chunks dropped: live output is a view, and the
//! step's result still holds its output.

use orch_model::store::{CHUNK_BYTES, FLUSH_INTERVAL, OutputChunk, OutputStream};
use orch_model::{RunId, Store};
use std::sync::{Arc, OnceLock};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Most messages (chunks and flushes) taken for one write.
const BATCH: usize = 256;

enum Msg {
    Chunk(OutputChunk),
    /// Answered once every chunk sent before it is written.
    Flush(oneshot::Sender<()>),
}

struct Inner {
    store: Arc<dyn Store>,
    /// The writer task's queue, made with the first message.
    tx: OnceLock<Option<mpsc::UnboundedSender<Msg>>>,
}

/// Writes steps' output chunks to a store in batches: every chunk waiting
/// when a write starts goes in that write (one call of
/// [`Store::append_output`]). Cheap to clone; its task ends when the last
/// clone is dropped.
#[derive(Clone)]
pub struct OutputWriter {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for OutputWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputWriter")
            .field("store", &self.inner.store.backend())
            .finish_non_exhaustive()
    }
}

impl OutputWriter {
    /// A writer to `store`, or `None` when the store does not keep output
    /// (its [`Store::output_store`] is `None`).
    pub fn for_store(store: &Arc<dyn Store>) -> Option<Self> {
        store.output_store()?;
        Some(Self {
            inner: Arc::new(Inner {
                store: store.clone(),
                tx: OnceLock::new(),
            }),
        })
    }

    /// Where the output of step `task` of `run` goes, for the attempt the
    /// store numbers `attempt` (a retry within it is `attempt + 1`, ...).
    pub fn step(&self, run: RunId, task: u32, attempt: u32) -> StepOutput {
        StepOutput {
            writer: self.clone(),
            run,
            task,
            attempt: attempt.max(1),
        }
    }

    /// The writer task's queue (started on first use); `None` outside a
    /// Tokio runtime, where output is only kept in the result.
    fn queue(&self) -> Option<&mpsc::UnboundedSender<Msg>> {
        self.inner
            .tx
            .get_or_init(|| {
                let rt = tokio::runtime::Handle::try_current().ok()?;
                let (tx, rx) = mpsc::unbounded_channel();
                rt.spawn(write(self.inner.store.clone(), rx));
                Some(tx)
            })
            .as_ref()
    }

    fn send(&self, chunk: OutputChunk) {
        if let Some(q) = self.queue() {
            let _ = q.send(Msg::Chunk(chunk));
        }
    }

    /// Waits until every chunk sent before this call is written (or failed).
    pub async fn flush(&self) {
        let Some(q) = self.queue() else { return };
        let (tx, rx) = oneshot::channel();
        if q.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// The writer task: everything queued, one write at a time.
async fn write(store: Arc<dyn Store>, mut rx: mpsc::UnboundedReceiver<Msg>) {
    let mut msgs = Vec::new();
    while rx.recv_many(&mut msgs, BATCH).await > 0 {
        let mut chunks = Vec::new();
        let mut waiting = Vec::new();
        for m in msgs.drain(..) {
            match m {
                Msg::Chunk(c) => chunks.push(c),
                Msg::Flush(w) => waiting.push(w),
            }
        }
        if !chunks.is_empty() {
            let n = chunks.len();
            if let Err(e) = store.append_output(chunks).await {
                tracing::warn!(chunks = n, error = %e, "a step's live output could not be stored");
            }
        }
        for w in waiting {
            let _ = w.send(());
        }
    }
}

/// Where one step's output goes (`ActionContext::output`).
#[derive(Clone, Debug)]
pub struct StepOutput {
    writer: OutputWriter,
    run: RunId,
    task: u32,
    attempt: u32,
}

impl StepOutput {
    /// The chunker of one stream of the action's `try_`-th try (1 for the
    /// first; `ActionContext::attempt`).
    pub(crate) fn live(&self, stream: OutputStream, try_: u32) -> LiveStream {
        LiveStream {
            out: self.clone(),
            attempt: self.attempt + try_.saturating_sub(1),
            stream,
            pending: Vec::new(),
            since: None,
            sent: false,
            done: false,
        }
    }

    /// Waits until what this step's streams sent is written.
    pub(crate) async fn flush(&self) {
        self.writer.flush().await;
    }
}

/// One stream of a running process, cut into chunks.
pub(crate) struct LiveStream {
    out: StepOutput,
    attempt: u32,
    stream: OutputStream,
    pending: Vec<u8>,
    /// When the oldest pending byte arrived.
    since: Option<Instant>,
    /// Whether a chunk was sent.
    pub(crate) sent: bool,
    /// The stream reached its limit: nothing more is kept.
    done: bool,
}

impl LiveStream {
    /// When the pending bytes must be sent, if there are any.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.since.map(|t| t + FLUSH_INTERVAL)
    }

    /// Takes bytes the process wrote (within the limit).
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        if self.done || bytes.is_empty() {
            return;
        }
        if self.pending.is_empty() {
            self.since = Some(Instant::now());
        }
        self.pending.extend_from_slice(bytes);
        while self.pending.len() >= CHUNK_BYTES {
            let cut = char_boundary(&self.pending[..CHUNK_BYTES]);
            self.cut(cut, false);
        }
    }

    /// Sends what is pending (the flush interval passed), keeping back a
    /// partial character.
    pub(crate) fn tick(&mut self) {
        let cut = char_boundary(&self.pending);
        self.cut(cut, false);
        // A partial character waits for the rest, on a fresh interval.
        self.since = (!self.pending.is_empty()).then(Instant::now);
    }

    /// Sends what is left: the stream ended, or reached the limit
    /// (`truncated`: the chunk says so, even if it is empty).
    pub(crate) fn finish(&mut self, truncated: bool) {
        if self.done {
            return;
        }
        if truncated || !self.pending.is_empty() {
            let n = self.pending.len();
            self.cut(n, truncated);
        }
        self.done = true;
        self.since = None;
    }

    fn cut(&mut self, n: usize, truncated: bool) {
        if n == 0 && !truncated {
            return;
        }
        let data: Vec<u8> = self.pending.drain(..n).collect();
        self.out.writer.send(OutputChunk {
            run: self.out.run,
            task: self.out.task,
            attempt: self.attempt,
            stream: self.stream,
            seq: 0,
            data,
            truncated,
            at: chrono::Utc::now(),
        });
        self.sent = true;
        if self.pending.is_empty() {
            self.since = None;
        }
    }
}

/// The longest prefix of `bytes` that does not end inside a UTF-8
/// character (bytes that are not UTF-8 are not held back).
fn char_boundary(bytes: &[u8]) -> usize {
    let n = bytes.len();
    // A character takes at most 4 bytes: look at the last 3 for its start.
    for back in 1..=3.min(n) {
        let b = bytes[n - back];
        if b & 0xc0 == 0x80 {
            // A continuation byte: its start is further back.
            continue;
        }
        let len = match b {
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => 1,
        };
        return if len > back { n - back } else { n };
    }
    n
}

#[cfg(test)]
mod tests {
    use super::char_boundary;

    #[test]
    fn a_cut_never_splits_a_character() {
        let s = "aé€😀".as_bytes();
        // Whole: nothing held back.
        assert_eq!(char_boundary(s), s.len());
        // Inside the 4-byte character: back to its start.
        for cut in 7..s.len() {
            assert_eq!(char_boundary(&s[..cut]), 6, "cut at {cut}");
        }
        // Inside "€" (bytes 3..6).
        assert_eq!(char_boundary(&s[..4]), 3);
        assert_eq!(char_boundary(&s[..5]), 3);
        // Bytes that are not UTF-8 are not held back.
        assert_eq!(char_boundary(&[0xff, 0x80, 0x80, 0x80]), 4);
        assert_eq!(char_boundary(b""), 0);
    }
}
