-- opnet schema v1 (postgres). Generated from one table list so both dialects match;
-- money is bigint cents, shares integer basis points, periods text YYYY-MM,
-- dates text YYYY-MM-DD and timestamps text RFC 3339 UTC (see docs/database.md).

CREATE TABLE job_runs (
  run_id text PRIMARY KEY,
  job text NOT NULL,
  period text,
  started_at text NOT NULL,
  finished_at text,
  status text NOT NULL CHECK (status IN ('running','succeeded','failed')),
  plan_version text,
  input_fingerprint text,
  snapshot text,
  rows_in bigint NOT NULL DEFAULT 0,
  rows_quarantined bigint NOT NULL DEFAULT 0,
  rows_out bigint NOT NULL DEFAULT 0,
  error text,
  host text
);
CREATE INDEX job_runs_job_period ON job_runs (job, period, status);

CREATE TABLE payout_statements (
  period text NOT NULL,
  operator_id text NOT NULL,
  currency text NOT NULL,
  phase text NOT NULL,
  tier text NOT NULL,
  software_cents bigint NOT NULL,
  implementation_cents bigint NOT NULL,
  support_cents bigint NOT NULL,
  operator_share_cents bigint NOT NULL,
  candlefish_share_cents bigint NOT NULL,
  clawback_cents bigint NOT NULL,
  carried_in_cents bigint NOT NULL,
  payable_cents bigint NOT NULL,
  carried_out_cents bigint NOT NULL,
  statement_on text NOT NULL,
  due_on text NOT NULL,
  status text NOT NULL CHECK (status IN ('draft','approved','sent')),
  revision bigint NOT NULL,
  plan_version text NOT NULL,
  approved_at text,
  sent_at text,
  run_id text NOT NULL
);
CREATE UNIQUE INDEX payout_statements_key ON payout_statements (period, operator_id, currency, revision);

CREATE TABLE payout_lines (
  period text NOT NULL,
  operator_id text NOT NULL,
  currency text NOT NULL,
  invoice_id text NOT NULL,
  line_no bigint NOT NULL,
  refund_id text,
  revenue_type text NOT NULL,
  kind text NOT NULL CHECK (kind IN ('collection','clawback')),
  amount_cents bigint NOT NULL,
  operator_bp integer NOT NULL,
  operator_cents bigint NOT NULL,
  candlefish_cents bigint NOT NULL,
  collected_period text NOT NULL,
  revision bigint NOT NULL,
  run_id text NOT NULL
);
CREATE UNIQUE INDEX payout_lines_key ON payout_lines (period, invoice_id, line_no, kind, COALESCE(refund_id, ''));
CREATE INDEX payout_lines_line ON payout_lines (invoice_id, line_no);

CREATE TABLE reconciliation_exceptions (
  period text NOT NULL,
  kind text NOT NULL,
  invoice_id text,
  line_no bigint,
  customer_id text,
  refund_id text,
  detail text NOT NULL,
  run_id text NOT NULL
);
CREATE INDEX reconciliation_exceptions_key ON reconciliation_exceptions (period, kind, invoice_id, line_no);

CREATE TABLE operator_tiers (
  period text NOT NULL,
  operator_id text NOT NULL,
  active_customers bigint NOT NULL,
  tier text NOT NULL,
  previous_tier text NOT NULL,
  change text NOT NULL CHECK (change IN ('promotion','demotion','none')),
  run_id text NOT NULL
);
CREATE UNIQUE INDEX operator_tiers_key ON operator_tiers (period, operator_id);

CREATE TABLE exclusivity_checks (
  period text NOT NULL,
  operator_id text NOT NULL,
  territory_id text NOT NULL,
  currency text NOT NULL,
  mrr_cents bigint NOT NULL,
  active_customers bigint NOT NULL,
  qoq_growth double precision,
  csat_share double precision,
  csat_responses bigint NOT NULL DEFAULT 0,
  satisfaction text,
  compliant boolean NOT NULL,
  failed_criteria text NOT NULL DEFAULT '',
  consecutive_breaches bigint NOT NULL,
  escalated boolean NOT NULL,
  run_id text NOT NULL
);
CREATE UNIQUE INDEX exclusivity_checks_key ON exclusivity_checks (period, operator_id, territory_id);

CREATE TABLE operator_metrics (
  period text NOT NULL,
  operator_id text NOT NULL,
  metric text NOT NULL,
  value double precision,
  threshold double precision NOT NULL,
  breached boolean NOT NULL,
  run_id text NOT NULL
);
CREATE UNIQUE INDEX operator_metrics_key ON operator_metrics (period, operator_id, metric);

CREATE TABLE network_health (
  period text NOT NULL,
  metric text NOT NULL,
  dimension text,
  value double precision,
  value_cents bigint,
  target double precision,
  on_target boolean,
  run_id text NOT NULL
);
CREATE UNIQUE INDEX network_health_key ON network_health (period, metric, COALESCE(dimension, ''));

CREATE TABLE email_outbox (
  message_id text PRIMARY KEY,
  dedup_key text NOT NULL UNIQUE,
  kind text NOT NULL,
  period text,
  recipient text NOT NULL,
  sender text NOT NULL,
  subject text NOT NULL,
  status text NOT NULL CHECK (status IN ('queued','sent','failed')),
  attempts bigint NOT NULL DEFAULT 0,
  last_error text,
  sent_at text,
  queued_at text NOT NULL,
  run_id text,
  body text NOT NULL
);
CREATE INDEX email_outbox_status ON email_outbox (status);
