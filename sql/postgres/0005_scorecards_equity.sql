-- opnet schema v5 (issue 12): the operator scorecard (R8.1) and equity eligibility
-- (R8.2), written by the monthly jobs `scorecard` and `equity`.

CREATE TABLE operator_scorecards (
  period text NOT NULL,
  operator_id text NOT NULL,
  component text NOT NULL,
  value double precision,
  score double precision,
  weight double precision NOT NULL,
  run_id text NOT NULL
);
CREATE UNIQUE INDEX operator_scorecards_key ON operator_scorecards (period, operator_id, component);

CREATE TABLE equity_eligibility (
  period text NOT NULL,
  operator_id text NOT NULL,
  tenure_months bigint NOT NULL,
  tier text NOT NULL,
  mrr_cents bigint NOT NULL,
  retention double precision,
  eligible boolean NOT NULL,
  failed_criteria text NOT NULL,
  change text NOT NULL CHECK (change IN ('gained','lost','none')),
  run_id text NOT NULL
);
CREATE UNIQUE INDEX equity_eligibility_key ON equity_eligibility (period, operator_id);
