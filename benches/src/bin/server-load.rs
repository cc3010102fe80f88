//! `orch serve` under load (issue 13), from this machine's loopback only:
//! `GET /runs/{id}` with 100 concurrent clients against a store of 10,000
//! runs (latency percentiles and requests/s, from `wrk`), and 1,000 Server-
//! Sent Event streams held open on one running run (the server's resident
//! memory before, with them open, a while later, and after they ended).
//!
//! `cargo run --release -p orch-benches --bin server-load [-- --quick] [--orch PATH] [--rounds N] [--wrk-threads N]`
//! (`cargo xtask bench` runs it after building the release `orch`). It needs
//! `wrk` (Debian: `apt-get install wrk`); without it the report says so in
//! one line and exits 0. `--quick`: 1,000 runs, 1 round of 3 s of load, 100
//! streams. `--rounds` (default 3): loads of each server, in turns, and
//! their medians. `--wrk-threads` (default 2): wrk's `-t`.
//!
//! Definitions:
//! - the runs are made by the library (a one-step run each, journaled in
//!   the SQLite store `orch serve` then opens), before the server starts;
//! - `wrk -t2 -c100 -d10s --latency` with the bearer token, on the run made
//!   last; its latency is from sending a request to its answer, under the
//!   load of all 100 connections (wrk and the server share this machine's
//!   two cores);
//! - the server's CPU time per request: its user and system time from
//!   `/proc` over the load, divided by the requests `wrk` made (a figure
//!   that depends less on what else the machine runs than latencies do);
//! - memory: `VmRSS` of the `orch serve` process from `/proc`;
//! - the floor: `http-floor` (built beside this program) serving the bytes
//!   of orch's answer from the same HTTP stack with nothing else, under the
//!   same `wrk` load, in turns with orch's: what the machine, `wrk` and
//!   axum cost before orch does any work (a round where both are slow is
//!   the machine's, not orch's);
//! - the medians: of each column over the rounds, on its own.

use orch_benches::run_orch_stored;
use orch_model::{Format, Limits, load_workflow};
use orch_store_sqlite::SqliteStore;
use orch_tasks::ActionRegistry;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How big a load.
struct Sizes {
    runs: usize,
    /// `wrk`'s threads (`-t`).
    wrk_threads: usize,
    /// Loads of each server, in turns.
    rounds: usize,
    seconds: u32,
    clients: usize,
    streams: usize,
}

/// `orch serve` on a free loopback port, and what it printed.
struct Server {
    child: Child,
    addr: String,
    token: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(orch: &Path, dir: &Path) -> Result<Self, String> {
        let log = dir.join("serve.log");
        let child = Command::new(orch)
            .args(["serve", "--bind", "127.0.0.1:0"])
            .current_dir(dir)
            .env("ORCH_HOME", dir.join("home"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).map_err(|e| format!("serve log: {e}"))?)
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", orch.display()))?;
        let mut server = Server {
            child,
            addr: String::new(),
            token: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            for line in text.lines() {
                if let Some(rest) = line.strip_prefix("orch serve: http://") {
                    server.addr = rest.split([' ', '/']).next().unwrap_or("").to_owned();
                }
                if let Some(t) = line.strip_prefix("token: ") {
                    server.token = t.trim().to_owned();
                }
            }
            if !server.addr.is_empty() && !server.token.is_empty() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(format!("orch serve did not start: {text}"));
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("orch serve exited ({status}): {text}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// One request on a new connection; the status and the body.
    fn request(&self, method: &str, path: &str, body: &str) -> Result<(u16, String), String> {
        let mut s = TcpStream::connect(&self.addr).map_err(|e| format!("connect: {e}"))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            self.token,
            body.len()
        )
        .map_err(|e| format!("send: {e}"))?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)
            .map_err(|e| format!("read: {e}"))?;
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = answer
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Ok((status, body))
    }
}

/// Resident memory of process `pid`, KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU time (user and system) process `pid` has used, in µs (`/proc`'s
/// clock ticks, 100 a second on Linux).
fn cpu_us(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command's name (which is in parentheses).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    f.iter().sum::<u64>() * 10_000
}

/// Makes `n` one-step runs in the SQLite store of `home`; the last run's id.
fn seed(home: &Path, n: usize) -> Result<String, String> {
    std::fs::create_dir_all(home).map_err(|e| format!("{}: {e}", home.display()))?;
    let store: Arc<dyn orch_model::Store> = Arc::new(
        SqliteStore::open(&home.join("orch.db")).map_err(|e| format!("open the store: {e}"))?,
    );
    let wf = load_workflow(
        "name: seeded\nsteps:\n  - { name: a, module: core, action: noop }\n",
        Format::Yaml,
        &Limits::default(),
        None,
    )
    .map_err(|e| format!("the seeded workflow: {e:?}"))?;
    let registry = ActionRegistry::with_builtins();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let mut last = String::new();
    for _ in 0..n {
        last = run_orch_stored(&rt, &wf, &registry, store.clone())
            .run_id
            .to_string();
    }
    Ok(last)
}

/// A duration as wrk prints it (`812.00us`, `1.23ms`, `2.00s`), in ms.
fn wrk_ms(text: &str) -> Option<f64> {
    let (num, unit) = text
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|i| text.split_at(i))?;
    let v: f64 = num.parse().ok()?;
    match unit {
        "us" => Some(v / 1000.0),
        "ms" => Some(v),
        "s" => Some(v * 1000.0),
        "m" => Some(v * 60_000.0),
        _ => None,
    }
}

