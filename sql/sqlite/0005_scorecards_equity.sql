-- opnet schema v5 (issue 12): the operator scorecard (R8.1) and equity eligibility
-- (R8.2), written by the monthly jobs `scorecard` and `equity`.

CREATE TABLE operator_scorecards (
  period TEXT NOT NULL,
  operator_id TEXT NOT NULL,
  component TEXT NOT NULL,
  value REAL,
  score REAL,
  weight REAL NOT NULL,
  run_id TEXT NOT NULL
);
CREATE UNIQUE INDEX operator_scorecards_key ON operator_scorecards (period, operator_id, component);

CREATE TABLE equity_eligibility (
  period TEXT NOT NULL,
  operator_id TEXT NOT NULL,
  tenure_months INTEGER NOT NULL,
  tier TEXT NOT NULL,
  mrr_cents INTEGER NOT NULL,
  retention REAL,
  eligible BOOLEAN NOT NULL,
  failed_criteria TEXT NOT NULL,
  change TEXT NOT NULL CHECK (change IN ('gained','lost','none')),
  run_id TEXT NOT NULL
);
CREATE UNIQUE INDEX equity_eligibility_key ON equity_eligibility (period, operator_id);
