//! Checks of the output concern: a step's output kept in chunks while it is produced.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::store::{OutputChunk, OutputStream};

/// A chunk of task `task` of `run` (its `seq` is the store's to give).
fn chunk(run: RunId, task: u32, stream: OutputStream, data: &[u8]) -> OutputChunk {
    OutputChunk {
        run,
        task,
        attempt: 1,
        stream,
        seq: 0,
        data: data.to_vec(),
        truncated: false,
        at: at(1),
    }
}

/// For a store without output: both calls are `Unsupported`.
async fn output_is_unsupported(store: &dyn Store) {
    let id = RunId::new();
    store.create_run(diamond(id), t0()).await.expect("create");
    expect_unsupported(
        store,
        Concern::Output,
        "append_output",
        store
            .append_output(vec![chunk(id, 0, OutputStream::Stdout, b"x")])
            .await,
    );
    expect_unsupported(
        store,
        Concern::Output,
        "output",
        store.output(id, 0, 0, 10).await,
    );
    assert!(
        store.output_store().is_none(),
        "capabilities.output is false, so output_store() is None"
    );
}

/// The data a step's chunks hold, in order, with their numbers.
async fn read(store: &dyn Store, run: RunId, task: u32, after: u64) -> Vec<(u64, Vec<u8>)> {
    store
        .output(run, task, after, 1000)
        .await
        .expect("output")
        .into_iter()
        .map(|c| (c.seq, c.data))
        .collect()
}

/// Chunks are numbered per step from 1 in append order (across streams
/// and calls, whatever else the batch holds), and read after a cursor.
pub async fn output_chunks_are_numbered_per_step(store: &dyn Store) {
    if !store.capabilities().output {
        return output_is_unsupported(store).await;
    }
    assert!(
        store.output_store().is_some(),
        "capabilities.output and output_store()"
    );
    let (r1, r2) = (RunId::new(), RunId::new());
    store.create_run(diamond(r1), t0()).await.expect("create");
    store.create_run(diamond(r2), t0()).await.expect("create");
    assert!(
        store.output(r1, 0, 0, 10).await.expect("output").is_empty(),
        "no chunk yet"
    );
    store
        .append_output(Vec::new())
        .await
        .expect("an empty batch");
    store
        .append_output(vec![
            chunk(r1, 0, OutputStream::Stdout, b"a1"),
            chunk(r1, 1, OutputStream::Stdout, b"b1"),
            chunk(r1, 0, OutputStream::Stderr, b"a2"),
            chunk(r2, 0, OutputStream::Stdout, b"other run"),
        ])
        .await
        .expect("append");
    store
        .append_output(vec![chunk(r1, 0, OutputStream::Stdout, b"a3")])
        .await
        .expect("append");
    assert_eq!(
        read(store, r1, 0, 0).await,
        vec![
            (1, b"a1".to_vec()),
            (2, b"a2".to_vec()),
            (3, b"a3".to_vec())
        ],
        "a step's chunks are numbered 1, 2, 3 in append order"
    );
    assert_eq!(read(store, r1, 1, 0).await, vec![(1, b"b1".to_vec())]);
    assert_eq!(
        read(store, r2, 0, 0).await,
        vec![(1, b"other run".to_vec())]
    );
    assert_eq!(
        read(store, r1, 0, 1).await,
        vec![(2, b"a2".to_vec()), (3, b"a3".to_vec())],
        "only chunks after the cursor"
    );
    assert!(
        read(store, r1, 0, 3).await.is_empty(),
        "nothing after the last"
    );
    assert!(
        read(store, r1, 2, 0).await.is_empty(),
        "a step without output"
    );
    let first = store.output(r1, 0, 0, 2).await.expect("output");
    assert_eq!(
        first.iter().map(|c| c.seq).collect::<Vec<_>>(),
        vec![1, 2],
        "at most `limit` chunks, the first ones"
    );
}

