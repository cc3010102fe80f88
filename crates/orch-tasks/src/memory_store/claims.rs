//! The memory store's claims (`ClaimStore`): ready tasks of the runs the
//! workers run handed out in claim order, with leases, fencing and each
//! run's `max_parallel`.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Whether workers may claim the tasks of a run: it is the workers' (or
/// nobody's), not a process's ([`orch_model::store::SUBMITTED_OWNER`]).
fn claimable(r: &RunRecord) -> bool {
    r.owner
        .as_deref()
        .is_none_or(|o| o == orch_model::store::SUBMITTED_OWNER)
}

#[async_trait]
impl ClaimStore for MemoryStore {
    async fn claim(&self, req: &ClaimRequest, now: DateTime<Utc>) -> Result<Vec<Claim>> {
        let mut inner = self.lock();
        let mut candidates: Vec<(std::cmp::Reverse<orch_model::TaskPriority>, u64, u32, RunId)> =
            inner
                .runs
                .values()
                .filter(|r| r.record.status == WorkflowStatus::Running && claimable(&r.record))
                .flat_map(|r| {
                    r.tasks
                        .iter()
                        .filter(|t| t.status == TaskStatus::Ready)
                        .map(move |t| {
                            (std::cmp::Reverse(t.priority), r.order, t.index, r.record.id)
                        })
                })
                .collect();
        candidates.sort();
        // What is left of each limited run's `max_parallel`.
        let mut rooms: std::collections::HashMap<RunId, usize> = inner
            .runs
            .values()
            .filter(|r| r.record.status == WorkflowStatus::Running)
            .filter_map(|r| {
                let limit = r.max_parallel? as usize;
                let running = r
                    .tasks
                    .iter()
                    .filter(|t| t.status == TaskStatus::Running)
                    .count();
                Some((r.record.id, limit.saturating_sub(running)))
            })
            .collect();
        let mut free = req.free.clone();
        let mut out = Vec::new();
        for (_, _, index, run) in candidates {
            if out.len() >= req.max {
                break;
            }
            if rooms.get(&run).is_some_and(|&left| left == 0) {
                continue;
            }
            let Some(r) = inner.runs.get_mut(&run) else {
                continue;
            };
            let needs = r.needs.get(index as usize).cloned().unwrap_or_default();
            let spec = r.specs.get(index as usize).cloned().flatten();
            let Some(t) = r.tasks.get_mut(index as usize) else {
                continue;
            };
            if !free.fits(&needs) || t.status.transition(TaskStatus::Running).is_err() {
                continue;
            }
            free.take_if_fits(&needs);
            if let Some(left) = rooms.get_mut(&run) {
                *left -= 1;
            }
            t.attempt += 1;
            t.started_at = Some(now);
            t.lease = Some(Lease {
                worker: req.worker.clone(),
                until: lease_until(now, req.lease),
            });
            out.push(Claim {
                run,
                index,
                name: t.name.clone(),
                attempt: t.attempt,
                worker: req.worker.clone(),
                needs,
                spec,
            });
        }
        Ok(out)
    }

    fn fits_capacity(&self) -> bool {
        true
    }

    async fn heartbeat(&self, claim: &Claim, lease: Duration, now: DateTime<Utc>) -> Result<bool> {
        let mut inner = self.lock();
        let Some(t) = inner
            .runs
            .get_mut(&claim.run)
            .and_then(|r| r.tasks.get_mut(claim.index as usize))
        else {
            return Ok(false);
        };
        if t.status != TaskStatus::Running || t.attempt != claim.attempt {
            return Ok(false);
        }
        t.lease = Some(Lease {
            worker: claim.worker.clone(),
            until: lease_until(now, lease),
        });
        Ok(true)
    }

    async fn complete(
        &self,
        claim: &Claim,
        outcome: TaskOutcome,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut inner = self.lock();
        let run = inner.run_mut(claim.run)?;
        if claim.attempt == 0 {
            return Err(stale("complete", claim));
        }
        finish_one(
            run,
            claim.index,
            Some(claim),
            claim.attempt,
            0,
            outcome,
            now,
        )?;
        finish_run_if_done(run, now);
        Ok(())
    }

    async fn complete_many(
        &self,
        done: Vec<(Claim, TaskOutcome)>,
        events: Vec<(RunId, StoredEvent)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<()>>> {
        let mut inner = self.lock();
        let mut answers = Vec::with_capacity(done.len());
        for (claim, outcome) in done {
            let answer = inner.run_mut(claim.run).and_then(|run| {
                if claim.attempt == 0 {
                    return Err(stale("complete", &claim));
                }
                finish_one(
                    run,
                    claim.index,
                    Some(&claim),
                    claim.attempt,
                    0,
                    outcome,
                    now,
                )?;
                finish_run_if_done(run, now);
                Ok(())
            });
            answers.push(answer);
        }
        if answers.iter().all(Result::is_ok) {
            for (run, mut e) in events {
                if let Some(r) = inner.runs.get_mut(&run) {
                    e.seq = r.events.len() as u64 + 1;
                    r.events.push(e);
                }
            }
        }
        Ok(answers)
    }

    async fn release_claim(&self, claim: &Claim, _now: DateTime<Utc>) -> Result<bool> {
        let mut inner = self.lock();
        let Some(t) = inner
            .runs
            .get_mut(&claim.run)
            .and_then(|r| r.tasks.get_mut(claim.index as usize))
        else {
            return Ok(false);
        };
        if t.status != TaskStatus::Running || t.attempt != claim.attempt {
            return Ok(false);
        }
        if t.status.transition(TaskStatus::Ready).is_err() {
            return Ok(false);
        }
        t.lease = None;
        Ok(true)
    }

    async fn task_records(&self, run: RunId, indices: &[u32]) -> Result<Vec<TaskRecord>> {
        let inner = self.lock();
        let Some(r) = inner.runs.get(&run) else {
            return Ok(Vec::new());
        };
        Ok(indices
            .iter()
            .filter_map(|&i| r.tasks.get(i as usize).cloned())
            .collect())
    }

    async fn reclaim_expired(&self, now: DateTime<Utc>) -> Result<usize> {
        let mut inner = self.lock();
        let mut n = 0;
        for run in inner.runs.values_mut() {
            if !claimable(&run.record) {
                continue;
            }
            for t in &mut run.tasks {
                if t.status == TaskStatus::Running
                    && t.lease.as_ref().is_some_and(|l| l.until < now)
                {
                    if t.status.transition(TaskStatus::Ready).is_ok() {
                        t.lease = None;
                        n += 1;
                    }
                }
            }
        }
        Ok(n)
    }
}
