//! Typed configuration: one TOML file (`deploy/opnet.example.toml` documents every
//! key), overridden by environment variables and command-line flags.
//!
//! Order, highest first: flag > environment variable > config file > embedded
//! default. Validation is pure (no filesystem or network), collects every problem, and
//! names the file and key of each; it runs once at start-up.

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
        let (file, path) = match &over.config {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| ConfigError(vec![format!("{}: cannot read: {e}", p.display())]))?;
                (Self::parse_file(&text, p)?, Some(p.clone()))
            }
            None if Path::new("opnet.toml").exists() => {
                let p = PathBuf::from("opnet.toml");
                let text = std::fs::read_to_string(&p)
                    .map_err(|e| ConfigError(vec![format!("opnet.toml: cannot read: {e}")]))?;
                (Self::parse_file(&text, &p)?, Some(p))
            }
            None => (FileConfig::default(), None),
        };
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
        toml::from_str(text).map_err(|e| {
            ConfigError(vec![
                format!("{}: {}", path.display(), e.message().trim())
                    + &e.span()
                        .map(|s| format!(" (at byte {})", s.start))
                        .unwrap_or_default(),
            ])
        })
    }

    /// Pure validation of the resolved values; collects every problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let at = where_(&self.file);
        let mut p = Vec::new();
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
        let addr = |key: &str, a: &str, p: &mut Vec<String>| {
            if a.parse::<lettre::message::Mailbox>().is_err() {
                p.push(format!(
                    "{at}: key email.{key}: not an email address: {a:?}"
                ));
            }
        };
        addr("from", &self.email.from, &mut p);
        if self.email.operator_mail_max_age_months == 0 {
            p.push(format!(
                "{at}: key email.operator_mail_max_age_months: must be at least 1 (the latest complete month); \
                 use `close --send-mail none` for a close without mail"
            ));
        }
        if self.close.max_backfill_months == 0 {
            p.push(format!(
                "{at}: key close.max_backfill_months: must be at least 1"
            ));
        }
        for (key, list) in [
            ("finance", &self.email.finance),
            ("leadership", &self.email.leadership),
            ("partner_success", &self.email.partner_success),
            ("ops", &self.email.ops),
        ] {
            for a in list {
                addr(key, a, &mut p);
            }
        }
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
        if let Err(e) = self.plan.validate() {
            p.push(format!("{}: {e}", self.plan_origin));
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(p))
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

