//! Typed configuration: one TOML file (`deploy/opnet.example.toml` documents every
//! key), overridden by environment variables and command-line flags.
//!
//! Order, highest first: flag > environment variable > config file > embedded
//! default. Every key of the file can be set from the environment by one rule:
//! `OPNET__<SECTION>__<KEY>` (`OPNET__EMAIL__FINANCE='["finance@x.example"]'`,
//! `OPNET__CLOSE__MAX_BACKFILL_MONTHS=48`, `OPNET__DATABASE=postgres://…`): the value
//! is read as a TOML value (a string when it is not one) and layered over the file
//! before it is read, so it is checked exactly like the file. The flags' own variables
//! (`OPNET_SOURCE`, `DATABASE_URL`, …) rank above it, as flags do. Validation is pure
//! (no filesystem or network), collects every problem, and names the file and key of
//! each; it runs once at start-up.

use crate::mail::smtp::{Password, Secret};
use crate::store::S3Config;
use opnet_pipelines::PlanBook;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Embedded defaults: everything under `./opnet-data`, SQLite, `.eml` outbox.
pub const DEFAULT_SOURCE: &str = "./opnet-data/source";
pub const DEFAULT_LAKE: &str = "./opnet-data/lake";
pub const DEFAULT_DATABASE: &str = "sqlite://./opnet-data/opnet.db";
pub const DEFAULT_MAIL: &str = "file:./opnet-data/outbox";

/// The config file as written (every key optional). `Debug` masks credentials.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Source folder (local directory or `s3://bucket/prefix`).
    pub source: Option<String>,
    /// Lake folder (local directory or `s3://bucket/prefix`).
    pub lake: Option<String>,
    /// `sqlite://FILE` or `postgres://…`.
    pub database: Option<String>,
    /// `file:DIR`, `smtp://HOST[:PORT]`, `smtp+starttls://HOST[:PORT]` or
    /// `smtps://HOST[:PORT]`.
    pub mail: Option<String>,
    /// Path of the compensation plan file (relative to this file); default: the Playbook.
    pub plan_file: Option<String>,
    #[serde(default)]
    pub email: EmailConfig,
    /// `[schedule]`: timezone and cron expressions of `opnet schedule` (issue 5).
    pub schedule: Option<crate::schedule::config::ScheduleFile>,
    /// `[sources."<system>/<name>"]`: datasets read from a SQL query instead of a file.
    #[serde(default)]
    pub sources: BTreeMap<String, SqlSource>,
    /// `[smtp]`: login and trust settings of an SMTP relay.
    #[serde(default)]
    pub smtp: SmtpFile,
    /// `[s3]`: endpoint, region and addressing of `s3://` sources and lakes.
    #[serde(default)]
    pub s3: S3Config,
    /// `[ingest]`: how much bad input an ingest tolerates, which dates are plausible.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// `[close]`: guards of `opnet close` and the scheduler's close.
    #[serde(default)]
    pub close: CloseConfig,
    /// `[leads]`: lead distribution's write-back to the CRM (R8.3).
    #[serde(default)]
    pub leads: crate::leads::config::LeadsConfig,
}

/// `[ingest]`: the bounds ingest applies beyond the data contract's types (issue 9).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// A dataset with a larger share of its rows quarantined fails the ingest (and
    /// the close), naming the dataset; 0..=1. Default 0.01 (1 %).
    pub max_quarantine_share: f64,
    /// Up to this many quarantined rows of a dataset never fail the ingest on the
    /// share alone, so a few bad rows of a small dataset are quarantined and reported
    /// rather than stopping the month. Default 10.
    pub quarantine_allowance_rows: usize,
    /// Dates and timestamps before this day are quarantined. Default 1990-01-01.
    #[serde(deserialize_with = "earliest_date")]
    pub earliest_date: chrono::NaiveDate,
    /// Dates and timestamps after the ingest day plus this many calendar months are
    /// quarantined. Default 12.
    pub max_months_ahead: u32,
}

/// `ingest.earliest_date` as `"YYYY-MM-DD"`; the error names the key (toml's own
/// message for a bad value does not).
fn earliest_date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<chrono::NaiveDate, D::Error> {
    let text = String::deserialize(d)?;
    chrono::NaiveDate::parse_from_str(&text, "%Y-%m-%d").map_err(|_| {
        serde::de::Error::custom(format!(
            "key ingest.earliest_date: expected a date \"YYYY-MM-DD\", got {text:?}"
        ))
    })
}

