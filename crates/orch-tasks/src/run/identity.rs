//! Which process drives a run: `PID:START@HOST` names a process so that a
//! reused PID does not pass for it.

/// A name for this process that says whether it still runs: `PID:START@HOST`
/// (START is the process's start time in clock ticks since boot, so a reused
/// PID does not pass for the original).
pub fn process_identity() -> String {
    let pid = std::process::id();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    format!("{pid}:{}@{host}", process_start(pid).unwrap_or(0))
}

fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22, counted after the parenthesized command name (which may hold spaces).
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process an owner string names still runs (on this host; an
/// owner on another host is assumed alive).
pub fn owner_alive(owner: &str) -> bool {
    let Some((id, host)) = owner.split_once('@') else {
        return false;
    };
    let here = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    if host != here {
        return true;
    }
    let Some((pid, start)) = id.split_once(':') else {
        return false;
    };
    match (pid.parse::<u32>(), start.parse::<u64>()) {
        (Ok(pid), Ok(start)) => process_start(pid) == Some(start),
        _ => false,
    }
}
