//! Step processes: how they are started, marked and found again.
//!
//! Every process an action starts (`shell.exec`, `shell.script`, external
//! modules) is
//!
//! - **spawned from one dedicated thread** that lives as long as the orch
//!   process. `PR_SET_PDEATHSIG` fires when the *thread* that forked the
//!   child exits, not the process; tokio's worker threads can retire (a
//!   worker that calls `block_in_place` becomes a blocking-pool thread that
//!   exits after 10 s idle), which would kill a step that is still running.
//!   Rule: never spawn a step process from a thread that can exit before the
//!   step ends; `spawn` (crate-private) takes care of it.
//! - **tied to orch's life** (Linux): the child asks for SIGKILL when its
//!   parent dies (`PR_SET_PDEATHSIG`), and exits at once if orch died before
//!   it could ask. This reaches only the direct child.
//! - **marked** with environment variables ([`ENV_RUN_ID`], [`ENV_STEP`],
//!   [`ENV_ATTEMPT`], [`ENV_OWNER`], [`ENV_TOKEN`]) that its descendants
//!   inherit, also those that leave the step's process group or session
//!   (`setsid`). Stopping a step signals its process group *and* every
//!   process of the same user whose `/proc/PID/environ` carries the step's
//!   token; `orch resume` first kills every process marked with the dead
//!   owner of the run it takes over. A process that clears its environment
//!   (`env -i`) escapes the marker; its process group still catches it while
//!   it stays in the group.

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use orch_model::RunId;
use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// The run a step process works for (a run id).
pub const ENV_RUN_ID: &str = "ORCH_RUN_ID";
/// The step a process works for (the step's name).
pub const ENV_STEP: &str = "ORCH_STEP";
/// The step's attempt in this orch process (1, 2, ... with its retries; a resumed step starts again at 1).
pub const ENV_ATTEMPT: &str = "ORCH_ATTEMPT";
/// The orch process that started it: `PID:START@HOST`, as a run's recorded owner.
pub const ENV_OWNER: &str = "ORCH_OWNER";
/// Unique to one started process and its descendants: what stopping one attempt looks for.
pub const ENV_TOKEN: &str = "ORCH_PROCESS_TOKEN";

/// The variables orch sets on every step process; a step's `env` may not set them.
pub const RESERVED_ENV: [&str; 5] = [ENV_RUN_ID, ENV_STEP, ENV_ATTEMPT, ENV_OWNER, ENV_TOKEN];

/// Which marked processes to look for.
#[derive(Debug, Clone, Copy)]
pub enum Mark<'a> {
    /// One started process and its descendants ([`ENV_TOKEN`]).
    Token(&'a str),
    /// Everything started by one orch process ([`ENV_OWNER`]).
    Owner(&'a str),
    /// Everything started for one run ([`ENV_RUN_ID`]).
    Run(RunId),
}

impl Mark<'_> {
    /// The `NAME=value` entry of the environment that carries the mark.
    fn entry(&self) -> Vec<u8> {
        match self {
            Mark::Token(t) => format!("{ENV_TOKEN}={t}"),
            Mark::Owner(o) => format!("{ENV_OWNER}={o}"),
            Mark::Run(r) => format!("{ENV_RUN_ID}={r}"),
        }
        .into_bytes()
    }
}

/// This process's identity (`PID:START@HOST`), computed once.
pub fn owner_identity() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(crate::run::process_identity)
}

/// A started step process: the child, its process group and its token.
#[derive(Debug)]
pub(crate) struct Spawned {
    pub(crate) child: Child,
    pub(crate) guard: Guard,
}

/// Stops what a step started when it is dropped before the step cleaned up
/// (its future was dropped): SIGKILL to its group and its marked processes.
/// After [`begin_exit`] it leaves them to [`terminate_owned`].
#[derive(Debug)]
pub(crate) struct Guard {
    pub(crate) pgid: Option<i32>,
    pub(crate) token: String,
    /// When the leader (whose pid is `pgid`) was started.
    started: Instant,
    done: bool,
}

impl Guard {
    /// The leader's pid and start, for a search of its descendants.
    fn leader(&self) -> Option<(i32, Instant)> {
        self.pgid.map(|p| (p, self.started))
    }