impl Default for IngestConfig {
    fn default() -> Self {
        let (y, m, d) = opnet_pipelines::contract::EARLIEST_DATE;
        Self {
            max_quarantine_share: 0.01,
            quarantine_allowance_rows: 10,
            earliest_date: chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default(),
            max_months_ahead: opnet_pipelines::contract::MAX_MONTHS_AHEAD,
        }
    }
}

/// `[close]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CloseConfig {
    /// A close whose `--from` is derived (the first month with billing activity) may
    /// run at most this many periods; more needs an explicit `--from` (issue 9).
    pub max_backfill_months: u32,
}

impl Default for CloseConfig {
    fn default() -> Self {
        CloseConfig {
            max_backfill_months: 36,
        }
    }
}

/// `[smtp]` as written. The password itself has no key: it comes from a file (a
/// mounted secret) or from `OPNET_SMTP_PASSWORD`, never from this file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SmtpFile {
    pub username: Option<String>,
    /// File holding the password (relative to the config file).
    pub password_file: Option<String>,
    /// PEM file of extra CA certificates to trust (relative to the config file).
    pub ca_file: Option<String>,
}

/// A dataset read from a SQL query (data-contract.md, "Inputs"): `url` is
/// `postgres://…`, `sqlite:…` or `env:NAME` (the URL is read from that environment
/// variable at ingest time, so it stays out of the file and the logs); `query` must
/// yield the contract's columns (any SQL type; each is read as text).
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SqlSource {
    pub url: String,
    pub query: String,
}

impl SqlSource {
    /// The database URL, with `env:NAME` looked up; `Err` names the variable.
    pub fn resolve_url(&self) -> Result<String, String> {
        match self.url.strip_prefix("env:") {
            Some(name) => std::env::var(name).map_err(|_| {
                format!("environment variable {name} (url = \"env:{name}\") is not set")
            }),
            None => Ok(self.url.clone()),
        }
    }

    /// The URL safe to show: `env:NAME` as written, otherwise without its password.
    pub fn display_url(&self) -> String {
        if self.url.starts_with("env:") {
            self.url.clone()
        } else {
            crate::db::redact(&self.url)
        }
    }
}

/// Who emails come from and which internal lists get what.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    /// From: of every email.
    pub from: String,
    /// Finance: the period summary of the payout close.
    pub finance: Vec<String>,
    /// Leadership: the monthly network-health report.
    pub leadership: Vec<String>,
    /// Partner success: exclusivity escalations.
    pub partner_success: Vec<String>,
    /// Operations: failed runs.
    pub ops: Vec<String>,
    /// Operator mail of a close (tier changes, alerts, exclusivity notices) is sent for
    /// the latest this-many complete months only; older periods' operator mail — and
    /// their per-period internal mail, which one backfill summary replaces — is
    /// recorded `suppressed` (issue 9). Default 1: the latest complete month.
    pub operator_mail_max_age_months: u32,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            from: "Candlefish Operator Network <payouts@candlefish.example>".into(),
            finance: vec!["finance@candlefish.example".into()],
            leadership: vec!["leadership@candlefish.example".into()],
            partner_success: vec!["partner-success@candlefish.example".into()],
            ops: vec!["ops@candlefish.example".into()],
            operator_mail_max_age_months: 1,
        }
    }
}

/// Values given on the command line or in the environment (clap merges the two).
/// `Debug` masks credentials.
#[derive(Clone, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub source: Option<String>,
    pub lake: Option<String>,
    pub database: Option<String>,
    pub mail: Option<String>,
    /// `OPNET_SMTP_USERNAME`, `OPNET_SMTP_PASSWORD`, `OPNET_SMTP_PASSWORD_FILE`,
    /// `OPNET_SMTP_CA_FILE` (environment only: a password on a command line would
    /// show in `ps`).
    pub smtp_username: Option<String>,
    pub smtp_password: Option<String>,
    pub smtp_password_file: Option<String>,
    pub smtp_ca_file: Option<String>,
    /// `[s3]` keys (OPNET_S3_ENDPOINT, OPNET_S3_REGION, OPNET_S3_FORCE_PATH_STYLE).
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    pub s3_force_path_style: Option<bool>,
    /// `OPNET__<SECTION>__<KEY>` variables (name, value), layered over the file.
    pub env: Vec<(String, String)>,
}

