//! The application context every command runs with: the validated config and what
//! it opens — database, source and lake stores, mail transport — plus how the
//! command was started (for lease holder ids and failure-mail hints) and the business
//! calendar's "last complete month".
//!
//! Layers (docs/architecture.md): pipelines → jobs → close/schedule → commands → CLI.
//! Jobs never see an `App`: they get a `JobContext` and a database connection.

use crate::config::Config;
use crate::db::Db;
use crate::lake::Lake;
use crate::mail::Transport;
use crate::store::{self, ObjectStore};
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use opnet_pipelines::Period;
use std::sync::Arc;

/// How the command running the close was started, for the re-run hint of failure
/// mails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invocation {
    /// The scheduler (`opnet schedule`, `schedule --once`).
    Scheduled,
    /// A command at a terminal or in a script, as it can be typed again (no secrets:
    /// built from the parsed options, never from the raw command line).
    Command(String),
}

/// Everything a command needs, built once from the validated config.
pub struct App {
    pub config: Config,
    pub db: Db,
    pub source: Arc<dyn ObjectStore>,
    pub lake: Lake,
    pub transport: Transport,
    /// The lease holder id of this process, recorded on the runs it starts and the
    /// mails it claims, so a process taking the lease over knows which `running` rows
    /// and `sending` claims belong to a dead holder. Set by the scheduler and by the
    /// CLI commands that take the lease; `None` for library callers.
    pub lease_holder: Option<String>,
    /// Unattended (the scheduler) or `--notify`: a failed run emails `email.ops`. A
    /// command at a terminal reports its failure there and mails nobody (issue 14).
    pub notify: bool,
    /// What to name in the failure mail's re-run hint.
    pub invocation: Invocation,
}

impl App {
    pub async fn open(config: Config) -> Result<App> {
        let db = Db::connect(&config.database)
            .await
            .context("opening the database")?;
        db.migrate().await.context("migrating the database")?;
        let source = store::open(&config.source, &config.s3)
            .await
            .with_context(|| format!("source {}", config.source))?;
        let lake = Lake::new(
            store::open(&config.lake, &config.s3)
                .await
                .with_context(|| format!("lake {}", config.lake))?,
        );
        let transport = Transport::parse(&config.mail)
            .and_then(|t| t.with_smtp(&config.smtp))
            .with_context(|| format!("mail {}", config.mail))?;
        // Fail at start-up, not at the first delivery, when the password cannot be read.
        if let Transport::Smtp(relay) = &transport
            && let Some(auth) = &relay.auth
        {
            auth.password.read().context(
                "reading the SMTP password (smtp.password_file / OPNET_SMTP_PASSWORD_FILE)",
            )?;
        }
        Ok(App {
            config,
            db,
            source,
            lake,
            transport,
            lease_holder: None,
            notify: false,
            invocation: Invocation::Command("opnet close".into()),
        })
    }

    /// The last complete month at `now` on the business calendar.
    pub fn last_complete_period(&self, now: DateTime<Utc>) -> Period {
        last_complete_period(now, self.config.schedule.timezone)
    }
}

/// The last complete month at `now` on the business calendar (`[schedule] timezone`):
/// the default `--through` of a close, what the scheduler closes through, what
/// `opnet status` and the demo use. The one definition (issue 10 item 6).
pub fn last_complete_period(now: DateTime<Utc>, tz: Tz) -> Period {
    Period::of_date(now.with_timezone(&tz).date_naive()).prev()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Period {
        Period::parse(s).unwrap()
    }

    #[test]
    fn last_complete_period_is_in_the_business_timezone() {
        let now = DateTime::parse_from_rfc3339("2025-07-31T23:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(last_complete_period(now, Tz::UTC), p("2025-06"));
        assert_eq!(
            last_complete_period(now, chrono_tz::Europe::Berlin),
            p("2025-07")
        );
    }
}