    /// The step's processes were stopped and reaped: nothing is left to do.
    pub(crate) fn disarm(&mut self) {
        self.done = true;
        forget_group(&self.token);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.done || EXITING.load(Ordering::SeqCst) {
            return;
        }
        if let Some(pgid) = self.pgid {
            signal_group(pgid, Signal::SIGKILL);
        }
        signal_marked(Mark::Token(&self.token), Signal::SIGKILL);
        forget_group(&self.token);
    }
}

/// Process groups of steps that run now, by token (for [`terminate_owned`]).
static GROUPS: Mutex<Option<HashMap<String, i32>>> = Mutex::new(None);

fn remember_group(token: &str, pgid: i32) {
    if let Ok(mut g) = GROUPS.lock() {
        g.get_or_insert_with(HashMap::new)
            .insert(token.to_owned(), pgid);
    }
}

fn forget_group(token: &str) {
    if let Ok(mut g) = GROUPS.lock() {
        if let Some(m) = g.as_mut() {
            m.remove(token);
        }
    }
}

fn live_groups() -> Vec<i32> {
    GROUPS
        .lock()
        .map(|g| {
            g.as_ref()
                .map(|m| m.values().copied().collect())
                .unwrap_or_default()
        })
        .unwrap_or_default()
}

/// Set by [`begin_exit`]: nothing new starts, and dropped steps leave their processes alone.
static EXITING: AtomicBool = AtomicBool::new(false);

enum Request {
    Spawn {
        cmd: Box<Command>,
        token: String,
        handle: tokio::runtime::Handle,
        reply: tokio::sync::oneshot::Sender<io::Result<Child>>,
    },
    /// Answered once every earlier request was handled.
    Barrier(mpsc::Sender<()>),
}

/// The thread every step process is spawned from (it never exits).
fn spawner() -> io::Result<&'static mpsc::Sender<Request>> {
    static SPAWNER: OnceLock<mpsc::Sender<Request>> = OnceLock::new();
    if let Some(s) = SPAWNER.get() {
        return Ok(s);
    }
    static START: Mutex<()> = Mutex::new(());
    let _one = START
        .lock()
        .map_err(|_| io::Error::other("the spawner lock is poisoned"))?;
    if let Some(s) = SPAWNER.get() {
        return Ok(s);
    }
    let (tx, rx) = mpsc::channel::<Request>();
    std::thread::Builder::new()
        .name("orch-spawner".into())
        .spawn(move || {
            for req in rx {
                match req {
                    Request::Spawn {
                        mut cmd,
                        token,
                        handle,
                        reply,
                    } => {
                        if EXITING.load(Ordering::SeqCst) {
                            // orch is exiting: the step waits until it is dropped.
                            std::mem::forget(reply);
                            continue;
                        }
                        let _rt = handle.enter();
                        if let Err(Ok(child)) = reply.send(cmd.spawn()) {
                            // The step stopped waiting (cancelled, dropped): stop what started.
                            if let Some(pgid) = child.id().and_then(|id| i32::try_from(id).ok()) {
                                signal_group(pgid, Signal::SIGKILL);
                            }
                            signal_marked(Mark::Token(&token), Signal::SIGKILL);
                        }
                    }
                    Request::Barrier(done) => {
                        let _ = done.send(());
                    }
                }
            }
        })?;
    Ok(SPAWNER.get_or_init(|| tx))
}

/// Asks the child, between fork and exec, to get SIGKILL when orch dies.
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    let parent = nix::unistd::Pid::from_raw(i32::try_from(std::process::id()).unwrap_or(0));
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe functions may be called. It calls `prctl` and
    // `getppid` (both plain system calls through nix, which neither allocates
    // nor locks) and builds an `io::Error` from an errno code (no allocation).
    unsafe {
        cmd.pre_exec(move || {
            #[cfg(target_os = "linux")]
            {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
                // orch died between fork and prctl: the child was re-parented
                // and no signal will come; do not start the step at all.
                if nix::unistd::getppid() != parent {
                    return Err(io::Error::from_raw_os_error(nix::libc::ESRCH));
                }
            }
            #[cfg(not(target_os = "linux"))]
            let _ = parent;
            Ok(())
        });
    }
}

/// What a step process is marked with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepMark<'a> {
    pub(crate) run_id: RunId,
    pub(crate) step: &'a str,
    pub(crate) attempt: u32,
}

