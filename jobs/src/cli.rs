//! The `opnet` command line. Parsing, config resolution and output formatting live
//! here; each command calls into the library and reports errors with context.
//!
//! On a terminal, long steps show a progress bar and logs are quiet (warnings);
//! otherwise (cron, CI, containers) logs are structured `tracing` lines at info.
//!
//! Exit codes: 0 done; 1 failed (the error is on stderr); 2 usage error; 3 the work
//! was done but mail it queued or sent is left `failed` ([`EXIT_MAIL_FAILED`]; the
//! commands that send mail: close, deliver, payouts send, schedule --once, demo); 75
//! another process holds the lease and nothing was done ([`EXIT_LEASE_BUSY`]).

use crate::app::App;
use crate::close::{self, CloseOptions};
use crate::commands::payouts;
use crate::config::{Config, Overrides};
use crate::generate::{self, Format, GenerateOptions};
use crate::term::{print_close, print_ingest, table};
use anyhow::{Context, Result};
use chrono::Utc;
use clap::{Args, Parser, Subcommand};
use opnet_pipelines::Period;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The command did its work, but mail it queued or tried to send is `failed`.
pub const EXIT_MAIL_FAILED: u8 = 3;
/// Another opnet process holds the lease; the command did nothing (EX_TEMPFAIL).
pub const EXIT_LEASE_BUSY: u8 = 75;

