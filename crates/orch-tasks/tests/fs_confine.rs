//! The `fs.*` actions stay inside the work directory even while someone swaps
//! a directory for a symbolic link to the outside (issue 10, item 2), and
//! `fs.copy` streams (item 9).

mod common;

use common::{Swapper, allowed_failure, names};
use orch_tasks::{Action, ActionContext, ActionError, fs};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const ROUNDS: usize = 1500;
const OUTSIDE_SECRET: &str = "OUTSIDE-SECRET";

struct Setup {
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    work: PathBuf,
    outside: PathBuf,
    ctx: ActionContext,
}

fn setup() -> Setup {
    let w = tempfile::tempdir().expect("work");
    let o = tempfile::tempdir().expect("outside");
    let (work, outside) = (w.path().to_path_buf(), o.path().to_path_buf());
    std::fs::create_dir(work.join("d")).expect("d");
    std::fs::write(work.join("d/secret.txt"), "inside").expect("inside file");
    std::fs::write(work.join("src.txt"), "copied").expect("src");
    std::fs::write(outside.join("secret.txt"), OUTSIDE_SECRET).expect("outside file");
    std::fs::write(outside.join("outside-only.txt"), "").expect("outside marker");
    std::os::unix::fs::symlink(&outside, work.join("lnk")).expect("link");
    let ctx = ActionContext::detached("fs", &work);
    Setup {
        _dirs: (w, o),
        work,
        outside,
        ctx,
    }
}