/// Starts `cmd` for a step: in its own process group, marked, tied to orch's
/// life, from the spawner thread. The caller must have configured its pipes.
pub(crate) async fn spawn(mut cmd: Command, mark: StepMark<'_>) -> io::Result<Spawned> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let owner = owner_identity();
    let token = format!("{owner}/{}", NEXT.fetch_add(1, Ordering::Relaxed));
    cmd.env(ENV_RUN_ID, mark.run_id.to_string())
        .env(ENV_STEP, mark.step)
        .env(ENV_ATTEMPT, mark.attempt.to_string())
        .env(ENV_OWNER, owner)
        .env(ENV_TOKEN, &token)
        .process_group(0)
        .kill_on_drop(false);
    die_with_parent(&mut cmd);
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|e| io::Error::other(format!("a step process needs a tokio runtime: {e}")))?;
    let (reply, answer) = tokio::sync::oneshot::channel();
    // Before the fork: a search of the leader's descendants counts from here.
    let started = Instant::now();
    spawner()?
        .send(Request::Spawn {
            cmd: Box::new(cmd),
            token: token.clone(),
            handle,
            reply,
        })
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    let mut answer = Answer {
        rx: answer,
        token: token.clone(),
    };
    let child = match (&mut answer.rx).await {
        Ok(r) => r?,
        // orch is exiting (see `begin_exit`): this step never starts.
        Err(_) => std::future::pending().await,
    };
    let pgid = child.id().and_then(|id| i32::try_from(id).ok());
    if let Some(pgid) = pgid {
        remember_group(&token, pgid);
    }
    Ok(Spawned {
        child,
        guard: Guard {
            pgid,
            token,
            started,
            done: false,
        },
    })
}

/// The spawner's answer, awaited. Dropped before it was taken (the step's
/// future was dropped), it stops the process it may hold.
struct Answer {
    rx: tokio::sync::oneshot::Receiver<io::Result<Child>>,
    token: String,
}

impl Drop for Answer {
    fn drop(&mut self) {
        // After `close`, either the spawner's send fails (and it stops the
        // process) or the process is here.
        self.rx.close();
        if let Ok(Ok(child)) = self.rx.try_recv() {
            if EXITING.load(Ordering::SeqCst) {
                return;
            }
            if let Some(pgid) = child.id().and_then(|id| i32::try_from(id).ok()) {
                signal_group(pgid, Signal::SIGKILL);
            }
            signal_marked(Mark::Token(&self.token), Signal::SIGKILL);
        }
    }
}

/// For a process about to exit on a signal: from now on no step process
/// starts (a step that asks waits until it is dropped), and steps whose
/// futures are dropped leave their processes to [`terminate_owned`].
/// Returns once no spawn is in progress.
pub fn begin_exit() {
    EXITING.store(true, Ordering::SeqCst);
    if let Ok(s) = spawner() {
        let (tx, rx) = mpsc::channel();
        if s.send(Request::Barrier(tx)).is_ok() {
            let _ = rx.recv();
        }
    }
}

pub(crate) fn signal_group(pgid: i32, sig: Signal) {
    // ESRCH (the group is gone) is the normal outcome of a race with exit.
    let _ = killpg(Pid::from_raw(pgid), sig);
}

/// The processes of this user (other than this one) that carry `mark`.
/// Zombies carry nothing (their environment is gone) and are not listed.
pub fn find_marked(mark: Mark<'_>) -> Vec<i32> {
    find_marked_in(mark, None)
}

/// Forks assumed at most per second when deciding that the pid counter cannot
/// have gone round since a step started (see [`Newer`]): 100,000, far more
/// than a machine sustains.
const MAX_FORKS_PER_SECOND: f64 = 100_000.0;

/// The pids that can belong to processes started after a step's leader: the
/// kernel hands out pids in increasing order, wrapping at `pid_max`, so a
/// descendant's pid lies in the circular range (leader, last], `last` being
/// the newest pid handed out (`/proc/sys/kernel/ns_last_pid`), as long as
/// fewer than `pid_max` pids were handed out since the leader started. That
/// is assumed only while the step is younger than `pid_max` /
/// [`MAX_FORKS_PER_SECOND`] (42 s for the usual 4,194,304; 0.3 s for
/// 32,768); an older step's search reads every process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Newer {
    leader: u32,
    last: u32,
}