/// opnet — the batch back office of the Candlefish Operator Network.
///
/// Pulls billing, CRM and survey data into a Parquet lake, computes the month
/// (payouts, tiers, exclusivity, alerts, network health), distributes new leads,
/// writes the results to a SQL database and sends the emails.
#[derive(Debug, Parser)]
#[command(name = "opnet", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Global options: each also reads an environment variable and a config-file key
/// (flag > environment > file > default).
#[derive(Debug, Args)]
pub struct Global {
    /// Config file (TOML; see deploy/opnet.example.toml). Default: ./opnet.toml if present.
    #[arg(long, global = true, env = "OPNET_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the input datasets are: a folder or s3://bucket[/prefix]
    /// [default: ./opnet-data/source]
    #[arg(long, global = true, env = "OPNET_SOURCE", value_name = "DIR|s3://…")]
    pub source: Option<String>,
    /// Where the Parquet lake is kept: a folder or s3://bucket[/prefix]
    /// [default: ./opnet-data/lake]
    #[arg(long, global = true, env = "OPNET_LAKE", value_name = "DIR|s3://…")]
    pub lake: Option<String>,
    /// Results database [default: sqlite://./opnet-data/opnet.db]
    #[arg(long, global = true, env = "DATABASE_URL", value_name = "URL")]
    pub database: Option<String>,
    /// Mail transport: file:DIR, smtp://HOST[:PORT], smtp+starttls://HOST[:PORT] or
    /// smtps://HOST[:PORT] [default: file:./opnet-data/outbox]. SMTP login: OPNET_SMTP_USERNAME
    /// and OPNET_SMTP_PASSWORD_FILE (or OPNET_SMTP_PASSWORD); extra CA: OPNET_SMTP_CA_FILE.
    #[arg(long, global = true, env = "OPNET_MAIL", value_name = "URL")]
    pub mail: Option<String>,
    /// S3 endpoint override for S3-compatible servers ([s3] endpoint) [default: the
    /// AWS chain: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, profile, else AWS]
    #[arg(
        long,
        global = true,
        env = "OPNET_S3_ENDPOINT",
        value_name = "URL",
        help_heading = "S3 (for s3:// source and lake)"
    )]
    pub s3_endpoint: Option<String>,
    /// S3 region ([s3] region) [default: the AWS chain: AWS_REGION, profile, IMDS]
    #[arg(
        long,
        global = true,
        env = "OPNET_S3_REGION",
        value_name = "REGION",
        help_heading = "S3 (for s3:// source and lake)"
    )]
    pub s3_region: Option<String>,
    /// Path-style S3 addressing, as most S3-compatible servers need ([s3]
    /// force_path_style) [default: false]
    #[arg(
        long,
        global = true,
        env = "OPNET_S3_FORCE_PATH_STYLE",
        value_name = "true|false",
        help_heading = "S3 (for s3:// source and lake)"
    )]
    pub s3_force_path_style: Option<bool>,
    /// Email `email.ops` when a run fails (the scheduler always does; a command at a
    /// terminal reports on stderr only).
    #[arg(long, global = true, env = "OPNET_NOTIFY")]
    pub notify: bool,
    /// Seconds to wait for another opnet process working on the database (the lease)
    /// before giving up with exit code 75 [default: 0, give up at once].
    #[arg(long, global = true, value_name = "SECS", default_value_t = 0)]
    pub lease_wait: u64,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate demo data, run the close for its months, distribute the leads once,
    /// print a summary.
    Demo {
        /// Operators in the demo network.
        #[arg(long, default_value_t = 60)]
        operators: usize,
        /// Months of history.
        #[arg(long, default_value_t = 15)]
        months: u32,
        /// Seed of the generator: the same seed and sizes give the same network
        /// (its last month is the last complete month).
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Write a synthetic operator network in the data-contract layout.
    Generate {
        /// Folder to write the datasets to (`<system>/<name>.<ext>`).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Operators the network has had (terminated ones included).
        #[arg(long, default_value_t = 100)]
        operators: usize,
        /// Months of billing, lead and survey data, ending with --end.
        #[arg(long, default_value_t = 24)]
        months: u32,
        /// Seed of the generator: the same options give byte-identical files.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// File format of the datasets.
        #[arg(long, value_enum, default_value_t = Format::Csv)]
        format: Format,
        /// Last month of the data [default: the last complete month].
        #[arg(long, value_name = "YYYY-MM")]
        end: Option<Period>,
    },
    /// Snapshot every source dataset into the lake (validated; bad rows quarantined).
    Ingest,
    /// Monthly close for each period in order (ingest first).
    Close {
        /// Last period to close [default: the last complete month].
        #[arg(long, value_name = "YYYY-MM")]
        through: Option<Period>,
        /// First period [default: the first month with billing data].
        #[arg(long, value_name = "YYYY-MM")]
        from: Option<Period>,
        /// R1.9: write a new revision of approved periods instead of refusing them.
        #[arg(long)]
        revise: bool,
        /// Re-run against a recorded lake snapshot instead of ingesting.
        #[arg(long, value_name = "ID")]
        snapshot: Option<String>,
        /// Run only this job of the registry (repeatable), e.g. payouts; an unknown
        /// name is refused with the list of jobs.
        #[arg(long = "job", value_name = "NAME")]
        only: Vec<String>,
        /// Which mails go out: `recent` sends only mail of the latest
        /// email.operator_mail_max_age_months complete months (older periods' mail is
        /// recorded `suppressed`, the internal lists get one backfill summary); `all`
        /// sends everything, also mail an earlier close suppressed; `none` sends nothing.
        /// (Not `--mail`: that is the global mail transport.)
        #[arg(long = "send-mail", value_enum, value_name = "WHICH", default_value_t = close::MailPolicy::Recent)]
        send_mail: close::MailPolicy,
    },
    /// Recent runs from the ledger.
    Runs {
        /// How many of the latest runs to list.
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Payout statements: show, approve, send.
    #[command(subcommand)]
    Payouts(PayoutsCommand),
    /// Operator scorecards (R8.1) of a closed period.
    #[command(subcommand)]
    Scorecard(ScorecardCommand),
    /// What a plan change would have paid: the recorded payout closes computed again
    /// under another plan file, compared per operator, period and currency. Writes
    /// nothing to the database and sends nothing.
    Simulate {
        /// The plan file to try (same format as the config's plan_file). A version not
        /// yet in force at --through applies to every period, as if from --from.
        #[arg(long, value_name = "FILE")]
        plan: PathBuf,
        /// First period [default: the first period with a recorded payouts close].
        #[arg(long, value_name = "YYYY-MM")]
        from: Option<Period>,
        /// Last period [default: the last period with a recorded payouts close].
        #[arg(long, value_name = "YYYY-MM")]
        through: Option<Period>,
        /// Folder for simulation.csv and index.html [default: ./simulation-<plan file name>].
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Write the leadership network-health report for a period (without sending it).
    Report {
        /// The closed period to report on.
        #[arg(long, value_name = "YYYY-MM")]
        period: Period,
        /// The HTML file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Deliver queued emails now (failed ones are retried up to 5 attempts).
    Deliver,
    /// Validate the configuration and plan, print the resolved values.
    Check,
    /// Scheduler daemon: wake at the `[schedule]` times (and at start-up), close every
    /// period the ledger says is due; stops gracefully on SIGTERM/SIGINT.
    Schedule {
        /// One wake-up of every schedule, then exit (tests, Kubernetes CronJobs).
        #[arg(long)]
        once: bool,
    },
    /// Schedules with their next fire times, last run per job, due periods, mail queue.
    Status,
    /// Lead distribution (R8.3): assign new leads now, or show the assignments.
    #[command(subcommand)]
    Leads(LeadsCommand),
}

#[derive(Debug, Subcommand)]
pub enum LeadsCommand {
    /// Assign every unassigned lead created by T, once (R8.3); mail each operator its
    /// new leads and ops the ones without capacity; publish the assignments.
    Assign {
        /// The run's time T (RFC 3339, e.g. 2025-06-15T12:00:00Z); the same T on the
        /// same data assigns the same way [default: now].
        #[arg(long, value_name = "RFC3339", value_parser = crate::commands::leads::parse_at)]
        at: Option<chrono::DateTime<Utc>>,
    },
    /// A table of the assignments made since a time.
    Show {
        /// Assignments made at or after this time [default: the last 7 days].
        #[arg(long, value_name = "RFC3339|YYYY-MM-DD", value_parser = crate::commands::leads::parse_since)]
        since: Option<chrono::DateTime<Utc>>,
        /// Only this operator's leads.
        #[arg(long, value_name = "ID")]
        operator: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ScorecardCommand {
    /// A table of a period's scorecards: every operator's total and component scores,
    /// or one operator's components with their values.
    Show {
        /// The closed period.
        #[arg(long, value_name = "YYYY-MM")]
        period: Period,
        /// Only this operator's scorecard.
        #[arg(long, value_name = "ID")]
        operator: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PayoutsCommand {
    /// A readable table of a period's statements (latest revision).
    Show {
        /// The period whose statements to show.
        #[arg(long, value_name = "YYYY-MM")]
        period: Period,
        /// Only this operator's statements.
        #[arg(long, value_name = "ID")]
        operator: Option<String>,
    },
    /// Approve a period's draft statements (all, or one operator's).
    Approve {
        #[arg(long, value_name = "YYYY-MM")]
        period: Period,
        #[arg(long, value_name = "ID")]
        operator: Option<String>,
    },
    /// Email approved statements to their operators (drafts are never sent).
    Send {
        #[arg(long, value_name = "YYYY-MM")]
        period: Period,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(Outcome { mail_failed: 0 }) => ExitCode::SUCCESS,
        Ok(Outcome { mail_failed }) => {
            eprintln!(
                "error: {mail_failed} email(s) of this command are failed (see `opnet status`, and \
                 email_outbox.last_error for why: docs/operations.md, \"Recover a failed mail\"); \
                 `opnet deliver` tries them again"
            );
            ExitCode::from(EXIT_MAIL_FAILED)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            let busy = e.chain().any(|c| {
                matches!(
                    c.downcast_ref::<crate::schedule::ScheduleError>(),
                    Some(crate::schedule::ScheduleError::LeaseBusy { .. })
                )
            });
            if busy {
                ExitCode::from(EXIT_LEASE_BUSY)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// How a command that did its work ended.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Mails this command queued or tried to send that are now `failed`.
    pub mail_failed: i64,
}

/// Logs go to stderr: at info (a line per run and per delivery batch; per-mail lines
/// are debug) when unattended, warnings only at a terminal, where the commands print
/// their own summary. Colour only when stderr is a terminal and `NO_COLOR` is unset
/// or empty (no-color.org), so a log file never holds escape codes.
fn init_logging() {
    let default = if std::io::stdout().is_terminal() {
        "warn"
    } else {
        "info"
    };
    let mut filter = tracing_subscriber::EnvFilter::try_from_env("OPNET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // sqlx warns about a connection parameter it does not know with its value
    // (`?sslpassword=…`): a credential must never reach a log (issue 9 item 12).
    if let Ok(quiet) = "sqlx_postgres::options::parse=error".parse() {
        filter = filter.add_directive(quiet);
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(log_colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR"),
        ))
        .try_init();
}

/// Whether log lines get ANSI colour: only on a terminal, and never when `NO_COLOR`
/// is set to a non-empty value.
fn log_colour(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

fn overrides(g: &Global) -> Overrides {
    Overrides {
        config: g.config.clone(),
        source: g.source.clone(),
        lake: g.lake.clone(),
        database: g.database.clone(),
        mail: g.mail.clone(),
        smtp_username: env("OPNET_SMTP_USERNAME"),
        smtp_password: env("OPNET_SMTP_PASSWORD"),
        smtp_password_file: env("OPNET_SMTP_PASSWORD_FILE"),
        smtp_ca_file: env("OPNET_SMTP_CA_FILE"),
        s3_endpoint: g.s3_endpoint.clone(),
        s3_region: g.s3_region.clone(),
        s3_force_path_style: g.s3_force_path_style,
        env: crate::config::env_overrides(std::env::vars()),
    }
}

/// A set, non-empty environment variable.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

pub async fn run(cli: Cli) -> Result<Outcome> {
    let Cli { global, command } = cli;
    // Generating data needs no config, database or lake.
    if let Command::Generate {
        out,
        operators,
        months,
        seed,
        format,
        end,
    } = command
    {
        // No config here: the generator's calendar is UTC.
        let end =
            end.unwrap_or_else(|| crate::app::last_complete_period(Utc::now(), chrono_tz::Tz::UTC));
        generate_command(&GenerateOptions {
            out,
            operators,
            months,
            end,
            seed,
            format,
        })?;
        return Ok(Outcome::default());
    }
    let config = Config::load(&overrides(&global))?;
    let started = Utc::now();
    match command {
        Command::Check => {
            print_check(&config);
            Ok(Outcome::default())
        }
        Command::Demo {
            operators,
            months,
            seed,
        } => {
            let database = config.database.clone();
            crate::commands::demo::run(config, operators, months, seed).await?;
            let db = crate::db::Db::connect(&database).await?;
            Ok(Outcome {
                mail_failed: crate::mail::outbox::failed_since(&db.pool, started).await?,
            })
        }
        command => {
            let mut app = App::open(config).await?;
            // Recorded on the runs and mail claims of this process (crash recovery, fencing).
            app.lease_holder = Some(crate::schedule::holder_id());
            app.notify = global.notify;
            if matches!(command, Command::Schedule { .. }) {
                app.notify = true;
                app.invocation = crate::app::Invocation::Scheduled;
            }
            // The commands that queue or send mail answer for it in their exit code; a
            // read-only command (or the daemon, which runs until stopped) does not.
            let sends_mail = matches!(
                command,
                Command::Close { .. }
                    | Command::Deliver
                    | Command::Payouts(PayoutsCommand::Send { .. })
                    | Command::Schedule { once: true }
                    | Command::Leads(LeadsCommand::Assign { .. })
            );
            app_command(&mut app, command, Duration::from_secs(global.lease_wait)).await?;
            if !sends_mail {
                return Ok(Outcome::default());
            }
            Ok(Outcome {
                mail_failed: crate::mail::outbox::failed_since(&app.db.pool, started).await?,
            })
        }
    }
}

/// `opnet generate`: the synthetic network, and a table of what was written.
fn generate_command(opts: &GenerateOptions) -> Result<()> {
    let started = std::time::Instant::now();
    let summary = generate::generate(opts)?;
    let mut t = table(["dataset", "rows"]);
    for (d, n) in &summary.rows {
        t.add_row([d.clone(), n.to_string()]);
    }
    println!("{t}");
    println!(
        "wrote {} .. {} to {} in {:.1}s",
        summary.first_period,
        summary.last_period,
        summary.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `opnet check`: the resolved configuration (credentials masked), once it is valid.
fn print_check(config: &Config) {
    println!(
        "config file: {}",
        config
            .file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or("(none)".into())
    );
    println!("source:      {}", config.source);
    println!("lake:        {}", config.lake);
    println!("database:    {}", crate::db::redact(&config.database));
    println!("mail:        {}", config.mail);
    if let Some(user) = &config.smtp.username {
        let from = match &config.smtp.password {
            Some(crate::mail::smtp::Password::File(p)) => format!("file {}", p.display()),
            Some(crate::mail::smtp::Password::Value(_)) => "OPNET_SMTP_PASSWORD".into(),
            None => "(none)".into(),
        };
        println!("smtp login:  {user}, password from {from}");
    }
    if let Some(ca) = &config.smtp.ca_file {
        println!("smtp ca:     {}", ca.display());
    }
    if config.source.starts_with("s3://") || config.lake.starts_with("s3://") {
        // What opnet sets; unset values come from the AWS chain when a store opens.
        let chain = || "(AWS chain)".to_string();
        println!(
            "s3:          endpoint {}, region {}, path-style {}",
            config.s3.endpoint.clone().unwrap_or_else(chain),
            config.s3.region.clone().unwrap_or_else(chain),
            config.s3.force_path_style.unwrap_or(false)
        );
    }
    println!(
        "plan:        {} ({} version(s))",
        config.plan_origin,
        config.plan.versions.len()
    );
    println!("configuration is valid");
}

/// The commands that run against the database and the stores. Those that change
/// what others read or send mail take the scheduler's lease (issue 9).
async fn app_command(app: &mut App, command: Command, wait: Duration) -> Result<()> {
    let holder = app.lease_holder.clone().unwrap_or_default();
    match command {
        Command::Ingest => {
            app.invocation = crate::app::Invocation::Command("opnet ingest".into());
            let app = &*app;
            let r =
                crate::schedule::with_command_lease(app, &holder, "opnet ingest", wait, async {
                    close::run_ingest(app, Utc::now()).await
                })
                .await?;
            print_ingest(&r);
        }
        Command::Close {
            through,
            from,
            revise,
            snapshot,
            only,
            send_mail,
        } => {
            let opts = CloseOptions {
                from,
                through,
                revise,
                snapshot,
                only,
                mail: send_mail,
                defer_backfill_summary: false,
            };
            let command = close_command_line(&opts);
            app.invocation = crate::app::Invocation::Command(command.clone());
            let app = &*app;
            let r = crate::schedule::with_command_lease(app, &holder, &command, wait, async {
                close::close(app, &opts, Utc::now()).await
            })
            .await?;
            if let Some(i) = &r.ingest {
                print_ingest(i);
            }
            print_close(&r);
        }
        Command::Deliver => {
            let app = &*app;
            let r =
                crate::schedule::with_command_lease(app, &holder, "opnet deliver", wait, async {
                    close::deliver(app).await
                })
                .await?;
            println!(
                "delivered {} email(s), {} failed, via {}",
                r.sent, r.failed, app.transport
            );
        }
        Command::Runs { limit } => print_runs(app, limit).await?,
        Command::Payouts(command) => payouts_command(app, command, &holder, wait).await?,
        Command::Scorecard(ScorecardCommand::Show { period, operator }) => {
            println!(
                "{}",
                crate::commands::scorecard::show(app, period, operator.as_deref()).await?
            );
        }
        Command::Simulate {
            plan,
            from,
            through,
            out,
        } => {
            let opts = crate::commands::simulate::Options {
                plan_file: plan,
                from,
                through,
                out,
            };
            print!("{}", crate::commands::simulate::run(app, &opts).await?.text);
        }
        Command::Report { period, out } => {
            let report = crate::commands::report::report(app, period).await?;
            std::fs::write(&out, report.html)
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "wrote the {period} network-health report to {}",
                out.display()
            );
        }
        Command::Schedule { once } => {
            let cfg = app.config.schedule.clone();
            if once {
                let log = crate::schedule::run_once(app, &cfg, crate::schedule::shutdown_signal())
                    .await?;
                for line in log {
                    println!("{line}");
                }
            } else {
                crate::schedule::run_daemon(app, &cfg, crate::schedule::shutdown_signal()).await?;
            }
        }
        Command::Status => {
            let cfg = app.config.schedule.clone();
            println!("{}", crate::schedule::status(app, &cfg, Utc::now()).await?);
        }
        Command::Leads(command) => leads_command(app, command, &holder, wait).await?,
        Command::Generate { .. } | Command::Demo { .. } | Command::Check => {
            anyhow::bail!("this command runs without the database (an opnet bug if you see this)")
        }
    }
    Ok(())
}

/// The close as it can be typed again, for the failure mail's re-run hint and the
/// lease (no secrets: built from the parsed options, never from the raw command line).
fn close_command_line(opts: &CloseOptions) -> String {
    let mut command = "opnet close".to_string();
    for (flag, v) in [
        ("--from", opts.from.map(|p| p.to_string())),
        ("--through", opts.through.map(|p| p.to_string())),
        ("--snapshot", opts.snapshot.clone()),
    ] {
        if let Some(v) = v {
            command.push_str(&format!(" {flag} {v}"));
        }
    }
    for j in &opts.only {
        command.push_str(&format!(" --job {j}"));
    }
    if opts.revise {
        command.push_str(" --revise");
    }
    command
}

/// `opnet runs`: the latest runs of the ledger.
async fn print_runs(app: &App, limit: i64) -> Result<()> {
    let mut t = table([
        "run_id",
        "job",
        "period",
        "status",
        "started_at",
        "rows in/quar/out",
        "plan",
        "snapshot",
        "error",
    ]);
    for r in app.db.recent_runs(limit).await? {
        t.add_row([
            r.run_id,
            r.job,
            r.period.unwrap_or_default(),
            r.status,
            r.started_at,
            format!("{}/{}/{}", r.rows_in, r.rows_quarantined, r.rows_out),
            r.plan_version.unwrap_or_default(),
            r.snapshot.unwrap_or_default(),
            r.error.unwrap_or_default(),
        ]);
    }
    println!("{t}");
    Ok(())
}

/// `opnet leads assign|show` (R8.3): an assignment run takes the lease like a close.
async fn leads_command(
    app: &mut App,
    command: LeadsCommand,
    holder: &str,
    wait: Duration,
) -> Result<()> {
    match command {
        LeadsCommand::Assign { at } => {
            let at = at.unwrap_or_else(Utc::now);
            let line = format!("opnet leads assign --at {}", crate::db::timestamp(at));
            app.invocation = crate::app::Invocation::Command(line.clone());
            let app = &*app;
            let r = crate::schedule::with_command_lease(app, holder, &line, wait, async {
                crate::leads::assign(app, at).await
            })
            .await?;
            println!("{}", crate::commands::leads::summary(&r));
            if !r.problems.is_empty() {
                anyhow::bail!(
                    "lead run {} committed, but {} step(s) after it failed (see above)",
                    r.run_id,
                    r.problems.len()
                );
            }
        }
        LeadsCommand::Show { since, operator } => {
            println!(
                "{}",
                crate::commands::leads::show(app, since, operator.as_deref()).await?
            );
        }
    }
    Ok(())
}

/// `opnet payouts show|approve|send` (R1.9).
async fn payouts_command(
    app: &App,
    command: PayoutsCommand,
    holder: &str,
    wait: Duration,
) -> Result<()> {
    match command {
        PayoutsCommand::Show { period, operator } => {
            println!("{}", payouts::show(app, period, operator.as_deref()).await?);
        }
        PayoutsCommand::Approve { period, operator } => {
            let command = format!("opnet payouts approve --period {period}");
            let a = crate::schedule::with_command_lease(app, holder, &command, wait, async {
                payouts::approve_explained(app, period, operator.as_deref(), Utc::now()).await
            })
            .await?;
            println!("{}", a.message);
        }
        PayoutsCommand::Send { period } => {
            let command = format!("opnet payouts send --period {period}");
            let (queued, delivery) =
                crate::schedule::with_command_lease(app, holder, &command, wait, async {
                    payouts::send(app, period, Utc::now()).await
                })
                .await?;
            println!(
                "{queued} statement email(s) queued for {period}; delivered {} (failed {}) via {}",
                delivery.sent, delivery.failed, app.config.mail
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::log_colour;

    #[test]
    fn log_colour_only_on_a_terminal_and_never_with_no_color() {
        assert!(log_colour(true, None));
        assert!(
            !log_colour(false, None),
            "a file or pipe gets no escape codes"
        );
        assert!(!log_colour(true, Some("1".into())));
        // no-color.org: an empty NO_COLOR does not count.
        assert!(log_colour(true, Some("".into())));
    }
}
