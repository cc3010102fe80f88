//! Secrets through the binary: a value read from the environment and one from a 0600 file reach the step that declares them as environment variables (its `/proc/PID/environ`), appear in no process's command line while it runs, in nothing orch prints, and in no file under `$ORCH_HOME` (the SQLite database, its WAL and everything else) after the run; a file others may read and a `${secrets.X}` reference are refused.

mod common;

use common::{orch_cmd, run};
use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

const TOKEN: &str = "tok-8f3a91c2-Secret/Value+1";
const PASSWORD: &str = "pw:Zq7!correct-horse-battery";

const FLOW: &str = r#"
name: deploy
secrets:
  API_TOKEN: { env: DEPLOY_TOKEN }
  DB_PASSWORD: { file: db-password }
steps:
  - name: use_them
    module: shell
    action: script
    secrets: [API_TOKEN, DB_PASSWORD]
    parameters:
      script: |
        echo $$ > pid
        printf 'token=%s db=%s\n' "$API_TOKEN" "$DB_PASSWORD"
        printf '%s' "$API_TOKEN" | base64
        printf 'oops %s\n' "$DB_PASSWORD" >&2
        while [ ! -e go ]; do sleep 0.02; done
  - name: blind
    module: shell
    action: script
    dependencies: [use_them]
    parameters:
      script: 'echo "token [$${API_TOKEN:-}] source [$${DEPLOY_TOKEN:-}]"'
  - name: fail
    module: shell
    action: exec
    secrets: [API_TOKEN]
    dependencies: [blind]
    parameters: { program: sh, args: ["-c", "echo \"bad $API_TOKEN\" >&2; exit 1"] }
"#;

/// Against hangs only: nothing is timed.
const PATIENCE: Duration = Duration::from_secs(120);

fn base64(v: &str) -> String {
    let out = std::process::Command::new("base64")
        .arg("-w0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(v.as_bytes())?;
            c.wait_with_output()
        })
        .expect("base64 runs");
    String::from_utf8(out.stdout).expect("ASCII")
}

/// The forms that must not appear anywhere.
fn forbidden() -> Vec<String> {
    vec![
        TOKEN.to_owned(),
        PASSWORD.to_owned(),
        base64(TOKEN),
        base64(PASSWORD),
    ]
}

fn assert_clean(what: &str, bytes: &[u8]) {
    for f in forbidden() {
        assert!(
            !bytes.windows(f.len()).any(|w| w == f.as_bytes()),
            "{what} holds `{f}`"
        );
    }
}

fn private_file(dir: &Path, name: &str, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Every file under `dir`, recursively.
fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// The command line of every process we may read, as `ps` would show it.
fn every_command_line() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc") {
        let Ok(e) = e else { continue };
        let name = e.file_name().to_string_lossy().into_owned();
        if name.chars().all(|c| c.is_ascii_digit()) {
            if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
                out.push((name, c));
            }
        }
    }
    out
}