impl Newer {
    /// The range for a leader started at `started`, when it can be trusted.
    fn for_leader(leader: i32, started: Instant) -> Option<Self> {
        let read =
            |p: &str| -> Option<u64> { std::fs::read_to_string(p).ok()?.trim().parse().ok() };
        let pid_max = read("/proc/sys/kernel/pid_max")?;
        let last = read("/proc/sys/kernel/ns_last_pid")?;
        Self::within(leader, started.elapsed(), pid_max, last)
    }

    /// The range for a leader that has run `elapsed`, the counter being at
    /// `last` of `pid_max`; `None` when the counter may have gone round.
    fn within(leader: i32, elapsed: Duration, pid_max: u64, last: u64) -> Option<Self> {
        #[allow(clippy::cast_precision_loss)]
        let window = Duration::from_secs_f64(pid_max as f64 / MAX_FORKS_PER_SECOND);
        (elapsed < window).then_some(Self {
            leader: u32::try_from(leader).ok()?,
            last: u32::try_from(last).ok()?,
        })
    }

    /// Whether `pid` was handed out after the leader's.
    fn holds(self, pid: u32) -> bool {
        if self.leader <= self.last {
            pid > self.leader && pid <= self.last
        } else {
            pid > self.leader || pid <= self.last
        }
    }
}

/// [`find_marked`], reading only processes started after a step's leader
/// when `newer` gives its pid and start (a step's own search, once per step:
/// reading every process's environment costs tens of microseconds each).
fn find_marked_in(mark: Mark<'_>, newer: Option<(i32, Instant)>) -> Vec<i32> {
    let want = mark.entry();
    let me = std::process::id();
    let Ok(uid) = std::fs::metadata("/proc/self").map(|m| m.uid()) else {
        return Vec::new();
    };
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let pids: Vec<u32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter(|&pid| pid != me)
        .collect();
    // Read after the listing, so that every listed pid was handed out before `last`.
    let range = newer.and_then(|(leader, started)| Newer::for_leader(leader, started));
    let mut found = Vec::new();
    for pid in pids {
        if range.is_some_and(|r| !r.holds(pid)) {
            continue;
        }
        let path = Path::new("/proc").join(pid.to_string());
        // Same user only: another user's environment is not ours to read, nor its processes to kill.
        if !std::fs::metadata(&path).is_ok_and(|m| m.uid() == uid) {
            continue;
        }
        let Ok(env) = std::fs::read(path.join("environ")) else {
            continue;
        };
        if env.split(|&b| b == 0).any(|e| e == want.as_slice()) {
            if let Ok(pid) = i32::try_from(pid) {
                found.push(pid);
            }
        }
    }
    found
}

/// Sends `sig` to the processes of one step's token, started after its
/// leader (see [`Newer`]); returns how many there were.
fn signal_step(guard: &Guard, sig: Signal) -> usize {
    let pids = find_marked_in(Mark::Token(&guard.token), guard.leader());
    for &pid in &pids {
        let _ = kill(Pid::from_raw(pid), sig);
    }
    pids.len()
}

/// Sends `sig` to every process that carries `mark`; returns how many there were.
pub fn signal_marked(mark: Mark<'_>, sig: Signal) -> usize {
    let pids = find_marked(mark);
    for &pid in &pids {
        let _ = kill(Pid::from_raw(pid), sig);
    }
    pids.len()
}

/// How often a stop looks again whether marked processes are gone.
const POLL: Duration = Duration::from_millis(20);

/// Stops every process carrying `mark`, from a thread that may block: SIGTERM,
/// up to `grace` for them to exit, then SIGKILL. Returns how many were found.
/// `orch resume` calls it with the dead owner of the run it takes over.
pub fn terminate_marked_blocking(mark: Mark<'_>, grace: Duration) -> usize {
    let found = signal_marked(mark, Signal::SIGTERM);
    if found == 0 {
        return 0;
    }
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline && !find_marked(mark).is_empty() {
        std::thread::sleep(POLL);
    }
    signal_marked(mark, Signal::SIGKILL);
    found
}

/// Before `orch resume` re-runs a run's interrupted steps: stops what the
/// run's previous owner (a dead orch process) left running, and, when no
/// owner was recorded, whatever carries the run's id. Returns how many
/// processes were found.
pub fn sweep_orphans(run_id: RunId, owner: Option<&str>, grace: Duration) -> usize {
    match owner {
        // Only the dead owner's processes: a concurrent resume's fresh steps
        // carry another owner and are left alone.
        Some(owner) if owner != owner_identity() => {
            terminate_marked_blocking(Mark::Owner(owner), grace)
        }
        Some(_) => 0,
        None => terminate_marked_blocking(Mark::Run(run_id), grace),
    }
}