/// A chunk comes back as it went in: its bytes exactly (not UTF-8, NUL,
/// a whole [`CHUNK_BYTES`](crate::store::CHUNK_BYTES)), its stream,
/// attempt, truncation mark and time.
pub async fn output_chunks_keep_their_bytes(store: &dyn Store) {
    if !store.capabilities().output {
        return output_is_unsupported(store).await;
    }
    let id = RunId::new();
    store.create_run(diamond(id), t0()).await.expect("create");
    let odd: Vec<u8> = vec![0, 0xff, 0xfe, b'\n', 0xc3, 0x28, 0x1b, b'[', b'm'];
    let big: Vec<u8> = (0..crate::store::CHUNK_BYTES)
        .map(|i| (i % 251) as u8)
        .collect();
    let mut last = chunk(id, 3, OutputStream::Stderr, b"end");
    last.attempt = 2;
    last.truncated = true;
    last.at = at(7);
    store
        .append_output(vec![
            chunk(id, 3, OutputStream::Stdout, &odd),
            chunk(id, 3, OutputStream::Stdout, &big),
            last,
        ])
        .await
        .expect("append");
    let got = store.output(id, 3, 0, 10).await.expect("output");
    assert_eq!(got.len(), 3);
    assert_eq!(
        got[0].data, odd,
        "bytes that are not UTF-8 are kept as they are"
    );
    assert_eq!(got[1].data, big, "a whole chunk is kept");
    let c = &got[2];
    assert_eq!(
        (
            c.run,
            c.task,
            c.attempt,
            c.stream,
            c.seq,
            c.truncated,
            c.at,
            &c.data[..]
        ),
        (id, 3, 2, OutputStream::Stderr, 3, true, at(7), &b"end"[..]),
        "every field round-trips"
    );
    assert_eq!(
        (got[0].attempt, got[0].stream, got[0].truncated),
        (1, OutputStream::Stdout, false)
    );
}

/// A chunk of a run or step the store does not have fails the whole call
/// with `NotFound`, and nothing of it is kept.
pub async fn output_of_an_unknown_step_is_refused(store: &dyn Store) {
    if !store.capabilities().output {
        return output_is_unsupported(store).await;
    }
    let id = RunId::new();
    store.create_run(diamond(id), t0()).await.expect("create");
    for bad in [
        chunk(RunId::new(), 0, OutputStream::Stdout, b"no such run"),
        chunk(id, 99, OutputStream::Stdout, b"no such step"),
    ] {
        let r = store
            .append_output(vec![chunk(id, 0, OutputStream::Stdout, b"fine"), bad])
            .await;
        assert!(
            matches!(r, Err(OrchestrationError::NotFound { .. })),
            "a chunk of an unknown run or step is NotFound, not {r:?}"
        );
    }
    assert!(
        read(store, id, 0, 0).await.is_empty(),
        "nothing of a refused batch is kept"
    );
    store
        .append_output(vec![chunk(id, 0, OutputStream::Stdout, b"fine")])
        .await
        .expect("append");
    assert_eq!(
        read(store, id, 0, 0).await,
        vec![(1, b"fine".to_vec())],
        "numbering starts at 1 after a refused batch"
    );
}

/// Appending output changes nothing of the step (state, attempt, result),
/// and a step's chunks stay readable after it ended, beside its result.
pub async fn output_leaves_the_step_alone(store: &dyn Store) {
    if !store.capabilities().output {
        return output_is_unsupported(store).await;
    }
    let id = RunId::new();
    store.create_run(diamond(id), t0()).await.expect("create");
    let attempts = store
        .start_tasks(id, &[0], "local", LEASE, at(1))
        .await
        .expect("start a");
    let before = store.tasks(id).await.expect("tasks");
    let mut c = chunk(id, 0, OutputStream::Stdout, b"working\n");
    c.attempt = attempts[0];
    store.append_output(vec![c]).await.expect("append");
    assert_eq!(
        store.tasks(id).await.expect("tasks"),
        before,
        "appending output changes no task"
    );
    store
        .finish_tasks(
            id,
            vec![Finished {
                index: 0,
                attempt: attempts[0],
                retries: 0,
                outcome: ok(json!({"stdout": "working\n"})),
            }],
            at(2),
        )
        .await
        .expect("finish a");
    let a = &store.tasks(id).await.expect("tasks")[0];
    assert_eq!(a.status, TaskStatus::Completed);
    assert_eq!(
        a.result.as_ref().map(|r| r.data.clone()),
        Some(json!({"stdout": "working\n"})),
        "the result keeps the final output"
    );
    assert_eq!(
        read(store, id, 0, 0).await,
        vec![(1, b"working\n".to_vec())],
        "chunks stay after the step ended"
    );
}
