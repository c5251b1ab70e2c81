# Generates the two dialects of the initial migration from one table list, so the
# PostgreSQL and SQLite schemas cannot drift. Run once; the .sql files are committed.
T = {  # logical type -> (postgres, sqlite)
 'text': ('text', 'TEXT'), 'int': ('bigint', 'INTEGER'), 'bp': ('integer', 'INTEGER'),
 'bool': ('boolean', 'BOOLEAN'), 'float': ('double precision', 'REAL'),
}
tables = [
 ('job_runs', [('run_id','text','PRIMARY KEY'),('job','text','NOT NULL'),('period','text',''),('started_at','text','NOT NULL'),
   ('finished_at','text',''),('status','text',"NOT NULL CHECK (status IN ('running','succeeded','failed'))"),('plan_version','text',''),
   ('input_fingerprint','text',''),('snapshot','text',''),('rows_in','int','NOT NULL DEFAULT 0'),('rows_quarantined','int','NOT NULL DEFAULT 0'),
   ('rows_out','int','NOT NULL DEFAULT 0'),('error','text',''),('host','text','')],
  ['CREATE INDEX job_runs_job_period ON job_runs (job, period, status)']),
 ('payout_statements', [('period','text','NOT NULL'),('operator_id','text','NOT NULL'),('currency','text','NOT NULL'),('phase','text','NOT NULL'),
   ('tier','text','NOT NULL'),('software_cents','int','NOT NULL'),('implementation_cents','int','NOT NULL'),('support_cents','int','NOT NULL'),
   ('operator_share_cents','int','NOT NULL'),('candlefish_share_cents','int','NOT NULL'),('clawback_cents','int','NOT NULL'),
   ('carried_in_cents','int','NOT NULL'),('payable_cents','int','NOT NULL'),('carried_out_cents','int','NOT NULL'),
   ('statement_on','text','NOT NULL'),('due_on','text','NOT NULL'),('status','text',"NOT NULL CHECK (status IN ('draft','approved','sent'))"),
   ('revision','int','NOT NULL'),('plan_version','text','NOT NULL'),('approved_at','text',''),('sent_at','text',''),('run_id','text','NOT NULL')],
  ['CREATE UNIQUE INDEX payout_statements_key ON payout_statements (period, operator_id, currency, revision)']),
 ('payout_lines', [('period','text','NOT NULL'),('operator_id','text','NOT NULL'),('currency','text','NOT NULL'),('invoice_id','text','NOT NULL'),
   ('line_no','int','NOT NULL'),('refund_id','text',''),('revenue_type','text','NOT NULL'),('kind','text',"NOT NULL CHECK (kind IN ('collection','clawback'))"),
   ('amount_cents','int','NOT NULL'),('operator_bp','bp','NOT NULL'),('operator_cents','int','NOT NULL'),('candlefish_cents','int','NOT NULL'),
   ('collected_period','text','NOT NULL'),('revision','int','NOT NULL'),('run_id','text','NOT NULL')],
  ["CREATE UNIQUE INDEX payout_lines_key ON payout_lines (period, invoice_id, line_no, kind, COALESCE(refund_id, ''))",
   'CREATE INDEX payout_lines_line ON payout_lines (invoice_id, line_no)']),
 ('reconciliation_exceptions', [('period','text','NOT NULL'),('kind','text','NOT NULL'),('invoice_id','text',''),('line_no','int',''),
   ('customer_id','text',''),('refund_id','text',''),('detail','text','NOT NULL'),('run_id','text','NOT NULL')],
  ['CREATE INDEX reconciliation_exceptions_key ON reconciliation_exceptions (period, kind, invoice_id, line_no)']),
 ('operator_tiers', [('period','text','NOT NULL'),('operator_id','text','NOT NULL'),('active_customers','int','NOT NULL'),('tier','text','NOT NULL'),
   ('previous_tier','text','NOT NULL'),('change','text',"NOT NULL CHECK (change IN ('promotion','demotion','none'))"),('run_id','text','NOT NULL')],
  ['CREATE UNIQUE INDEX operator_tiers_key ON operator_tiers (period, operator_id)']),
 ('exclusivity_checks', [('period','text','NOT NULL'),('operator_id','text','NOT NULL'),('territory_id','text','NOT NULL'),('currency','text','NOT NULL'),
   ('mrr_cents','int','NOT NULL'),('active_customers','int','NOT NULL'),('qoq_growth','float',''),('csat_share','float',''),('csat_responses','int','NOT NULL DEFAULT 0'),
   ('satisfaction','text',''),('compliant','bool','NOT NULL'),('failed_criteria','text',"NOT NULL DEFAULT ''"),('consecutive_breaches','int','NOT NULL'),
   ('escalated','bool','NOT NULL'),('run_id','text','NOT NULL')],
  ['CREATE UNIQUE INDEX exclusivity_checks_key ON exclusivity_checks (period, operator_id, territory_id)']),
 ('operator_metrics', [('period','text','NOT NULL'),('operator_id','text','NOT NULL'),('metric','text','NOT NULL'),('value','float',''),
   ('threshold','float','NOT NULL'),('breached','bool','NOT NULL'),('run_id','text','NOT NULL')],
  ['CREATE UNIQUE INDEX operator_metrics_key ON operator_metrics (period, operator_id, metric)']),
 ('network_health', [('period','text','NOT NULL'),('metric','text','NOT NULL'),('dimension','text',''),('value','float',''),('value_cents','int',''),
   ('target','float',''),('on_target','bool',''),('run_id','text','NOT NULL')],
  ["CREATE UNIQUE INDEX network_health_key ON network_health (period, metric, COALESCE(dimension, ''))"]),
 ('email_outbox', [('message_id','text','PRIMARY KEY'),('dedup_key','text','NOT NULL UNIQUE'),('kind','text','NOT NULL'),('period','text',''),
   ('recipient','text','NOT NULL'),('sender','text','NOT NULL'),('subject','text','NOT NULL'),
   ('status','text',"NOT NULL CHECK (status IN ('queued','sent','failed'))"),('attempts','int','NOT NULL DEFAULT 0'),
   ('last_error','text',''),('sent_at','text',''),('queued_at','text','NOT NULL'),('run_id','text',''),('body','text','NOT NULL')],
  ['CREATE INDEX email_outbox_status ON email_outbox (status)']),
]
for dialect, idx in (('postgres',0),('sqlite',1)):
    out = ['-- opnet schema v1 (%s). Generated from one table list so both dialects match;' % dialect,
           '-- money is bigint cents, shares integer basis points, periods text YYYY-MM,',
           '-- dates text YYYY-MM-DD and timestamps text RFC 3339 UTC (see docs/database.md).', '']
    for name, cols, extra in tables:
        body = ',\n'.join('  %s %s%s' % (c, T[t][idx], (' ' + k) if k else '') for c, t, k in cols)
        out.append('CREATE TABLE %s (\n%s\n);' % (name, body))
        out += [e + ';' for e in extra]
        out.append('')
    open('sql/%s/0001_init.sql' % dialect, 'w').write('\n'.join(out))