#[test]
fn a_secret_is_in_no_command_line_output_or_file_of_the_home() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    std::fs::write(d.join("flow.yaml"), FLOW).expect("flow");
    private_file(d, "db-password", &format!("{PASSWORD}\n"), 0o600);
    let mut child = orch_cmd(d)
        .args(["run", "flow.yaml"])
        .env("DEPLOY_TOKEN", TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("orch starts");
    let mut out_pipe = child.stdout.take().expect("stdout");
    let mut err_pipe = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out_pipe.read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err_pipe.read_to_end(&mut s);
        s
    });
    // The step writes its pid, then waits for `go`: read its process while it runs.
    let deadline = Instant::now() + PATIENCE;
    let pid = loop {
        if let Some(p) = std::fs::read_to_string(d.join("pid"))
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
        {
            break p;
        }
        assert!(Instant::now() < deadline, "the step never started");
        std::thread::sleep(Duration::from_millis(10));
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("the step's cmdline");
    assert!(!cmdline.is_empty(), "the step is running");
    assert_clean("the step's command line", &cmdline);
    for (p, c) in every_command_line() {
        assert_clean(&format!("the command line of process {p}"), &c);
    }
    // The mechanism: the declared secrets are in the step's environment, and
    // the variable a secret was read from is not passed on.
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("the step's environ");
    let vars: Vec<&[u8]> = environ.split(|&b| b == 0).collect();
    assert!(vars.contains(&format!("API_TOKEN={TOKEN}").as_bytes()));
    assert!(vars.contains(&format!("DB_PASSWORD={PASSWORD}").as_bytes()));
    assert!(!vars.iter().any(|v| v.starts_with(b"DEPLOY_TOKEN=")));
    std::fs::write(d.join("go"), b"").expect("go");
    let status = child.wait().expect("orch ends");
    let stdout = out_reader.join().expect("stdout");
    let stderr = err_reader.join().expect("stderr");
    assert_eq!(
        status.code(),
        Some(1),
        "`fail` fails: {}",
        String::from_utf8_lossy(&stderr)
    );
    assert_clean("orch run's stdout", &stdout);
    assert_clean("orch run's stderr", &stderr);

    let (code, list, _) = run(d, &["runs", "list", "--json"]);
    assert_eq!(code, 0);
    let runs: serde_json::Value = serde_json::from_str(&list).expect("JSON");
    let id = runs[0]["run_id"].as_str().expect("a run id").to_owned();
    let (_, show, _) = run(d, &["runs", "show", &id, "--json"]);
    assert_clean("runs show --json", show.as_bytes());
    let shown: serde_json::Value = serde_json::from_str(&show).expect("JSON");
    let task = |n: usize| &shown["tasks"][n]["result"]["data"];
    assert_eq!(task(0)["stdout"], "token=*** db=***\n***\n");
    assert_eq!(task(0)["stderr"], "oops ***\n");
    assert_eq!(
        task(1)["stdout"],
        "token [] source []\n",
        "undeclared: not passed on"
    );
    assert_eq!(task(2)["stderr"], "bad ***\n");
    for step in ["use_them", "blind", "fail"] {
        for raw in [false, true] {
            let mut args = vec!["logs", id.as_str(), step];
            if raw {
                args.push("--raw");
            }
            let (_, o, e) = run(d, &args);
            assert_clean("orch logs", o.as_bytes());
            assert_clean("orch logs", e.as_bytes());
        }
    }
    let (_, events, _) = run(d, &["runs", "show", &id]);
    assert_clean("runs show", events.as_bytes());

    // Every file of the home: the SQLite database and its WAL included.
    let mut all = Vec::new();
    files(&d.join(".orch"), &mut all);
    assert!(
        all.iter().any(|p| p.ends_with("orch.db")),
        "the store is under the home: {all:?}"
    );
    for f in &all {
        let bytes = std::fs::read(f).expect("readable");
        assert_clean(&f.display().to_string(), &bytes);
    }
}

#[test]
fn a_secret_file_others_may_read_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    std::fs::write(d.join("flow.yaml"), FLOW).expect("flow");
    private_file(d, "db-password", PASSWORD, 0o644);
    let out = orch_cmd(d)
        .args(["run", "flow.yaml"])
        .env("DEPLOY_TOKEN", TOKEN)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("secret `DB_PASSWORD`")
            && stderr.contains("mode 0644")
            && stderr.contains("chmod 600"),
        "{stderr}"
    );
    assert_clean("the refusal", &out.stderr);
    assert!(!d.join("pid").exists(), "nothing ran");
    let (_, list, _) = run(d, &["runs", "list", "--json"]);
    assert_eq!(list.trim(), "[]", "nothing was recorded");
    // An unset variable: said so, with how to set it.
    private_file(d, "db-password", PASSWORD, 0o600);
    let out = orch_cmd(d)
        .args(["run", "flow.yaml"])
        .env_remove("DEPLOY_TOKEN")
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("`DEPLOY_TOKEN`, which is not set"),
        "{stderr}"
    );
}

#[test]
fn a_secret_reference_is_a_validation_error_at_its_line_and_column() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    let text = "name: w\nsecrets:\n  API_TOKEN: { env: DEPLOY_TOKEN }\nsteps:\n  - name: call\n    module: shell\n    action: exec\n    parameters:\n      program: curl\n      args: [\"-H\", \"Authorization: Bearer ${secrets.API_TOKEN}\"]\n";
    std::fs::write(d.join("w.yaml"), text).expect("write");
    let (code, out, err) = run(d, &["validate", "w.yaml"]);
    assert_eq!(code, 2, "{out}{err}");
    let all = format!("{out}{err}");
    assert!(
        all.contains("w.yaml:10:") && all.contains("secrets: [API_TOKEN]"),
        "{all}"
    );
}