/// How many requests `wrk` made (`N requests in 10.00s, ...`).
fn wrk_requests(out: &str) -> Option<u64> {
    out.lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())
}

/// What `wrk --latency` printed: p50, p90, p99 (ms), requests/s, and the
/// count of answers that were not 2xx/3xx.
fn parse_wrk(out: &str) -> Result<(f64, f64, f64, f64, u64), String> {
    let pct = |p: &str| {
        out.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(p).map(str::trim).and_then(wrk_ms))
            .ok_or_else(|| format!("no {p} latency in wrk's output:\n{out}"))
    };
    let rps = out
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no Requests/sec in wrk's output:\n{out}"))?;
    let bad = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Ok((pct("50%")?, pct("90%")?, pct("99%")?, rps, bad))
}

/// What one `wrk` load gave: p50, p90, p99 (ms), requests/s, requests.
struct Load {
    p50: f64,
    p90: f64,
    p99: f64,
    rps: f64,
    requests: u64,
}

/// `wrk` with `s.clients` connections for `s.seconds` on `url`, with the
/// headers `headers`; an error if any answer was not 2xx.
fn wrk(url: &str, headers: &[String], s: &Sizes) -> Result<Load, String> {
    let mut args = vec![
        format!("-t{}", s.wrk_threads),
        format!("-c{}", s.clients),
        format!("-d{}s", s.seconds),
        "--latency".to_owned(),
    ];
    for h in headers {
        args.push("-H".to_owned());
        args.push(h.clone());
    }
    args.push(url.to_owned());
    let out = Command::new("wrk")
        .args(&args)
        .output()
        .map_err(|e| format!("wrk: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (p50, p90, p99, rps, bad) = parse_wrk(&text)?;
    if bad > 0 {
        return Err(format!("{bad} answers were not 2xx:\n{text}"));
    }
    Ok(Load {
        p50,
        p90,
        p99,
        rps,
        requests: wrk_requests(&text).unwrap_or(0),
    })
}

/// What one server gave over a load: `wrk`'s figures and the server's CPU
/// time per answer (µs), a figure that depends less on what else the
/// machine is doing than latencies do.
struct Round {
    load: Load,
    cpu_per: f64,
}

/// `wrk` on `url` against the process `pid`, with its CPU time measured.
fn round(url: &str, headers: &[String], pid: u32, s: &Sizes) -> Result<Round, String> {
    let before = cpu_us(pid);
    let load = wrk(url, headers, s)?;
    let cpu = cpu_us(pid).saturating_sub(before);
    let cpu_per = if load.requests > 0 {
        cpu as f64 / load.requests as f64
    } else {
        0.0
    };
    Ok(Round { load, cpu_per })
}

/// The report's row for `r` under `label`.
fn row(label: &str, r: &Round) {
    println!(
        "| {label} | {:.2} ms | {:.2} ms | {:.2} ms | {:.0} | {:.1} µs |",
        r.load.p50, r.load.p90, r.load.p99, r.load.rps, r.cpu_per
    );
}

/// The median of each column of `rs` (each on its own).
fn median(rs: &[Round]) -> Round {
    let mid = |f: &dyn Fn(&Round) -> f64| {
        let mut v: Vec<f64> = rs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    Round {
        load: Load {
            p50: mid(&|r| r.load.p50),
            p90: mid(&|r| r.load.p90),
            p99: mid(&|r| r.load.p99),
            rps: mid(&|r| r.load.rps),
            requests: 0,
        },
        cpu_per: mid(&|r| r.cpu_per),
    }
}

fn get_load(
    server: &Server,
    dir: &Path,
    run: &str,
    s: &Sizes,
    floor: Option<&Path>,
) -> Result<(), String> {
    let (status, body) = server.request("GET", &format!("/runs/{run}"), "")?;
    if status != 200 {
        return Err(format!("GET /runs/{run} answered {status}: {body}"));
    }
    let url = format!("http://{}/runs/{run}", server.addr);
    let auth = [format!("Authorization: Bearer {}", server.token)];
    // The same answer's bytes from the bare HTTP stack, under the same
    // load, in turns with orch's (what the machine does meanwhile weighs
    // on both alike).
    let bare = match floor {
        Some(floor) => {
            let body_file = dir.join("answer.json");
            std::fs::write(&body_file, &body)
                .map_err(|e| format!("{}: {e}", body_file.display()))?;
            Some(Floor::start(floor, &body_file)?)
        }
        None => None,
    };
    let what = format!(
        "`GET /runs/{{id}}`, {} runs stored, {} clients, {} s",
        s.runs, s.clients, s.seconds
    );
    let bare_what =
        "the same answer's bytes from the bare HTTP stack (`http-floor`: axum, no store, no token)";
    let (mut mine, mut theirs) = (Vec::new(), Vec::new());
    for i in 1..=s.rounds {
        let r = round(&url, &auth, server.pid(), s)?;
        row(&format!("{what}, round {i}"), &r);
        mine.push(r);
        if let Some(bare) = &bare {
            let r = round(
                &format!("http://{}/runs/{run}", bare.addr),
                &[],
                bare.child.id(),
                s,
            )?;
            row(&format!("{bare_what}, round {i}"), &r);
            theirs.push(r);
        }
    }
    if s.rounds > 1 {
        row(
            &format!("**{what}: median of {} rounds**", s.rounds),
            &median(&mine),
        );
        if !theirs.is_empty() {
            row(
                &format!("{bare_what}: median of {} rounds", s.rounds),
                &median(&theirs),
            );
        }
    }
    Ok(())
}

/// `http-floor` serving a file's bytes on a free loopback port.
struct Floor {
    child: Child,
    addr: String,
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Floor {
    fn start(exe: &Path, body: &Path) -> Result<Self, String> {
        let mut child = Command::new(exe)
            .arg(body)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: {e}", exe.display()))?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        let floor = Floor {
            child,
            addr: line
                .trim()
                .strip_prefix("listening: ")
                .unwrap_or("")
                .to_owned(),
        };
        if floor.addr.is_empty() {
            return Err(format!("http-floor did not start: {line:?}"));
        }
        Ok(floor)
    }
}

/// Opens `n` event streams on a run that waits for the file `go`, reads
/// each one's answer head, holds them, then lets the run end and reads each
/// stream to its end.
fn streams(server: &Server, dir: &Path, n: usize) -> Result<(), String> {
    let def = "name: gate\\nsteps:\\n  - { name: gate, module: shell, action: exec, parameters: { program: sh, args: ['-c', 'while [ ! -e go ]; do sleep 0.05; done'] } }\\n";
    let (status, body) =
        server.request("POST", "/runs", &format!("{{\"definition\": \"{def}\"}}"))?;
    if status != 202 {
        return Err(format!("POST /runs answered {status}: {body}"));
    }
    let id = body
        .split("\"run_id\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .ok_or_else(|| format!("no id in {body}"))?
        .to_owned();
    let before = rss_kib(server.pid());
    let mut open = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let mut s = TcpStream::connect(&server.addr).map_err(|e| format!("connect: {e}"))?;
        write!(
            s,
            "GET /runs/{id}/events/stream HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nAccept: text/event-stream\r\n\r\n",
            server.addr, server.token
        )
        .map_err(|e| format!("send: {e}"))?;
        open.push(s);
    }
    let mut readers = Vec::with_capacity(n);
    for s in open {
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| format!("timeout: {e}"))?;
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).map_err(|e| format!("read: {e}"))?;
        if !line.contains(" 200 ") {
            return Err(format!("a stream answered {line:?}"));
        }
        readers.push(r);
    }
    let opened = start.elapsed();
    let with = rss_kib(server.pid());
    std::thread::sleep(Duration::from_secs(5));
    let later = rss_kib(server.pid());
    std::fs::write(dir.join("go"), b"").map_err(|e| format!("go: {e}"))?;
    let mut ended = 0;
    for mut r in readers {
        let mut rest = Vec::new();
        // A stream ends with the run (event `end`); the connection stays
        // open for the next request, so read up to that event.
        let mut line = String::new();
        while r.read_line(&mut line).map_err(|e| format!("read: {e}"))? > 0 {
            if line.starts_with("event: end") {
                ended += 1;
                break;
            }
            rest.extend_from_slice(line.as_bytes());
            line.clear();
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let after = rss_kib(server.pid());
    if ended != n {
        return Err(format!("{ended} of {n} streams saw the run end"));
    }
    let per = (with.saturating_sub(before)) as f64 / n as f64;
    println!(
        "| {n} event streams open on one running run (opened in {:.2} s) | {} MiB | {} MiB | {} MiB, 5 s later | {} MiB after they ended | {per:.1} KiB a stream |",
        opened.as_secs_f64(),
        before / 1024,
        with / 1024,
        later / 1024,
        after / 1024
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let orch = match args.iter().position(|a| a == "--orch") {
        Some(i) => PathBuf::from(args.get(i + 1).map_or("orch", String::as_str)),
        None => std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("orch")))
            .unwrap_or_else(|| PathBuf::from("orch")),
    };
    // The bare HTTP stack's figures beside orch's, when it was built
    // (`cargo build --release -p orch-benches` builds both).
    let floor = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("http-floor")))
        .filter(|p| p.is_file());
    if floor.is_none() {
        eprintln!("server-load: no http-floor beside this program: the floor's row is left out");
    }
    if Command::new("wrk").arg("--version").output().is_err() {
        println!("server-load: skipped: `wrk` is not installed (Debian: apt-get install wrk)");
        return;
    }
    if !orch.is_file() {
        eprintln!(
            "server-load: no orch binary at {}; build it with `cargo build --release -p orch-cli`, or pass --orch PATH",
            orch.display()
        );
        std::process::exit(2);
    }
    let wrk_threads = args
        .iter()
        .position(|a| a == "--wrk-threads")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(2);
    let rounds = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1)?.parse::<usize>().ok())
        .map(|n| n.max(1));
    let sizes = if quick {
        Sizes {
            runs: 1_000,
            wrk_threads,
            rounds: rounds.unwrap_or(1),
            seconds: 3,
            clients: 100,
            streams: 100,
        }
    } else {
        Sizes {
            runs: 10_000,
            wrk_threads,
            rounds: rounds.unwrap_or(3),
            seconds: 10,
            clients: 100,
            streams: 1_000,
        }
    };
    let dir = std::env::temp_dir().join(format!("orch-server-load-{}", std::process::id()));
    let result = (|| {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let t = Instant::now();
        let run = seed(&dir.join("home"), sizes.runs)?;
        eprintln!(
            "server-load: {} runs made in {:.1} s",
            sizes.runs,
            t.elapsed().as_secs_f64()
        );
        let server = Server::start(&orch, &dir)?;
        println!("| load | p50 | p90 | p99 | requests/s | server CPU per request |");
        println!("|---|---|---|---|---|---|");
        get_load(&server, &dir, &run, &sizes, floor.as_deref())?;
        if std::env::var_os("SERVER_LOAD_NO_STREAMS").is_some() {
            return Ok(());
        }
        println!();
        println!("| streams | server RSS before | with them open | held | after | per stream |");
        println!("|---|---|---|---|---|---|");
        streams(&server, &dir, sizes.streams)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = result {
        eprintln!("server-load: {e}");
        std::process::exit(1);
    }
}