/// The resolved, validated configuration every command runs with. `Debug` masks
/// credentials (URLs through [`crate::db::redact`]).
#[derive(Clone)]
pub struct Config {
    pub source: String,
    pub lake: String,
    pub database: String,
    pub mail: String,
    pub email: EmailConfig,
    /// `opnet schedule`: business timezone, schedules, lease.
    pub schedule: crate::schedule::config::ScheduleConfig,
    pub plan: PlanBook,
    /// Where the plan came from, for messages and the ledger.
    pub plan_origin: String,
    /// The config file that was read, if any.
    pub file: Option<PathBuf>,
    /// Datasets read from a SQL query, by dataset path (`crm/operators`).
    pub sources: BTreeMap<String, SqlSource>,
    /// SMTP login and trust settings (used when `mail` is an SMTP URL).
    pub smtp: crate::mail::SmtpSettings,
    /// How `s3://` source and lake URLs are reached.
    pub s3: S3Config,
    /// `[ingest]`: quarantine bound and date window.
    pub ingest: IngestConfig,
    /// `[close]` guards.
    pub close: CloseConfig,
    /// `[leads]`: where lead assignments are written back (R8.3).
    pub leads: crate::leads::config::LeadsConfig,
}

// Issue 9 item 12: `Debug` of the config types never prints a credential. Written out
// by hand because a derived `Debug` prints URLs (and the SMTP password override) as
// they are; a URL goes through `db::redact`.
fn redacted(url: &str) -> String {
    crate::db::redact(url)
}

