//! Steps' output chunks on SQLite: a read-only store (what `orch logs`
//! opens) reads the chunks another store writes, as they are written.

mod common;

use common::{rt, run};
use orch_model::store::{OutputChunk, OutputStream};
use orch_model::{RunId, Store};
use orch_store_sqlite::{SqliteOptions, SqliteStore};

fn chunk(run: RunId, data: &[u8]) -> OutputChunk {
    OutputChunk {
        run,
        task: 0,
        attempt: 1,
        stream: OutputStream::Stdout,
        seq: 0,
        data: data.to_vec(),
        truncated: false,
        at: chrono::Utc::now(),
    }
}

#[test]
fn a_read_only_store_follows_the_output_another_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("orch.db");
    let writer = SqliteStore::open(&path).expect("open");
    let id = RunId::new();
    let rt = rt();
    rt.block_on(writer.create_run(run(id), chrono::Utc::now()))
        .expect("create");
    let reader =
        SqliteStore::open_with(&path, SqliteOptions::default().read_only()).expect("open ro");
    assert!(
        rt.block_on(reader.output(id, 0, 0, 10))
            .expect("output")
            .is_empty()
    );
    rt.block_on(writer.append_output(vec![chunk(id, b"one\n")]))
        .expect("append");
    let first = rt.block_on(reader.output(id, 0, 0, 10)).expect("output");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].data, b"one\n");
    rt.block_on(writer.append_output(vec![chunk(id, b"two\n")]))
        .expect("append");
    let next = rt
        .block_on(reader.output(id, 0, first[0].seq, 10))
        .expect("output");
    assert_eq!(
        next.iter()
            .map(|c| (c.seq, &c.data[..]))
            .collect::<Vec<_>>(),
        vec![(2, &b"two\n"[..])],
        "what was written since the cursor"
    );
    assert!(
        rt.block_on(reader.append_output(vec![chunk(id, b"x")]))
            .is_err(),
        "a read-only store writes nothing"
    );
    assert!(
        rt.block_on(reader.output(RunId::new(), 0, 0, 10))
            .expect("output")
            .is_empty(),
        "an unknown run has no output"
    );
}
