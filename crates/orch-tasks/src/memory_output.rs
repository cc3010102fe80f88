//! The memory store's output concern: steps' output chunks, kept per run and step.

use crate::memory_store::MemoryStore;
use async_trait::async_trait;
use orch_model::store::{OutputChunk, OutputStore};
use orch_model::{EntityKind, OrchestrationError, Result, RunId};
use std::collections::HashMap;

/// Each step's chunks, in order (their `seq` is their place, from 1).
#[derive(Debug, Default)]
pub(crate) struct Chunks(HashMap<(RunId, u32), Vec<OutputChunk>>);

#[async_trait]
impl OutputStore for MemoryStore {
    async fn append_output(&self, chunks: Vec<OutputChunk>) -> Result<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        // Every chunk's step is checked before any is kept: all or nothing.
        // Runs are never removed, so the answer holds while `out` is taken.
        for c in &chunks {
            if !self.has_task(c.run, c.task) {
                return Err(OrchestrationError::not_found(
                    EntityKind::Task,
                    format!("{} of run {}", c.task, c.run),
                ));
            }
        }
        let mut out = self.output_chunks();
        for mut c in chunks {
            let list = out.0.entry((c.run, c.task)).or_default();
            c.seq = list.len() as u64 + 1;
            list.push(c);
        }
        Ok(())
    }

    async fn output(
        &self,
        run: RunId,
        task: u32,
        after: u64,
        limit: usize,
    ) -> Result<Vec<OutputChunk>> {
        let out = self.output_chunks();
        let Some(list) = out.0.get(&(run, task)) else {
            return Ok(Vec::new());
        };
        let from = usize::try_from(after).unwrap_or(usize::MAX).min(list.len());
        Ok(list[from..].iter().take(limit).cloned().collect())
    }
}
