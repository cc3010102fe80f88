//! The two baselines of SPEC §10, run in the same process as orch: a plain
//! topological loop (the floor) and a minimal hand-written tokio
//! dependency-counter scheduler (what a careful user would write by hand).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::sync::mpsc;

/// Reverse edges in CSR form: for each node, the nodes that depend on it.
fn dependents(deps: &[Vec<u32>]) -> (Vec<u32>, Vec<u32>) {
    let n = deps.len();
    let mut offsets = vec![0u32; n + 1];
    for ds in deps {
        for &d in ds {
            offsets[d as usize + 1] += 1;
        }
    }
    for i in 0..n {
        offsets[i + 1] += offsets[i];
    }
    let mut fill = offsets.clone();
    let mut edges = vec![0u32; offsets[n] as usize];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            edges[fill[d as usize] as usize] = i as u32;
            fill[d as usize] += 1;
        }
    }
    (offsets, edges)
}

/// Runs every node once in dependency order with a plain loop (Kahn's
/// algorithm, a no-op per node); returns how many ran.
pub fn plain_loop(deps: &[Vec<u32>]) -> usize {
    let (offsets, edges) = dependents(deps);
    let mut remaining: Vec<u32> = deps.iter().map(|d| d.len() as u32).collect();
    let mut queue: Vec<u32> = (0..deps.len() as u32)
        .filter(|&i| remaining[i as usize] == 0)
        .collect();
    let mut ran = 0;
    while let Some(i) = queue.pop() {
        ran += 1;
        for &j in &edges[offsets[i as usize] as usize..offsets[i as usize + 1] as usize] {
            remaining[j as usize] -= 1;
            if remaining[j as usize] == 0 {
                queue.push(j);
            }
        }
    }
    ran
}

/// A minimal tokio scheduler: each ready node is a spawned task (a no-op);
/// its completion goes back over a channel and decrements its dependents'
/// atomic counters. Returns how many ran.
pub async fn tokio_counters(deps: &[Vec<u32>], parallel: usize) -> usize {
    let (offsets, edges) = dependents(deps);
    let remaining: Arc<Vec<AtomicU32>> = Arc::new(
        deps.iter()
            .map(|d| AtomicU32::new(d.len() as u32))
            .collect(),
    );
    let (tx, mut rx) = mpsc::unbounded_channel::<u32>();
    let mut ready: Vec<u32> = (0..deps.len() as u32)
        .filter(|&i| deps[i as usize].is_empty())
        .collect();
    let mut running = 0usize;
    let mut ran = 0usize;
    loop {
        while running < parallel {
            let Some(i) = ready.pop() else { break };
            running += 1;
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(i);
            });
        }
        if running == 0 {
            break;
        }
        let Some(i) = rx.recv().await else { break };
        running -= 1;
        ran += 1;
        for &j in &edges[offsets[i as usize] as usize..offsets[i as usize + 1] as usize] {
            if remaining[j as usize].fetch_sub(1, Ordering::AcqRel) == 1 {
                ready.push(j);
            }
        }
    }
    ran
}
