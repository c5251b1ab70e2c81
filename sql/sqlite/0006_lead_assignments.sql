-- opnet schema v6 (sqlite): lead distribution (R8.3, issue 12). Not a monthly
-- table: one row per lead opnet assigned or tried, keyed by `lead_id`.
--
-- lead_assignments: `operator_id` is NULL exactly for `no_capacity` (the lead stays
--   unassigned and every later run tries it again; its row is replaced when it is
--   assigned). An assigned row is never changed: the run's upsert only replaces a row
--   whose operator_id is NULL, and the primary key makes a second assignment of a lead
--   impossible. `assigned_at` is the run's time T (RFC 3339 UTC text, like every
--   timestamp here), `run_id` the `job_runs` row (job `leads`) that wrote it.
--   `written_back_at` (extra column): when the row was upserted into the CRM's table
--   (`[leads.writeback]`); NULL = not yet (or no write-back configured).

CREATE TABLE lead_assignments (
  lead_id TEXT PRIMARY KEY,
  operator_id TEXT,
  rule TEXT NOT NULL CHECK (rule IN ('exclusive','specialist','score','no_capacity')),
  score REAL,
  assigned_at TEXT NOT NULL,
  run_id TEXT NOT NULL,
  written_back_at TEXT,
  CHECK ((rule = 'no_capacity') = (operator_id IS NULL))
);
CREATE INDEX lead_assignments_run ON lead_assignments (run_id);
CREATE INDEX lead_assignments_assigned_at ON lead_assignments (assigned_at);
