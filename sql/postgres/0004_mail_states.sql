-- opnet schema v4 (issues 9, 10, 14): mail and statement states, refused and
-- published runs, who holds the lease.
--
-- email_outbox: `sending` (claimed by one deliverer: `claimed_by`, `claimed_at`) and
--   `suppressed` (recorded, never sent: mail of a backfilled period); `summary_id`
--   names the backfill summary that listed a suppressed row ('-' for rows suppressed
--   by `close --mail none`, which no summary lists).
-- payout_statements: the status follows the statement's email, approved -> queued ->
--   sent (or failed, with `mail_error`); `message_id` links the statement to its
--   email_outbox row, `queued_at` says when it was queued.
-- job_runs: `refused` (a run that must not run, e.g. payouts of an approved period
--   without --revise; the reason is in `error`), and `published_at` (when the run's
--   marts were last published from the database; NULL = due to be published).
-- job_leases: `command` (what the holder is doing: `opnet close`, `opnet schedule`…).
-- Timestamps: one format everywhere, RFC 3339 UTC with milliseconds (the outbox
--   wrote whole seconds).

ALTER TABLE email_outbox DROP CONSTRAINT email_outbox_status_check;
ALTER TABLE email_outbox ADD CONSTRAINT email_outbox_status_check
  CHECK (status IN ('queued','sending','sent','failed','suppressed'));
ALTER TABLE email_outbox ADD COLUMN claimed_by text;
ALTER TABLE email_outbox ADD COLUMN claimed_at text;
ALTER TABLE email_outbox ADD COLUMN summary_id text;
CREATE INDEX email_outbox_period ON email_outbox (period, status);

ALTER TABLE payout_statements DROP CONSTRAINT payout_statements_status_check;
ALTER TABLE payout_statements ADD CONSTRAINT payout_statements_status_check
  CHECK (status IN ('draft','approved','queued','sent','failed'));
ALTER TABLE payout_statements ADD COLUMN message_id text;
ALTER TABLE payout_statements ADD COLUMN queued_at text;
ALTER TABLE payout_statements ADD COLUMN mail_error text;
CREATE INDEX payout_statements_message ON payout_statements (message_id);

ALTER TABLE job_runs DROP CONSTRAINT job_runs_status_check;
ALTER TABLE job_runs ADD CONSTRAINT job_runs_status_check
  CHECK (status IN ('running','succeeded','failed','refused'));
ALTER TABLE job_runs ADD COLUMN published_at text;
-- Runs of earlier versions published their marts before committing.
UPDATE job_runs SET published_at = finished_at WHERE status = 'succeeded';

ALTER TABLE job_leases ADD COLUMN command text;

UPDATE email_outbox SET queued_at = substr(queued_at, 1, 19) || '.000Z' WHERE length(queued_at) = 20;
UPDATE email_outbox SET sent_at = substr(sent_at, 1, 19) || '.000Z' WHERE length(sent_at) = 20;
-- The network-health report was queued without its period; the key names it.
UPDATE email_outbox SET period = substr(dedup_key, 16, 7)
  WHERE kind = 'network_health' AND period IS NULL AND dedup_key LIKE 'network_health:____-__:%';
