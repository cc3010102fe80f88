-- Version 2: what each task takes of a worker's capacity, so that a claim
-- hands out only what fits what the claimer has free. One amount per kind
-- of resource, in the order of orch's ResourceType::ALL (cpu cores, memory
-- GiB, disk GiB, network, file, database, external_api, gpu count, queue,
-- lock, semaphore); NULL: the task needs nothing.
ALTER TABLE tasks ADD COLUMN needs float8[];