fn redacted_opt(url: &Option<String>) -> Option<String> {
    url.as_deref().map(redacted)
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("source", &redacted(&self.source))
            .field("lake", &redacted(&self.lake))
            .field("database", &redacted(&self.database))
            .field("mail", &redacted(&self.mail))
            .field("email", &self.email)
            .field("schedule", &self.schedule)
            .field("plan", &self.plan)
            .field("plan_origin", &self.plan_origin)
            .field("file", &self.file)
            .field("sources", &self.sources)
            .field("smtp", &self.smtp)
            .field("s3", &self.s3)
            .field("ingest", &self.ingest)
            .field("close", &self.close)
            .field("leads", &self.leads)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for FileConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileConfig")
            .field("source", &redacted_opt(&self.source))
            .field("lake", &redacted_opt(&self.lake))
            .field("database", &redacted_opt(&self.database))
            .field("mail", &redacted_opt(&self.mail))
            .field("plan_file", &self.plan_file)
            .field("email", &self.email)
            .field("schedule", &self.schedule)
            .field("sources", &self.sources)
            .field("smtp", &self.smtp)
            .field("s3", &self.s3)
            .field("ingest", &self.ingest)
            .field("close", &self.close)
            .field("leads", &self.leads)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Overrides {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overrides")
            .field("config", &self.config)
            .field("source", &redacted_opt(&self.source))
            .field("lake", &redacted_opt(&self.lake))
            .field("database", &redacted_opt(&self.database))
            .field("mail", &redacted_opt(&self.mail))
            .field("smtp_username", &self.smtp_username)
            .field(
                "smtp_password",
                &self.smtp_password.as_ref().map(|_| "*****"),
            )
            .field("smtp_password_file", &self.smtp_password_file)
            .field("smtp_ca_file", &self.smtp_ca_file)
            .field("s3_endpoint", &redacted_opt(&self.s3_endpoint))
            .field("s3_region", &self.s3_region)
            .field("s3_force_path_style", &self.s3_force_path_style)
            .field(
                "env",
                &self
                    .env
                    .iter()
                    .map(|(k, v)| (k.as_str(), redacted(v)))
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for SqlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlSource")
            .field("url", &self.display_url())
            .field("query", &self.query)
            .finish()
    }
}

/// Every problem found in the configuration, each naming its file and key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

impl Config {
    /// Resolve: read the config file (the `--config` one, or `./opnet.toml` when it
    /// exists), layer the overrides on top, load the plan, validate everything.
    pub fn load(over: &Overrides) -> Result<Config, ConfigError> {
        let (text, path) = match &over.config {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| ConfigError(vec![format!("{}: cannot read: {e}", p.display())]))?;
                (text, Some(p.clone()))
            }
            None if Path::new("opnet.toml").exists() => {
                let p = PathBuf::from("opnet.toml");
                let text = std::fs::read_to_string(&p)
                    .map_err(|e| ConfigError(vec![format!("opnet.toml: cannot read: {e}")]))?;
                (text, Some(p))
            }
            None => (String::new(), None),
        };
        let file = Self::parse_layered(&text, path.as_deref(), &over.env)?;
        let (plan, plan_origin) = match &file.plan_file {
            None => (PlanBook::default(), "embedded Playbook plan".to_string()),
            Some(rel) => {
                let base = path
                    .as_deref()
                    .and_then(Path::parent)
                    .unwrap_or(Path::new("."));
                let p = base.join(rel);
                let text = std::fs::read_to_string(&p).map_err(|e| {
                    ConfigError(vec![format!(
                        "{}: key plan_file: cannot read {}: {e}",
                        where_(&path),
                        p.display()
                    )])
                })?;
                let book = PlanBook::from_toml(&text)
                    .map_err(|e| ConfigError(vec![format!("{}: {e}", p.display())]))?;
                (book, p.display().to_string())
            }
        };
        let pick = |flag: &Option<String>, file: &Option<String>, default: &str| {
            flag.clone()
                .or_else(|| file.clone())
                .unwrap_or_else(|| default.to_string())
        };
        let schedule = crate::schedule::config::ScheduleConfig::resolve(file.schedule.as_ref());
        // Paths in the file are relative to it, like plan_file; paths from the
        // environment are taken as given.
        let base = path
            .as_deref()
            .and_then(Path::parent)
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let smtp = crate::mail::SmtpSettings {
            username: over.smtp_username.clone().or(file.smtp.username.clone()),
            password: match (&over.smtp_password, &over.smtp_password_file) {
                (Some(p), _) => Some(Password::Value(Secret::new(p.clone()))),
                (None, Some(f)) => Some(Password::File(PathBuf::from(f))),
                (None, None) => file
                    .smtp
                    .password_file
                    .as_ref()
                    .map(|f| Password::File(base.join(f))),
            },
            ca_file: over
                .smtp_ca_file
                .as_ref()
                .map(PathBuf::from)
                .or_else(|| file.smtp.ca_file.as_ref().map(|f| base.join(f))),
        };
        let s3 = S3Config {
            endpoint: over.s3_endpoint.clone().or(file.s3.endpoint),
            region: over.s3_region.clone().or(file.s3.region),
            force_path_style: over.s3_force_path_style.or(file.s3.force_path_style),
        };
        let config = Config {
            source: pick(&over.source, &file.source, DEFAULT_SOURCE),
            lake: pick(&over.lake, &file.lake, DEFAULT_LAKE),
            database: pick(&over.database, &file.database, DEFAULT_DATABASE),
            mail: pick(&over.mail, &file.mail, DEFAULT_MAIL),
            email: file.email,
            schedule: schedule.clone().unwrap_or_default(),
            plan,
            plan_origin,
            file: path,
            sources: file.sources,
            smtp,
            s3,
            ingest: file.ingest,
            close: file.close,
            leads: file.leads,
        };
        // Problems of [schedule] are found while resolving it; report them with the rest.
        let mut problems: Vec<String> = schedule
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|m| format!("{}: {m}", where_(&config.file)))
            .collect();
        if let Err(ConfigError(p)) = config.validate() {
            problems.extend(p);
        }
        if !problems.is_empty() {
            return Err(ConfigError(problems));
        }
        Ok(config)
    }

    /// Parse a config file's text; errors name the file and the key.
    pub fn parse_file(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
        Self::parse_layered(text, Some(path), &[])
    }

    /// The file's text with the `OPNET__…` environment overrides layered on top,
    /// read as one [`FileConfig`]; errors name the file or the variable, and the key.
    pub fn parse_layered(
        text: &str,
        path: Option<&Path>,
        env: &[(String, String)],
    ) -> Result<FileConfig, ConfigError> {
        let at = path.map_or_else(|| "config".to_string(), |p| p.display().to_string());
        let mut table: toml::Table = toml::from_str(text).map_err(|e| {
            ConfigError(vec![
                format!("{at}: {}", e.message().trim())
                    + &e.span()
                        .map(|s| format!(" (at byte {})", s.start))
                        .unwrap_or_default(),
            ])
        })?;
        let mut problems = Vec::new();
        for (name, value) in env {
            if let Err(p) = layer_env(&mut table, name, value) {
                problems.push(p);
            }
        }
        if !problems.is_empty() {
            return Err(ConfigError(problems));
        }
        let from_env: Vec<&str> = env.iter().map(|(n, _)| n.as_str()).collect();
        FileConfig::deserialize(table).map_err(|e| {
            let origin = if from_env.is_empty() {
                at.clone()
            } else {
                format!("{at} with {}", from_env.join(", "))
            };
            ConfigError(vec![format!("{origin}: {}", e.message().trim())])
        })
    }

    /// Pure validation of the resolved values; collects every problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let at = where_(&self.file);
        let mut p = Vec::new();
        self.check_locations(&at, &mut p);
        self.check_email(&at, &mut p);
        self.check_sources(&at, &mut p);
        self.check_bounds(&at, &mut p);
        p.extend(self.leads.problems(&at));
        if let Err(e) = self.plan.validate() {
            p.push(format!("{}: {e}", self.plan_origin));
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(p))
        }
    }

    /// `database`, `mail` (with `[smtp]`), `source`, `lake` and `[s3]`.
    fn check_locations(&self, at: &str, p: &mut Vec<String>) {
        if !(self.database.starts_with("sqlite:")
            || self.database.starts_with("postgres://")
            || self.database.starts_with("postgresql://"))
        {
            p.push(format!(
                "{at}: key database: expected sqlite://FILE or postgres://…, got {:?}",
                crate::db::redact(&self.database)
            ));
        }
        // One parser for the URL and the [smtp] settings, so what is validated here
        // is exactly what the transport will use.
        match crate::mail::Transport::parse(&self.mail) {
            // The transport's message quotes the URL: mask what it may hold.
            Err(e) => p.push(format!("{at}: key mail: {}", redacted(&e.to_string()))),
            Ok(t) => {
                if let Err(e) = t.with_smtp(&self.smtp) {
                    p.push(format!("{at}: key smtp: {e}"));
                }
            }
        }
        for (key, v) in [("source", &self.source), ("lake", &self.lake)] {
            if v.trim().is_empty() {
                p.push(format!("{at}: key {key}: must not be empty"));
            } else if v.starts_with("s3://")
                && let Err(reason) = crate::store::S3Url::parse(v)
            {
                p.push(redacted(&format!("{at}: key {key}: {v}: {reason}")));
            }
        }
        // The endpoint is not echoed: a URL with user:password@ would show it.
        if let Some(Err(reason)) = self.s3.endpoint.as_deref().map(check_endpoint) {
            p.push(format!("{at}: key s3.endpoint: {reason}"));
        }
        if let Some(region) = &self.s3.region {
            let ok = !region.is_empty()
                && region
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !ok {
                p.push(format!(
                    "{at}: key s3.region: expected a region name such as eu-west-1, got {region:?}"
                ));
            }
        }
    }

    /// Every address of `[email]` and the mail-age setting.
    fn check_email(&self, at: &str, p: &mut Vec<String>) {
        let addr = |key: &str, a: &str, p: &mut Vec<String>| {
            if a.parse::<lettre::message::Mailbox>().is_err() {
                p.push(format!(
                    "{at}: key email.{key}: not an email address: {a:?}"
                ));
            }
        };
        addr("from", &self.email.from, p);
        if self.email.operator_mail_max_age_months == 0 {
            p.push(format!(
                "{at}: key email.operator_mail_max_age_months: must be at least 1 (the latest complete month); \
                 use `close --send-mail none` for a close without mail"
            ));
        }
        for (key, list) in [
            ("finance", &self.email.finance),
            ("leadership", &self.email.leadership),
            ("partner_success", &self.email.partner_success),
            ("ops", &self.email.ops),
        ] {
            for a in list {
                addr(key, a, p);
            }
        }
    }

    /// `[sources."<dataset>"]`: a contract dataset, a database URL and a query each.
    fn check_sources(&self, at: &str, p: &mut Vec<String>) {
        for (name, src) in &self.sources {
            let key = format!("{at}: key sources.{name:?}");
            if opnet_pipelines::contract::Dataset::by_name(name).is_none_or(|d| d.path() != *name) {
                let known: Vec<String> = opnet_pipelines::contract::ALL
                    .iter()
                    .map(|d| d.path())
                    .collect();
                p.push(format!(
                    "{key}: not a contract dataset (expected one of {})",
                    known.join(", ")
                ));
            }
            let url = src.url.as_str();
            match url.strip_prefix("env:") {
                Some(var) => {
                    if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    {
                        p.push(format!(
                            "{key}.url: env: needs an environment variable name, got {url:?}"
                        ));
                    }
                }
                None => {
                    if !(url.starts_with("sqlite:")
                        || url.starts_with("postgres://")
                        || url.starts_with("postgresql://"))
                    {
                        p.push(format!(
                            "{key}.url: expected postgres://…, sqlite:FILE or env:NAME, got {:?}",
                            crate::db::redact(url)
                        ));
                    }
                }
            }
            if src.query.trim().trim_end_matches(';').trim().is_empty() {
                p.push(format!("{key}.query: must not be empty"));
            }
        }
    }

    /// `[close]` and `[ingest]` bounds.
    fn check_bounds(&self, at: &str, p: &mut Vec<String>) {
        if self.close.max_backfill_months == 0 {
            p.push(format!(
                "{at}: key close.max_backfill_months: must be at least 1"
            ));
        }
        let share = self.ingest.max_quarantine_share;
        if !(0.0..=1.0).contains(&share) {
            p.push(format!(
                "{at}: key ingest.max_quarantine_share: expected a share between 0 and 1 (0.01 = 1 %), got {share}"
            ));
        }
        if self.ingest.max_months_ahead > 1200 {
            p.push(format!(
                "{at}: key ingest.max_months_ahead: expected at most 1200 months, got {}",
                self.ingest.max_months_ahead
            ));
        }
    }
}

