-- Version 4: named leases that elect one holder at a time among the
-- processes sharing the database (a worker that reclaims lapsed claims, a
-- process that fires a schedule's tick). `until` is the holder's time.
CREATE TABLE leases (
    name text PRIMARY KEY,
    holder text NOT NULL,
    until timestamptz NOT NULL
);
