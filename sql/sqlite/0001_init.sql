-- opnet schema v1 (sqlite). Generated from one table list so both dialects match;
-- money is bigint cents, shares integer basis points, periods text YYYY-MM,
-- dates text YYYY-MM-DD and timestamps text RFC 3339 UTC (see docs/database.md).

CREATE TABLE job_runs (
  run_id TEXT PRIMARY KEY,
  job TEXT NOT NULL,
  period TEXT,
  started_at TEXT NOT NULL,
  finished_at TEXT,
  status TEXT NOT NULL CHECK (status IN ('running','succeeded','failed')),
  plan_version TEXT,
  input_fingerprint TEXT,
  snapshot TEXT,
  rows_in INTEGER NOT NULL DEFAULT 0,
  rows_quarantined INTEGER NOT NULL DEFAULT 0,
  rows_out INTEGER NOT NULL DEFAULT 0,
  error TEXT,
  host TEXT
);
CREATE INDEX job_runs_job_period ON job_runs (job, period, status);

CREATE TABLE payout_statements (
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
  status TEXT NOT NULL CHECK (status IN ('draft','approved','sent')),
  revision INTEGER NOT NULL,
  plan_version TEXT NOT NULL,
  approved_at TEXT,
  sent_at TEXT,
  run_id TEXT NOT NULL
);
CREATE UNIQUE INDEX payout_statements_key ON payout_statements (period, operator_id, currency, revision);

CREATE TABLE payout_lines (
  period TEXT NOT NULL,
  operator_id TEXT NOT NULL,
  currency TEXT NOT NULL,
  invoice_id TEXT NOT NULL,
  line_no INTEGER NOT NULL,
  refund_id TEXT,
  revenue_type TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('collection','clawback')),
  amount_cents INTEGER NOT NULL,
  operator_bp INTEGER NOT NULL,
  operator_cents INTEGER NOT NULL,
  candlefish_cents INTEGER NOT NULL,
  collected_period TEXT NOT NULL,
  revision INTEGER NOT NULL,
  run_id TEXT NOT NULL
);
CREATE UNIQUE INDEX payout_lines_key ON payout_lines (period, invoice_id, line_no, kind, COALESCE(refund_id, ''));
CREATE INDEX payout_lines_line ON payout_lines (invoice_id, line_no);

CREATE TABLE reconciliation_exceptions (
  period TEXT NOT NULL,
  kind TEXT NOT NULL,
  invoice_id TEXT,
  line_no INTEGER,
  customer_id TEXT,
  refund_id TEXT,
  detail TEXT NOT NULL,
  run_id TEXT NOT NULL
);
CREATE INDEX reconciliation_exceptions_key ON reconciliation_exceptions (period, kind, invoice_id, line_no);

CREATE TABLE operator_tiers (
  period TEXT NOT NULL,
  operator_id TEXT NOT NULL,
  active_customers INTEGER NOT NULL,
  tier TEXT NOT NULL,
  previous_tier TEXT NOT NULL,
  change TEXT NOT NULL CHECK (change IN ('promotion','demotion','none')),
  run_id TEXT NOT NULL
);
CREATE UNIQUE INDEX operator_tiers_key ON operator_tiers (period, operator_id);

CREATE TABLE exclusivity_checks (
  period TEXT NOT NULL,
  operator_id TEXT NOT NULL,
  territory_id TEXT NOT NULL,
  currency TEXT NOT NULL,
  mrr_cents INTEGER NOT NULL,
  active_customers INTEGER NOT NULL,
  qoq_growth REAL,
  csat_share REAL,
  csat_responses INTEGER NOT NULL DEFAULT 0,
  satisfaction TEXT,
  compliant BOOLEAN NOT NULL,
  failed_criteria TEXT NOT NULL DEFAULT '',
  consecutive_breaches INTEGER NOT NULL,
  escalated BOOLEAN NOT NULL,
  run_id TEXT NOT NULL
);
CREATE UNIQUE INDEX exclusivity_checks_key ON exclusivity_checks (period, operator_id, territory_id);

CREATE TABLE operator_metrics (
  period TEXT NOT NULL,
  operator_id TEXT NOT NULL,
  metric TEXT NOT NULL,
  value REAL,
  threshold REAL NOT NULL,
  breached BOOLEAN NOT NULL,
  run_id TEXT NOT NULL
);
CREATE UNIQUE INDEX operator_metrics_key ON operator_metrics (period, operator_id, metric);

CREATE TABLE network_health (
  period TEXT NOT NULL,
  metric TEXT NOT NULL,
  dimension TEXT,
  value REAL,
  value_cents INTEGER,
  target REAL,
  on_target BOOLEAN,
  run_id TEXT NOT NULL
);
CREATE UNIQUE INDEX network_health_key ON network_health (period, metric, COALESCE(dimension, ''));

CREATE TABLE email_outbox (
  message_id TEXT PRIMARY KEY,
  dedup_key TEXT NOT NULL UNIQUE,
  kind TEXT NOT NULL,
  period TEXT,
  recipient TEXT NOT NULL,
  sender TEXT NOT NULL,
  subject TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('queued','sent','failed')),
  attempts INTEGER NOT NULL DEFAULT 0,
  last_error TEXT,
  sent_at TEXT,
  queued_at TEXT NOT NULL,
  run_id TEXT,
  body TEXT NOT NULL
);
CREATE INDEX email_outbox_status ON email_outbox (status);
