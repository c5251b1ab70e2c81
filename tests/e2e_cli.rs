//! End-to-end through the real binary (issue 2): the README's demo command on the
//! embedded defaults, the lake read back by an independent reader (pyarrow), help and
//! exit codes, and a failed run that leaves nothing but its `failed` ledger row.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn opnet(cwd: &Path, args: &[&str]) -> Output {
    command(cwd, args)
        .env("OPNET_LOG", "warn")
        .output()
        .expect("run opnet")
}

/// The binary on the embedded defaults, as a newcomer runs it: no config, no
/// database URL, the default log level, no NO_COLOR.
fn command(cwd: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_opnet"));
    cmd.current_dir(cwd)
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("OPNET_CONFIG")
        .env_remove("OPNET_LOG")
        .env_remove("NO_COLOR");
    cmd
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn demo_on_embedded_defaults_then_pyarrow_reads_the_lake() {
    let dir = tempfile::tempdir().unwrap();
    // Issue 14: started outside cargo, with stderr a pipe (not a terminal) and the
    // default log level.
    let out = command(dir.path(), &["demo", "--operators", "15", "--months", "4"])
        .env_remove("CARGO_PKG_NAME")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("periods closed"), "{stdout}");
    assert!(stdout.contains("network-health report"), "{stdout}");
    assert!(
        stdout.contains("next: opnet payouts show --period "),
        "{stdout}"
    );
    assert!(
        stdout.contains("(revision 1): approved now, sent now"),
        "{stdout}"
    );
    // `payouts show`: money columns right-aligned (each cell ends in a digit).
    let end = stdout
        .split("│ statements ")
        .nth(1)
        .map(|s| s[..7].to_string())
        .unwrap();
    let show = opnet(dir.path(), &["payouts", "show", "--period", &end]);
    assert!(show.status.success(), "{}", text(&show));
    let table = String::from_utf8_lossy(&show.stdout);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .filter(|l| l.contains('┆') && !l.contains("operator share"))
        .map(|l| l.split('┆').collect())
        .collect();
    assert!(!rows.is_empty(), "{table}");
    for cells in &rows {
        for money in &cells[4..10] {
            // One space of padding after the last digit: right-aligned.
            let figure = money.trim_end();
            assert!(
                figure.ends_with(|c: char| c.is_ascii_digit()) && money.len() - figure.len() == 1,
                "not right-aligned: {money:?}\n{table}"
            );
        }
    }

    // Issue 12 item 4: `scorecard show` — every active operator's total, then one
    // operator's components in words; an unclosed period is refused plainly.
    let sc = opnet(dir.path(), &["scorecard", "show", "--period", &end]);
    assert!(sc.status.success(), "{}", text(&sc));
    let sc_table = String::from_utf8_lossy(&sc.stdout);
    let first_op = sc_table
        .lines()
        .find_map(|l| {
            let cell = l.split('┆').next()?.trim_start_matches('│').trim();
            cell.starts_with("OP-").then(|| cell.to_string())
        })
        .unwrap_or_else(|| panic!("no operator row:\n{sc_table}"));
    assert!(sc_table.contains("revenue_generation"), "{sc_table}");
    let one = opnet(
        dir.path(),
        &[
            "scorecard",
            "show",
            "--period",
            &end,
            "--operator",
            &first_op,
        ],
    );
    assert!(one.status.success(), "{}", text(&one));
    let one = String::from_utf8_lossy(&one.stdout);
    assert!(
        one.contains(&format!("scorecard {end} of {first_op}")) && one.contains("Total"),
        "{one}"
    );
    let none = opnet(dir.path(), &["scorecard", "show", "--period", "1999-01"]);
    assert!(!none.status.success());
    assert!(
        text(&none).contains("no scorecards for 1999-01"),
        "{}",
        text(&none)
    );
    // R8.3: the demo distributed the leads once; `leads show` lists them.
    assert!(stdout.contains("leads distributed (R8.3)"), "{stdout}");
    let leads = opnet(dir.path(), &["leads", "show", "--since", "2000-01-01"]);
    assert!(leads.status.success(), "{}", text(&leads));

    let stderr = String::from_utf8_lossy(&out.stderr);
    // Logs: a line per run at info, none per mail; no colour codes in a pipe.
    assert!(
        !stderr.contains('\u{1b}'),
        "ANSI escape codes in a pipe: {stderr}"
    );
    assert!(stderr.contains("Run succeeded"), "{stderr}");
    assert!(!stderr.contains("email sent"), "{stderr}");
    assert!(
        stderr.lines().count() < 60,
        "{} log lines:\n{stderr}",
        stderr.lines().count()
    );

    // The SQLite file has a succeeded ingest run.
    let db = dir.path().join("opnet-data/opnet.db");
    assert!(db.exists());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (ingests, statements): (i64, i64) = rt.block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        let a = sqlx::query_scalar(
            "SELECT COUNT(*) FROM job_runs WHERE job = 'ingest' AND status = 'succeeded'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        let b = sqlx::query_scalar("SELECT COUNT(*) FROM payout_statements")
            .fetch_one(&pool)
            .await
            .unwrap();
        (a, b)
    });
    assert_eq!(ingests, 1);
    assert!(statements > 0);
    // Statement emails landed in the .eml outbox.
    let emls = std::fs::read_dir(dir.path().join("opnet-data/outbox"))
        .unwrap()
        .count();
    assert!(emls > 0);

    // An independent reader opens every snapshot and mart file.
    let check = r#"