async fn run(
    action: &dyn Action,
    params: Value,
    ctx: &ActionContext,
) -> Result<Value, ActionError> {
    action.run(params, ctx).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_swapped_for_a_link_never_lets_an_action_out() {
    let s = setup();
    let ctx = &s.ctx;
    let before = names(&s.outside);
    let swapper = Swapper::start(&s.work);
    let mut succeeded = 0usize;
    let mut escapes = Vec::new();
    for i in 0..ROUNDS {
        let results = [
            run(
                &fs::Write,
                json!({"path": format!("d/w{i}.txt"), "content": "x"}),
                ctx,
            )
            .await,
            run(&fs::Mkdir, json!({"path": format!("d/m{i}/n")}), ctx).await,
            run(
                &fs::Copy,
                json!({"from": "src.txt", "to": format!("d/c{i}.txt")}),
                ctx,
            )
            .await,
        ];
        for r in &results {
            match r {
                Ok(_) => succeeded += 1,
                Err(e) => assert!(allowed_failure(e), "{e}"),
            }
        }
        match run(&fs::Read, json!({"path": "d/secret.txt"}), ctx).await {
            Ok(v) if v["content"] == OUTSIDE_SECRET => escapes.push(format!("fs.read round {i}")),
            Ok(_) => succeeded += 1,
            Err(e) => assert!(allowed_failure(&e), "{e}"),
        }
        match run(
            &fs::Copy,
            json!({"from": "d/secret.txt", "to": format!("r{i}.txt")}),
            ctx,
        )
        .await
        {
            Ok(_) => {
                let got = std::fs::read_to_string(s.work.join(format!("r{i}.txt"))).expect("copy");
                if got == OUTSIDE_SECRET {
                    escapes.push(format!("fs.copy from round {i}"));
                }
            }
            Err(e) => assert!(allowed_failure(&e), "{e}"),
        }
        match run(&fs::List, json!({"path": "d"}), ctx).await {
            Ok(v) => {
                let listed = v["entries"].as_array().cloned().unwrap_or_default();
                if listed.iter().any(|e| e["name"] == "outside-only.txt") {
                    escapes.push(format!("fs.list round {i}"));
                }
            }
            Err(e) => assert!(allowed_failure(&e), "{e}"),
        }
    }
    let swaps = swapper.stop();
    let after = names(&s.outside);
    assert_eq!(
        before, after,
        "files landed outside the work directory ({swaps} swaps)"
    );
    assert_eq!(
        std::fs::read_to_string(s.outside.join("secret.txt")).expect("secret"),
        OUTSIDE_SECRET
    );
    assert!(escapes.is_empty(), "read from outside: {escapes:?}");
    assert!(
        succeeded > 0,
        "no action succeeded, so the race was not exercised"
    );
}

#[tokio::test]
async fn links_and_escapes_are_refused_with_permission_denied() {
    let s = setup();
    let ctx = &s.ctx;
    for (action, params) in [
        (
            &fs::Write as &dyn Action,
            json!({"path": "lnk/x", "content": "x"}),
        ),
        (&fs::Write, json!({"path": "/tmp/x", "content": "x"})),
        (&fs::Write, json!({"path": "d/../../x", "content": "x"})),
        (&fs::Mkdir, json!({"path": "lnk/sub"})),
        (&fs::Read, json!({"path": "lnk/secret.txt"})),
        (&fs::Copy, json!({"from": "lnk/secret.txt", "to": "x.txt"})),
        (&fs::Copy, json!({"from": "src.txt", "to": "lnk/x.txt"})),
        (&fs::List, json!({"path": "lnk"})),
    ] {
        let e = run(action, params.clone(), ctx)
            .await
            .expect_err(&params.to_string());
        assert_eq!(e.error_type, "PermissionDenied", "{params}: {e}");
        assert!(!e.retryable, "{params}");
    }
    assert_eq!(
        names(&s.outside),
        BTreeSet::from(["outside-only.txt".to_owned(), "secret.txt".to_owned()])
    );
}

#[tokio::test]
async fn writing_the_work_directory_itself_fails_and_leaves_its_parent_alone() {
    let parent = tempfile::tempdir().expect("parent");
    let work = parent.path().join("work");
    std::fs::create_dir(&work).expect("work");
    let ctx = ActionContext::detached("fs", &work);
    for path in [".", "./", "a/.."] {
        let e = run(&fs::Write, json!({"path": path, "content": "x"}), &ctx)
            .await
            .expect_err(path);
        assert_ne!(e.error_type, "IoError", "{path}: {e}");
        if path != "a/.." {
            assert_eq!(e.error_type, "InvalidParameters", "{path}: {e}");
            assert!(e.message.contains("names the work directory itself"), "{e}");
        }
    }
    let e = run(&fs::Copy, json!({"from": "x", "to": "."}), &ctx)
        .await
        .expect_err("copy to .");
    assert!(
        e.error_type == "IoError" || e.error_type == "InvalidParameters",
        "{e}"
    );
    assert_eq!(names(parent.path()), BTreeSet::from(["work".to_owned()]));
    assert!(names(&work).is_empty());
}

#[tokio::test]
async fn hard_links_and_special_files_are_not_read() {
    let s = setup();
    let ctx = &s.ctx;
    std::fs::hard_link(s.outside.join("secret.txt"), s.work.join("hl.txt")).expect("hard link");
    for (action, params) in [
        (&fs::Read as &dyn Action, json!({"path": "hl.txt"})),
        (&fs::Copy, json!({"from": "hl.txt", "to": "out.txt"})),
    ] {
        let e = run(action, params.clone(), ctx)
            .await
            .expect_err(&params.to_string());
        assert_eq!(e.error_type, "PermissionDenied", "{e}");
        assert!(e.message.contains("hard links"), "{e}");
    }
    assert!(!s.work.join("out.txt").exists());
    // A FIFO with no writer would block an open for reading: refused at once instead.
    rustix::fs::mknodat(
        rustix::fs::CWD,
        s.work.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .expect("mkfifo");
    let e = run(&fs::Read, json!({"path": "fifo"}), ctx)
        .await
        .expect_err("fifo");
    assert!(e.message.contains("not a regular file"), "{e}");
    let e = run(&fs::Read, json!({"path": "d"}), ctx)
        .await
        .expect_err("dir");
    assert!(e.message.contains("directory, not a regular file"), "{e}");
}

#[tokio::test]
async fn a_large_file_is_copied_whole() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = ActionContext::detached("fs", dir.path());
    const SIZE: usize = 64 * 1024 * 1024;
    {
        let mut f =
            std::io::BufWriter::new(std::fs::File::create(dir.path().join("big")).expect("big"));
        let mut block = vec![0u8; 1 << 16];
        let mut x: u32 = 0x1234_5678;
        for _ in 0..SIZE / block.len() {
            for b in &mut block {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x.to_le_bytes()[0];
            }
            f.write_all(&block).expect("write");
        }
        f.flush().expect("flush");
    }
    let out = run(&fs::Copy, json!({"from": "big", "to": "sub/copy"}), &ctx)
        .await
        .expect("copied");
    assert_eq!(out["bytes"], SIZE);
    let hash = |p: &Path| {
        let mut h = blake3::Hasher::new();
        h.update_reader(std::fs::File::open(p).expect("open"))
            .expect("hash");
        h.finalize()
    };
    assert_eq!(
        hash(&dir.path().join("big")),
        hash(&dir.path().join("sub/copy"))
    );
    // No temporary file is left behind.
    assert_eq!(
        names(&dir.path().join("sub")),
        BTreeSet::from(["copy".to_owned()])
    );
}

#[tokio::test]
async fn existing_behaviour_holds() {
    let s = setup();
    let ctx = &s.ctx;
    let w = run(
        &fs::Write,
        json!({"path": "a/b/c.json", "content": {"k": 1}}),
        ctx,
    )
    .await
    .expect("write");
    assert_eq!(w["path"], "a/b/c.json");
    let r = run(
        &fs::Read,
        json!({"path": "a/b/c.json", "parse": "json"}),
        ctx,
    )
    .await
    .expect("read");
    assert_eq!(r["data"], json!({"k": 1}));
    let m = run(&fs::Mkdir, json!({"path": "a/b"}), ctx)
        .await
        .expect("mkdir");
    assert_eq!(m["created"], false);
    let m = run(&fs::Mkdir, json!({"path": "a/x/y"}), ctx)
        .await
        .expect("mkdir");
    assert_eq!(m["created"], true);
    let l = run(&fs::List, json!({}), ctx).await.expect("list");
    let listed: Vec<(String, String)> = l["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or_default().to_owned(),
                e["kind"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("a", "dir"),
            ("d", "dir"),
            ("lnk", "symlink"),
            ("src.txt", "file")
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    let e = run(&fs::Read, json!({"path": "missing.txt"}), ctx)
        .await
        .expect_err("missing");
    assert_eq!(e.error_type, "IoError");
    assert!(!e.retryable && e.message.contains("missing.txt"), "{e}");
    let e = run(&fs::Write, json!({"path": "src.txt/x", "content": ""}), ctx)
        .await
        .expect_err("through a file");
    assert!(e.message.contains("not a directory"), "{e}");
    let e = run(&fs::Write, json!({"path": "", "content": ""}), ctx)
        .await
        .expect_err("empty");
    assert_eq!(e.error_type, "InvalidParameters");
}
