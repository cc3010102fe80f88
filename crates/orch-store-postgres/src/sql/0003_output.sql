-- Version 3: steps' output kept while it is produced, in chunks (at most
-- 64 KiB each), so that a running step's output can be read. `seq` numbers
-- a step's chunks from 1 in append order; `stream` is 1 (stdout) or 2
-- (stderr); `attempt` is the attempt that wrote the chunk; `truncated`
-- marks the chunk with which a stream reached the output limit.
CREATE TABLE output (
    run_ord bigint NOT NULL,
    idx integer NOT NULL,
    seq bigint NOT NULL,
    attempt integer NOT NULL,
    stream smallint NOT NULL,
    data bytea NOT NULL,
    truncated boolean NOT NULL,
    at timestamptz NOT NULL,
    PRIMARY KEY (run_ord, idx, seq),
    FOREIGN KEY (run_ord, idx) REFERENCES tasks (run_ord, idx) ON DELETE CASCADE
);