/// Stops every process this orch process started (after [`begin_exit`] and
/// after the runs were dropped): SIGTERM to the steps' process groups and to
/// every process marked with this owner, up to `grace` (or until `hurry`
/// completes) for them to exit, then SIGKILL. Returns how many marked
/// processes were found.
pub async fn terminate_owned(
    grace: Duration,
    hurry: impl std::future::Future<Output = ()>,
) -> usize {
    let mark = Mark::Owner(owner_identity());
    let groups = live_groups();
    for &g in &groups {
        signal_group(g, Signal::SIGTERM);
    }
    let found = signal_marked(mark, Signal::SIGTERM);
    let gone = async {
        while !find_marked(mark).is_empty() {
            tokio::time::sleep(POLL).await;
        }
    };
    tokio::select! {
        _ = tokio::time::timeout(grace, gone) => {}
        () = hurry => {}
    }
    for &g in &groups {
        signal_group(g, Signal::SIGKILL);
    }
    signal_marked(mark, Signal::SIGKILL);
    found
}

/// Stops one step's processes: SIGTERM to its group and its marked
/// processes, up to `grace` for the leader to exit and the marked ones to be
/// gone, SIGKILL to what is left, and the leader reaped.
pub(crate) async fn terminate(spawned: &mut Spawned, grace: Duration) {
    let Spawned { child, guard } = spawned;
    if let Some(pgid) = guard.pgid {
        signal_group(pgid, Signal::SIGTERM);
    }
    signal_step(guard, Signal::SIGTERM);
    let _ = tokio::time::timeout(grace, async {
        let _ = child.wait().await;
        while !find_marked_in(Mark::Token(&guard.token), guard.leader()).is_empty() {
            tokio::time::sleep(POLL).await;
        }
    })
    .await;
    kill_rest(spawned);
    let _ = spawned.child.wait().await;
    spawned.guard.disarm();
}

/// After the leader exited: SIGKILL to whatever it left in its group or
/// marked with its token (a background job, a `setsid` daemon), so that the
/// pipes close and nothing outlives the step.
pub(crate) fn kill_rest(spawned: &Spawned) {
    if let Some(pgid) = spawned.guard.pgid {
        signal_group(pgid, Signal::SIGKILL);
    }
    signal_step(&spawned.guard, Signal::SIGKILL);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newer_range_follows_the_pid_counter_round_its_wrap() {
        let plain = Newer {
            leader: 100,
            last: 200,
        };
        assert!(!plain.holds(100), "the leader itself");
        assert!(plain.holds(101) && plain.holds(200));
        assert!(!plain.holds(99) && !plain.holds(201) && !plain.holds(1));
        // The counter wrapped after the leader: 4,000,000 .. pid_max, then 300 ..= 50.
        let wrapped = Newer {
            leader: 4_000_000,
            last: 50,
        };
        assert!(wrapped.holds(4_000_001) && wrapped.holds(4_194_303));
        assert!(wrapped.holds(1) && wrapped.holds(50));
        assert!(!wrapped.holds(51) && !wrapped.holds(3_999_999) && !wrapped.holds(4_000_000));
    }

    #[test]
    fn a_young_leaders_range_reaches_the_newest_pid_and_an_old_one_has_none() {
        let now = Instant::now();
        let me = i32::try_from(std::process::id()).expect("pid");
        let young = Newer::for_leader(me, now).expect("/proc gives pid_max and ns_last_pid");
        let child = std::process::Command::new("true").spawn().expect("spawn");
        let child_pid = child.id();
        let after = Newer::for_leader(me, now).expect("range");
        assert!(after.holds(child_pid), "{after:?} must hold {child_pid}");
        assert_eq!(young.leader, std::process::id());
        // A leader older than the window (pid_max / 100,000 forks a second): every process is read.
        let pid_max = 4_194_304;
        assert!(Newer::within(me, Duration::from_secs(41), pid_max, 7).is_some());
        assert_eq!(Newer::within(me, Duration::from_secs(42), pid_max, 7), None);
        assert_eq!(
            Newer::within(me, Duration::from_millis(400), 32_768, 7),
            None
        );
        let mut child = child;
        let _ = child.wait();
    }
}