fn where_(file: &Option<PathBuf>) -> String {
    file.as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(flags/environment)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, over: Overrides) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("opnet.toml");
        std::fs::write(&p, text).unwrap();
        Config::load(&Overrides {
            config: Some(p),
            ..over
        })
    }

    #[test]
    fn defaults_are_the_embedded_ones() {
        let c = load("", Overrides::default()).unwrap();
        assert_eq!(c.database, DEFAULT_DATABASE);
        assert_eq!(c.mail, DEFAULT_MAIL);
        assert_eq!(c.plan.versions[0].version, "playbook");
    }

    #[test]
    fn flag_beats_file() {
        let c = load(
            "database = \"sqlite://a.db\"\n",
            Overrides {
                database: Some("sqlite://b.db".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.database, "sqlite://b.db");
        let c = load("database = \"sqlite://a.db\"\n", Overrides::default()).unwrap();
        assert_eq!(c.database, "sqlite://a.db");
    }

    #[test]
    fn unknown_key_is_named() {
        let e = load("databse = \"x\"\n", Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("databse"), "{e}");
        assert!(e.contains("opnet.toml"), "{e}");
    }

    #[test]
    fn every_bad_value_is_reported_with_its_key() {
        let e = load(
            "database = \"mysql://x\"\nmail = \"smtp://host:notaport\"\n[email]\nfinance = [\"not an address\"]\n",
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("key database"), "{e}");
        assert!(e.contains("key mail"), "{e}");
        assert!(e.contains("key email.finance"), "{e}");
    }

    #[test]
    fn smtp_settings_resolve_relative_to_the_file_and_env_beats_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("opnet.toml");
        std::fs::write(
            &p,
            "mail = \"smtp+starttls://mail.example.com\"\n[smtp]\nusername = \"opnet\"\n\
             password_file = \"secrets/smtp\"\nca_file = \"ca.pem\"\n",
        )
        .unwrap();
        let c = Config::load(&Overrides {
            config: Some(p.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.smtp.username.as_deref(), Some("opnet"));
        assert_eq!(
            c.smtp.password,
            Some(Password::File(dir.path().join("secrets/smtp")))
        );
        assert_eq!(c.smtp.ca_file, Some(dir.path().join("ca.pem")));
        let c = Config::load(&Overrides {
            config: Some(p),
            smtp_username: Some("other".into()),
            smtp_password: Some("hunter2".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.smtp.username.as_deref(), Some("other"));
        assert_eq!(
            c.smtp.password,
            Some(Password::Value(Secret::new("hunter2")))
        );
        assert!(
            !format!("{c:?}").contains("hunter2"),
            "Debug must hide the password"
        );
    }

    #[test]
    fn smtp_credentials_need_tls_and_both_halves() {
        let e = load(
            "mail = \"smtp://relay.internal:25\"\n[smtp]\nusername = \"u\"\npassword_file = \"p\"\n",
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("key smtp") && e.contains("smtp+starttls://"),
            "{e}"
        );
        let e = load(
            "mail = \"smtps://relay.internal\"\n[smtp]\nusername = \"u\"\n",
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no password"), "{e}");
        // The password has no key in the file: it would sit beside the config in clear.
        let e = load("[smtp]\npassword = \"x\"\n", Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("password"), "{e}");
        let e = load(
            "mail = \"smtp://u:hunter2@relay.internal\"\n",
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("key mail") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn plan_file_errors_name_the_plan_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("plan.toml"),
            "[[version]]\nversion = \"a\"\neffective_from = \"2025-13\"\n",
        )
        .unwrap();
        let p = dir.path().join("opnet.toml");
        std::fs::write(&p, "plan_file = \"plan.toml\"\n").unwrap();
        let e = Config::load(&Overrides {
            config: Some(p),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("plan.toml"), "{e}");
        assert!(e.contains("2025-13"), "{e}");
    }

    #[test]
    fn schedule_errors_name_their_keys() {
        let e = load(
            "[schedule]\ntimezone = \"Mars/Olympus\"\n[[schedule.jobs]]\nname = \"close\"\ncron = \"0 0 6 1 * *\"\n\
             [[schedule.jobs]]\nname = \"ingest\"\ncron = \"every day\"\n[[schedule.jobs]]\nname = \"payday\"\ncron = \"0 0 1 * * *\"\n",
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("key schedule.timezone"), "{e}");
        assert!(e.contains("Mars/Olympus"), "{e}");
        assert!(e.contains("key schedule.jobs[1].cron"), "{e}");
        assert!(e.contains("key schedule.jobs[2].name"), "{e}");
        assert!(!e.contains("schedule.jobs[0]"), "{e}");
        let e = load("[schedule]\ntimezon = \"UTC\"\n", Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("timezon"), "{e}");
    }

    #[test]
    fn schedule_defaults_and_values() {
        let c = load("", Overrides::default()).unwrap();
        assert_eq!(c.schedule.timezone, chrono_tz::Tz::UTC);
        let names: Vec<_> = c.schedule.jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["ingest", "close"]);
        let c = load(
            "[schedule]\ntimezone = \"Europe/Berlin\"\nlease_ttl_secs = 60\n[[schedule.jobs]]\nname = \"close\"\ncron = \"0 30 7 2 * *\"\n",
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.schedule.timezone, chrono_tz::Europe::Berlin);
        assert_eq!(c.schedule.lease_ttl.as_secs(), 60);
        assert_eq!(c.schedule.jobs.len(), 1);
        assert_eq!(c.schedule.jobs[0].cron.as_str(), "0 30 7 2 * *");
    }

    #[test]
    fn sql_sources_are_read_and_validated() {
        let c = load(
            "[sources.\"billing/invoices\"]\nurl = \"env:BILLING_DATABASE_URL\"\nquery = \"SELECT * FROM invoices\"\n\
             [sources.\"crm/operators\"]\nurl = \"postgres://u:pw@h/crm\"\nquery = \"SELECT 1\"\n",
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.sources.len(), 2);
        assert_eq!(
            c.sources["billing/invoices"].url,
            "env:BILLING_DATABASE_URL"
        );
        assert_eq!(
            c.sources["billing/invoices"].display_url(),
            "env:BILLING_DATABASE_URL"
        );
        assert_eq!(
            c.sources["crm/operators"].display_url(),
            "postgres://u:*****@h/crm"
        );

        let e = load(
            "[sources.\"billing/invoicez\"]\nurl = \"sqlite:x.db\"\nquery = \"SELECT 1\"\n\
             [sources.\"crm/leads\"]\nurl = \"mysql://u:secret@h/x\"\nquery = \" ; \"\n\
             [sources.\"crm/training\"]\nurl = \"env:\"\nquery = \"SELECT 1\"\n",
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("key sources.\"billing/invoicez\": not a contract dataset"),
            "{e}"
        );
        assert!(
            e.contains("key sources.\"crm/leads\".url: expected postgres://"),
            "{e}"
        );
        assert!(!e.contains("secret"), "{e}");
        assert!(
            e.contains("key sources.\"crm/leads\".query: must not be empty"),
            "{e}"
        );
        assert!(
            e.contains("key sources.\"crm/training\".url: env: needs"),
            "{e}"
        );
        assert!(e.contains("opnet.toml"), "{e}");

        // A bare dataset name is not a path; a missing or unknown key is named.
        let e = load(
            "[sources.operators]\nurl = \"sqlite:x.db\"\nquery = \"SELECT 1\"\n",
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("key sources.\"operators\": not a contract dataset"),
            "{e}"
        );
        let e = load(
            "[sources.\"crm/operators\"]\nurl = \"sqlite:x.db\"\nsql = \"SELECT 1\"\n",
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("sql"), "{e}");
    }

    #[test]
    fn sql_source_env_url_is_resolved_at_use() {
        let s = SqlSource {
            url: "env:OPNET_TEST_SURELY_UNSET_URL".into(),
            query: "SELECT 1".into(),
        };
        let e = s.resolve_url().unwrap_err();
        assert!(e.contains("OPNET_TEST_SURELY_UNSET_URL"), "{e}");
        let s = SqlSource {
            url: "sqlite:x.db".into(),
            query: "SELECT 1".into(),
        };
        assert_eq!(s.resolve_url().unwrap(), "sqlite:x.db");
    }

    #[test]
    fn s3_table_overrides_and_validation() {
        let c = load(
            "lake = \"s3://opnet-lake/prod\"\n[s3]\nendpoint = \"http://127.0.0.1:9000\"\nregion = \"us-east-1\"\nforce_path_style = true\n",
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.lake, "s3://opnet-lake/prod");
        assert_eq!(
            c.s3,
            S3Config {
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: Some("us-east-1".into()),
                force_path_style: Some(true),
            }
        );
        // Flags and OPNET_S3_* (through clap) beat the file.
        let c = load(
            "[s3]\nregion = \"us-east-1\"\nforce_path_style = true\n",
            Overrides {
                s3_region: Some("eu-west-1".into()),
                s3_endpoint: Some("https://s3.example:8443/".into()),
                s3_force_path_style: Some(false),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.s3.region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.s3.endpoint.as_deref(), Some("https://s3.example:8443/"));
        assert_eq!(c.s3.force_path_style, Some(false));
        // Nothing set: the SDK's chain decides.
        assert_eq!(
            load("", Overrides::default()).unwrap().s3,
            S3Config::default()
        );

        let e = load(
            "source = \"s3://Bad_Bucket/x\"\nlake = \"s3://ok-bucket/a//b\"\n[s3]\nendpoint = \"http://key:secret@minio:9000\"\nregion = \"EU West\"\n",
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("key source: s3://Bad_Bucket/x: bucket name"),
            "{e}"
        );
        assert!(e.contains("key lake: s3://ok-bucket/a//b: prefix"), "{e}");
        assert!(
            e.contains("key s3.endpoint: credentials do not belong"),
            "{e}"
        );
        assert!(!e.contains("secret"), "{e}");
        assert!(e.contains("key s3.region: expected a region name"), "{e}");
        for bad in ["minio:9000", "ftp://x", "http://", "http://host:port"] {
            let e = load(
                &format!("[s3]\nendpoint = \"{bad}\"\n"),
                Overrides::default(),
            )
            .unwrap_err()
            .to_string();
            assert!(e.contains("key s3.endpoint"), "{bad}: {e}");
        }
        for good in [
            "http://127.0.0.1:9000",
            "https://s3.eu-west-1.amazonaws.com",
            "http://[::1]:9000",
        ] {
            assert!(check_endpoint(good).is_ok(), "{good}");
        }
        let e = load("[s3]\nendpont = \"x\"\n", Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("endpont"), "{e}");
        let e = load("[s3]\nforce_path_style = \"yes\"\n", Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("force_path_style") || e.contains("bool"), "{e}");
    }

    #[test]
    fn ingest_keys_default_parse_and_validate() {
        let c = load("", Overrides::default()).unwrap();
        assert_eq!(c.ingest, IngestConfig::default());
        assert_eq!(c.ingest.max_quarantine_share, 0.01);
        assert_eq!(c.ingest.earliest_date.to_string(), "1990-01-01");
        assert_eq!(c.ingest.max_months_ahead, 12);
        let c = load(
            "[ingest]\nmax_quarantine_share = 0.05\nearliest_date = \"2000-01-01\"\nmax_months_ahead = 3\n",
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.ingest.max_quarantine_share, 0.05);
        assert_eq!(c.ingest.earliest_date.to_string(), "2000-01-01");
        assert_eq!(c.ingest.max_months_ahead, 3);
        let e = load(
            "[ingest]\nmax_quarantine_share = 5.0\nmax_months_ahead = 100000\n",
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("key ingest.max_quarantine_share"), "{e}");
        assert!(e.contains("key ingest.max_months_ahead"), "{e}");
        let e = load(
            "[ingest]\nearliest_date = \"1990-13-01\"\n",
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("earliest_date"), "{e}");
        let e = load("[ingest]\nmax_share = 0.1\n", Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_share"), "{e}");
    }

    /// Issue 9 item 12: a URL that fails validation is quoted with its credentials
    /// masked, whatever the form.
    #[test]
    fn invalid_urls_are_reported_without_credentials() {
        for text in [
            "mail = \"smtp://relay:25?password=S3cret\"\n",
            "mail = \"smtp://u:S3cret@relay:25\"\n",
            "source = \"s3://u:S3cret@bucket/x\"\n",
            "lake = \"s3://u:S3cret@bucket/x\"\n",
            "database = \"host=h password=S3cret\"\n",
            "database = \"mysql://u@h/db?password=S3cret\"\n",
        ] {
            let e = load(text, Overrides::default()).unwrap_err().to_string();
            assert!(e.contains("key "), "{e}");
            assert!(!e.contains("S3cret"), "{text}: {e}");
        }
    }

    /// Issue 9 item 12: `Debug` of every config type masks credentials.
    #[test]
    fn debug_never_prints_a_secret() {
        let over = Overrides {
            database: Some("postgres://u:S3cret1@h/db?password=S3cret2".into()),
            mail: Some("smtp://u:S3cret3@relay".into()),
            smtp_password: Some("S3cret4".into()),
            s3_endpoint: Some("http://k:S3cret5@minio:9000".into()),
            ..Default::default()
        };
        let text = format!("{over:?}");
        let file = Config::parse_file(
            "database = \"postgres://u@h/db?sslpassword=S3cret6\"\n\
             [sources.\"crm/operators\"]\nurl = \"postgres://u:S3cret7@h/crm\"\nquery = \"SELECT 1\"\n",
            Path::new("x.toml"),
        )
        .unwrap();
        let file_text = format!("{file:?}");
        let c = load(
            "database = \"postgres://u@h/db?password=S3cret8\"\n\
             [sources.\"crm/operators\"]\nurl = \"postgres://u@h/crm?password=S3cret9\"\nquery = \"SELECT 1\"\n",
            Overrides {
                smtp_password: Some("S3cret4".into()),
                ..Default::default()
            },
        )
        .unwrap();
        let config_text = format!("{c:?}");
        for t in [&text, &file_text, &config_text] {
            assert!(!t.contains("S3cret"), "{t}");
            assert!(t.contains("*****"), "{t}");
        }
        assert!(
            config_text.contains("postgres://u@h/db?password=*****"),
            "{config_text}"
        );
    }

    #[test]
    fn example_config_parses_and_validates() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/opnet.example.toml");
        let c = Config::load(&Overrides {
            config: Some(p),
            ..Default::default()
        })
        .unwrap();
        assert!(
            c.plan.versions.len() >= 2,
            "the example ships a plan with two versions"
        );
    }
}
