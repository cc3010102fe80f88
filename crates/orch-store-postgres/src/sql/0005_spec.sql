-- Version 5: what a worker needs to run a submitted run's task (its step,
-- as the worker wrote it; NULL for the tasks of a run one process drives),
-- handed out with the task's claims, so that no worker reads the whole
-- definition of a large run; and at most how many tasks of a run claims
-- hand out at once (NULL: no limit), with the index that finds the running
-- runs that have such a limit.
ALTER TABLE tasks ADD COLUMN spec text;
ALTER TABLE runs ADD COLUMN max_parallel int;
CREATE INDEX runs_limited ON runs (ord) WHERE status = 'running' AND max_parallel IS NOT NULL;
