//! Terminal output: the one table style of every command, and the summaries of an
//! ingest and a close. Numbers that are money are right-aligned.

use crate::close;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};

pub fn table<const N: usize>(header: [&str; N]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(header);
    t
}

pub fn print_ingest(r: &crate::ingest::IngestReport) {
    let mut t = table([
        "dataset",
        "rows in",
        "ok",
        "quarantined",
        "warnings",
        "quarantine file",
    ]);
    for d in &r.datasets {
        t.add_row([
            d.dataset.clone(),
            d.rows_in.to_string(),
            d.rows_ok.to_string(),
            d.rows_quarantined.to_string(),
            d.warnings.to_string(),
            d.quarantine.clone().unwrap_or_default(),
        ]);
    }
    println!("{t}");
    for d in r.datasets.iter().filter(|d| d.warnings > 0) {
        println!(
            "{}: {} warning(s) on rows kept ({} identical repeat(s) collapsed), see {}",
            d.dataset,
            d.warnings,
            d.rows_collapsed,
            d.warnings_file.as_deref().unwrap_or_default()
        );
    }
    println!(
        "snapshot {}{} — {} rows, {} quarantined, {} warning(s)",
        r.snapshot,
        if r.reused {
            " (unchanged sources: reused)"
        } else {
            ""
        },
        r.rows_in(),
        r.rows_quarantined(),
        r.warnings()
    );
}

pub fn print_close(r: &close::CloseReport) {
    let mut t = table(["period", "job", "rows written", "notes"]);
    for run in &r.runs {
        t.add_row([
            run.period.to_string(),
            run.job.to_string(),
            run.rows_out.to_string(),
            run.notes.join("; "),
        ]);
    }
    println!("{t}");
    println!(
        "emails delivered: {} (failed: {})",
        r.delivery.sent, r.delivery.failed
    );
    if r.mail.suppressed > 0 || r.mail.failed > 0 {
        println!(
            "emails not sent: {} suppressed (backfill; see `opnet status`), {} undeliverable",
            r.mail.suppressed, r.mail.failed
        );
    }
}
