-- Jobs shared by many processes (PostgreSQL; SQLite keeps the columns unused, one process runs everything):
-- a worker claims a job under a lease it renews by heartbeat; a lease that runs out (a worker killed) makes
-- the job claimable again. `turn` places a job in the fair queue's rounds when it is accepted: a person's first
-- waiting job is in the current round, their second in the next, so one person's burst never holds others up.
ALTER TABLE jobs ADD COLUMN claimed_by TEXT;          -- the worker holding it now (NULL: nobody)
ALTER TABLE jobs ADD COLUMN lease_until REAL;         -- its claim lapses then unless renewed
ALTER TABLE jobs ADD COLUMN claimed_at REAL;          -- when it was last claimed
ALTER TABLE jobs ADD COLUMN turn INTEGER NOT NULL DEFAULT 0;
-- One running job per person, across every worker: the database refuses a second claim.
CREATE UNIQUE INDEX jobs_one_claim_per_person ON jobs(platform, user_id) WHERE claimed_by IS NOT NULL;
CREATE INDEX jobs_waiting_turns ON jobs(turn, id) WHERE claimed_by IS NULL AND status IN ('queued', 'running', 'done');
CREATE INDEX jobs_leases ON jobs(lease_until) WHERE claimed_by IS NOT NULL;

-- Chores one process runs at a time (retention, party deadlines): when each last ran, so that many processes
-- together run an hourly chore hourly.
CREATE TABLE chores (
    name     TEXT PRIMARY KEY,
    last_run REAL NOT NULL
);
