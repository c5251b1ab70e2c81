-- opnet schema v3: which scheduler process started a run (issue 5, crash recovery).
-- `lease_holder` is the job_leases.holder of the scheduler that ran it, NULL for runs
-- of manual commands. A scheduler that takes the lease over marks the `running` rows
-- of every other holder as interrupted at once: those processes no longer hold the
-- lease, so their runs cannot commit (finish_run only succeeds on a `running` row).

ALTER TABLE job_runs ADD COLUMN lease_holder text;