import glob, sys
import pyarrow.parquet as pq
files = glob.glob(sys.argv[1] + '/**/*.parquet', recursive=True)
assert any('/raw/billing/invoices/ingested=' in f for f in files), files
assert any('/marts/payout_statements/period=' in f for f in files), files
n = sum(pq.read_table(f).num_rows for f in files if '/raw/billing/invoice_lines/' in f)
assert n > 0
print(len(files), n)
"#;
    let py = Command::new("python3")
        .args(["-c", check])
        .arg(dir.path().join("opnet-data/lake"))
        .output();
    match py {
        Ok(o) if o.status.success() => {}
        Ok(o) if String::from_utf8_lossy(&o.stderr).contains("No module named") => {
            common::unavailable("pyarrow");
        }
        Ok(o) => panic!("pyarrow could not read the lake: {}", text(&o)),
        Err(e) => {
            common::unavailable(&format!("python3 ({e})"));
        }
    }

    // Running the demo again changes nothing that was approved and sends nothing
    // twice, and says so; under `cargo run` its hints use that form.
    let again = command(dir.path(), &["demo", "--operators", "15", "--months", "4"])
        .env("CARGO_PKG_NAME", "opnet")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", text(&again));
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(
        stdout.contains("(revision 1): already approved, already sent"),
        "{stdout}"
    );
    assert!(stdout.contains("none new; "), "{stdout}");
    assert!(
        stdout.contains("payouts already approved (revision 1)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("next: cargo run -- payouts show --period "),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("opnet-data/outbox"))
            .unwrap()
            .count(),
        emls
    );
}

/// Issue 14: the README's demo command prints a summary that fits a screen, with the
/// default 60 operators × 15 months.
#[test]
fn default_demo_prints_under_60_lines() {
    let dir = tempfile::tempdir().unwrap();
    let out = command(dir.path(), &["demo"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines = stdout.lines().count();
    assert!(lines < 60, "{lines} lines:\n{stdout}");
    assert!(stdout.contains("next: "), "{stdout}");
}

#[test]
fn every_command_has_help_and_failures_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in [
        vec!["--help"],
        vec!["demo", "--help"],
        vec!["generate", "--help"],
        vec!["ingest", "--help"],
        vec!["close", "--help"],
        vec!["runs", "--help"],
        vec!["payouts", "approve", "--help"],
        vec!["payouts", "send", "--help"],
        vec!["payouts", "show", "--help"],
        vec!["report", "--help"],
        vec!["deliver", "--help"],
        vec!["schedule", "--help"],
        vec!["status", "--help"],
        vec!["check", "--help"],
        vec!["scorecard", "show", "--help"],
        vec!["leads", "assign", "--help"],
        vec!["leads", "show", "--help"],
    ] {
        let o = opnet(dir.path(), &cmd);
        assert!(o.status.success(), "{cmd:?}: {}", text(&o));
    }
    // Issue 14: every option says what it is for.
    let top = text(&opnet(dir.path(), &["--help"]));
    assert!(top.contains("s3://bucket[/prefix]"), "{top}");
    let demo = text(&opnet(dir.path(), &["demo", "--help"]));
    assert!(demo.contains("Seed of the generator"), "{demo}");
    // A config error names the key and fails.
    std::fs::write(dir.path().join("bad.toml"), "database = \"mysql://x\"\n").unwrap();
    let o = opnet(dir.path(), &["--config", "bad.toml", "runs"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("key database"), "{}", text(&o));
    // A missing source file fails ingest with a message naming it.
    std::fs::create_dir_all(dir.path().join("empty")).unwrap();
    let o = opnet(dir.path(), &["--source", "empty", "ingest"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("billing/invoices"), "{}", text(&o));
}
