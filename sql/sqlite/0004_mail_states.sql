-- opnet schema v4 (issues 9, 10, 14): mail and statement states, refused and
-- published runs, who holds the lease. (See sql/postgres/0004_mail_states.sql for
-- what each column means.) SQLite cannot alter a CHECK constraint, so the three
-- tables whose status gains values are rebuilt: new table, copy, drop, rename,
-- indexes again — inside the migration's transaction.

CREATE TABLE email_outbox_v4 (
  message_id TEXT PRIMARY KEY,
  dedup_key TEXT NOT NULL UNIQUE,
  kind TEXT NOT NULL,
  period TEXT,
  recipient TEXT NOT NULL,
  sender TEXT NOT NULL,
  subject TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('queued','sending','sent','failed','suppressed')),
  attempts INTEGER NOT NULL DEFAULT 0,
  last_error TEXT,
  sent_at TEXT,
  queued_at TEXT NOT NULL,
  run_id TEXT,
  body TEXT NOT NULL,
  claimed_by TEXT,
  claimed_at TEXT,
  summary_id TEXT
);
INSERT INTO email_outbox_v4 (message_id, dedup_key, kind, period, recipient, sender, subject, status,
  attempts, last_error, sent_at, queued_at, run_id, body)
  SELECT message_id, dedup_key, kind, period, recipient, sender, subject, status,
  attempts, last_error, sent_at, queued_at, run_id, body FROM email_outbox;
DROP TABLE email_outbox;
ALTER TABLE email_outbox_v4 RENAME TO email_outbox;
CREATE INDEX email_outbox_status ON email_outbox (status);
CREATE INDEX email_outbox_period ON email_outbox (period, status);

CREATE TABLE payout_statements_v4 (
  period TEXT NOT NULL,
  operator_id TEXT NOT NULL,
  currency TEXT NOT NULL,
  phase TEXT NOT NULL,
  tier TEXT NOT NULL,
  software_cents INTEGER NOT NULL,
  implementation_cents INTEGER NOT NULL,
  support_cents INTEGER NOT NULL,
  operator_share_cents INTEGER NOT NULL,
  candlefish_share_cents INTEGER NOT NULL,
  clawback_cents INTEGER NOT NULL,
  carried_in_cents INTEGER NOT NULL,
  payable_cents INTEGER NOT NULL,
  carried_out_cents INTEGER NOT NULL,
  statement_on TEXT NOT NULL,
  due_on TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('draft','approved','queued','sent','failed')),
  revision INTEGER NOT NULL,
  plan_version TEXT NOT NULL,
  approved_at TEXT,
  sent_at TEXT,
  run_id TEXT NOT NULL,
  message_id TEXT,
  queued_at TEXT,
  mail_error TEXT
);
INSERT INTO payout_statements_v4 (period, operator_id, currency, phase, tier, software_cents,
  implementation_cents, support_cents, operator_share_cents, candlefish_share_cents, clawback_cents,
  carried_in_cents, payable_cents, carried_out_cents, statement_on, due_on, status, revision,
  plan_version, approved_at, sent_at, run_id)
  SELECT period, operator_id, currency, phase, tier, software_cents,
  implementation_cents, support_cents, operator_share_cents, candlefish_share_cents, clawback_cents,
  carried_in_cents, payable_cents, carried_out_cents, statement_on, due_on, status, revision,
  plan_version, approved_at, sent_at, run_id FROM payout_statements;
DROP TABLE payout_statements;
ALTER TABLE payout_statements_v4 RENAME TO payout_statements;
CREATE UNIQUE INDEX payout_statements_key ON payout_statements (period, operator_id, currency, revision);
CREATE INDEX payout_statements_message ON payout_statements (message_id);

CREATE TABLE job_runs_v4 (
  run_id TEXT PRIMARY KEY,
  job TEXT NOT NULL,
  period TEXT,
  started_at TEXT NOT NULL,
  finished_at TEXT,
  status TEXT NOT NULL CHECK (status IN ('running','succeeded','failed','refused')),
  plan_version TEXT,
  input_fingerprint TEXT,
  snapshot TEXT,
  rows_in INTEGER NOT NULL DEFAULT 0,
  rows_quarantined INTEGER NOT NULL DEFAULT 0,
  rows_out INTEGER NOT NULL DEFAULT 0,
  error TEXT,
  host TEXT,
  lease_holder TEXT,
  published_at TEXT
);
INSERT INTO job_runs_v4 (run_id, job, period, started_at, finished_at, status, plan_version,
  input_fingerprint, snapshot, rows_in, rows_quarantined, rows_out, error, host, lease_holder, published_at)
  SELECT run_id, job, period, started_at, finished_at, status, plan_version,
  input_fingerprint, snapshot, rows_in, rows_quarantined, rows_out, error, host, lease_holder,
  CASE WHEN status = 'succeeded' THEN finished_at END FROM job_runs;
DROP TABLE job_runs;
ALTER TABLE job_runs_v4 RENAME TO job_runs;
CREATE INDEX job_runs_job_period ON job_runs (job, period, status);

ALTER TABLE job_leases ADD COLUMN command TEXT;

UPDATE email_outbox SET queued_at = substr(queued_at, 1, 19) || '.000Z' WHERE length(queued_at) = 20;
UPDATE email_outbox SET sent_at = substr(sent_at, 1, 19) || '.000Z' WHERE length(sent_at) = 20;
UPDATE email_outbox SET period = substr(dedup_key, 16, 7)
  WHERE kind = 'network_health' AND period IS NULL AND dedup_key LIKE 'network_health:____-__:%';
