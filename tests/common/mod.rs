//! Shared helpers of the end-to-end tests: a fresh PostgreSQL database per test
//! (dropped when the test ends, see [`pg`]), a real SMTP capture server (aiosmtpd)
//! on a free loopback port, small generated data.
//!
//! With `OPNET_REQUIRE_SERVICES=1` (set by scripts/test.sh and so by CI) a missing
//! service fails the test instead of skipping it.

#![allow(dead_code, clippy::unwrap_used)]

pub mod pg;

pub use pg::TestDb;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn required() -> bool {
    std::env::var("OPNET_REQUIRE_SERVICES")
        .map(|v| v == "1")
        .unwrap_or(false)
}

/// Skip (or, when services are required, fail) with a reason.
pub fn unavailable(what: &str) -> bool {
    if required() {
        panic!("{what} is required (OPNET_REQUIRE_SERVICES=1) but unavailable");
    }
    eprintln!("SKIPPED: {what} unavailable");
    false
}

/// A new, empty PostgreSQL database for one test; `None` when PostgreSQL is absent.
/// Keep the guard alive for the whole test (`let Some(db) = … else { return };`):
/// dropping it drops the database, also when the test fails.
pub async fn pg_database(tag: &str) -> Option<TestDb> {
    match TestDb::create(tag).await {
        Ok(db) => Some(db),
        Err(e) => {
            unavailable(&e);
            None
        }
    }
}

/// An aiosmtpd capture server writing every received mail into a Maildir.
pub struct SmtpCapture {
    child: Child,
    pub port: u16,
    pub maildir: PathBuf,
}

impl SmtpCapture {
    /// aiosmtpd's own Mailbox handler: plain SMTP, no login.
    pub fn start(dir: &Path) -> Option<SmtpCapture> {
        Self::spawn(dir, "aiosmtpd", |cmd, port, maildir| {
            cmd.args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
                .args(["-c", "aiosmtpd.handlers.Mailbox"])
                .arg(maildir);
        })
    }

    /// A capture server that requires STARTTLS (with `cert`/`key`) and AUTH as `user`
    /// with the password in `password_file` (re-read at every login), via
    /// tests/support/smtp_capture.py. Each accepted mail also gets a line in
    /// [`SmtpCapture::sessions`].
    pub fn start_secure(
        dir: &Path,
        cert: &Path,
        key: &Path,
        user: &str,
        password_file: &Path,
    ) -> Option<SmtpCapture> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/support/smtp_capture.py");
        Self::spawn(dir, "the STARTTLS capture server", |cmd, port, maildir| {
            cmd.arg(&script)
                .args(["--port", &port.to_string()])
                .arg("--maildir")
                .arg(maildir)
                .arg("--tls-cert")
                .arg(cert)
                .arg("--tls-key")
                .arg(key)
                .args(["--user", user])
                .arg("--password-file")
                .arg(password_file);
        })
    }

    /// Start `python3` with the arguments `args` adds for a free port and the Maildir
    /// under `dir`, and wait until it listens.
    fn spawn(
        dir: &Path,
        what: &str,
        args: impl FnOnce(&mut Command, u16, &Path),
    ) -> Option<SmtpCapture> {
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let maildir = dir.join("maildir");
        let mut cmd = Command::new("python3");
        args(&mut cmd, port, &maildir);
        let child = match cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn() {
            Ok(c) => c,
            Err(e) => {
                unavailable(&format!("{what} ({e})"));
                return None;
            }
        };
        // Dropped (and killed) on every early return below.
        let mut capture = SmtpCapture {
            child,
            port,
            maildir,
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if start.elapsed() > Duration::from_secs(15)
                || capture.child.try_wait().ok().flatten().is_some()
            {
                unavailable(&format!(
                    "{what} did not start listening (pip install aiosmtpd)"
                ));
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(capture)
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// One JSON line per accepted mail (`tls`, `user`, envelope), from a server
    /// started with [`SmtpCapture::start_secure`].
    pub fn sessions(&self) -> Vec<String> {
        std::fs::read_to_string(self.maildir.join("sessions.jsonl"))
            .map(|t| t.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// Every mail received so far, as raw bytes, in file-name order.
    pub fn received(&self) -> Vec<Vec<u8>> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.maildir.join("new"))
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        // In arrival order. Maildir names (`<secs>.M<usecs>P<pid>Q<n>.<host>`) do not
        // sort by time within a second (the microseconds are not zero-padded), but
        // `Q<n>` counts the capture process's deliveries: a test that takes "what
        // arrived after the first N" must not see an earlier mail moved behind them.
        files.sort_by_key(|p| (arrival_number(p), p.clone()));
        files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
    }
}

/// The `Q<n>` delivery counter of a maildir file name (`u64::MAX` when absent).
fn arrival_number(path: &Path) -> u64 {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('.').nth(1))
        .and_then(|unique| unique.rsplit_once('Q'))
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(u64::MAX)
}

impl Drop for SmtpCapture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Rows of `table` in the database.
pub async fn count_rows(pool: &sqlx::AnyPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("counting {table}: {e}"))
}

/// The configuration of a test: source and lake under `dir`, the Playbook plan.
pub fn config(dir: &Path, database: String, mail: String) -> opnet::config::Config {
    opnet::config::Config {
        source: dir.join("source").display().to_string(),
        lake: dir.join("lake").display().to_string(),
        database,
        mail,
        email: opnet::config::EmailConfig::default(),
        schedule: Default::default(),
        plan: opnet_pipelines::PlanBook::default(),
        plan_origin: "test".into(),
        file: None,
        sources: Default::default(),
        smtp: Default::default(),
        s3: Default::default(),
        ingest: Default::default(),
        close: Default::default(),
        leads: Default::default(),
    }
}