/// `[s3] endpoint`: `http(s)://host[:port][/]`, without credentials (those come from
/// the AWS chain; a password in a URL ends up in logs).
fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let Some(rest) = endpoint
        .strip_prefix("https://")
        .or_else(|| endpoint.strip_prefix("http://"))
    else {
        return Err("expected http://HOST[:PORT] or https://HOST[:PORT]".into());
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return Err(
            "credentials do not belong in the endpoint URL (use the AWS credential chain)".into(),
        );
    }
    // `[v6]:port`, `host:port`, or either without a port.
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, "")) => (host, None),
            Some((host, rest)) => (host, Some(rest.strip_prefix(':').unwrap_or(rest))),
            None => ("", None),
        },
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if port.is_some_and(|p| p.parse::<u16>().is_err()) {
        return Err(format!("bad port in {endpoint:?}"));
    }
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        return Err(format!("no host in {endpoint:?}"));
    }
    Ok(())
}

/// The prefix of a variable that sets a config-file key.
pub const ENV_PREFIX: &str = "OPNET__";

/// The `OPNET__…` variables among `vars` (name, value), in name order.
pub fn env_overrides(vars: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vars.filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
    out.sort();
    out
}

/// Sets the key named by `OPNET__A__B` (`a.b`) in `table` to `value` read as a TOML
/// value (`48`, `true`, `["a@x"]`, `"text"`), or as a string when it is not one.
fn layer_env(table: &mut toml::Table, name: &str, value: &str) -> Result<(), String> {
    let keys: Vec<String> = name
        .strip_prefix(ENV_PREFIX)
        .unwrap_or(name)
        .split("__")
        .map(str::to_ascii_lowercase)
        .collect();
    if keys.iter().any(String::is_empty) {
        return Err(format!(
            "{name}: expected {ENV_PREFIX}SECTION__KEY (double underscores between names)"
        ));
    }
    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    let (last, sections) = keys.split_last().ok_or_else(|| format!("{name}: no key"))?;
    let mut at = table;
    for (i, k) in sections.iter().enumerate() {
        let entry = at
            .entry(k.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        at = entry.as_table_mut().ok_or_else(|| {
            format!(
                "{name}: key {} is not a table in the config file",
                keys[..=i].join(".")
            )
        })?;
    }
    at.insert(last.clone(), parsed);
    Ok(())
}

fn where_(file: &Option<PathBuf>) -> String {
    file.as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(flags/environment)".into())
}

#[cfg(test)]
mod tests;
