-- opnet schema v2 (postgres): leases of the scheduler daemon (issue 5). One row per
-- lease name; a holder owns it until expires_at (RFC 3339 UTC text, like every
-- timestamp here), renews it while it works, and a crashed holder's expired lease is
-- taken over by the next `INSERT … ON CONFLICT … WHERE expires_at < now`.

CREATE TABLE job_leases (
  name text PRIMARY KEY,
  holder text NOT NULL,
  acquired_at text NOT NULL,
  expires_at text NOT NULL
);
