-- Version 5: what a worker needs to run a submitted run's task (its step,
-- as the worker wrote it; NULL for the tasks of a run one process drives),
-- handed out with the task's claims, so that no worker reads the whole
-- definition of a large run.
ALTER TABLE tasks ADD COLUMN spec text;
