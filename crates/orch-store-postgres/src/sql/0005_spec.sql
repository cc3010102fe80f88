-- Version 5: what a worker needs to run a submitted run's task (its step,
-- as the worker wrote it), handed out with the task's claims, so that no
-- worker reads the whole definition of a large run. In a table of its own
-- (the tasks of a run one process drives have none): every claim,
-- completion and release rewrites a task's row, which stays small. And at
-- most how many tasks of a run claims hand out at once (NULL: no limit),
-- with the index that finds the running runs that have such a limit.
CREATE TABLE task_specs (
    run_ord bigint NOT NULL REFERENCES runs (ord) ON DELETE CASCADE,
    idx int NOT NULL,
    spec text NOT NULL,
    PRIMARY KEY (run_ord, idx)
);
ALTER TABLE runs ADD COLUMN max_parallel int;
CREATE INDEX runs_limited ON runs (ord) WHERE status = 'running' AND max_parallel IS NOT NULL;
