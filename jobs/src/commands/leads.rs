//! `opnet leads assign [--at RFC3339]` and `opnet leads show [--since …]`: lead
//! distribution (R8.3) run by hand, and its assignments as a table for a person at a
//! terminal.

use anyhow::Result;
use chrono::{DateTime, Utc};

use crate::app::App;
use crate::db::Value;
use crate::leads::{self, LeadReport, store};
use crate::term::table;

/// What `opnet leads assign` prints: the run, its assignments by rule, what was
/// mailed, published and written back, and any step after the commit that failed.
pub fn summary(r: &LeadReport) -> String {
    let mut t = table(["what", "how many", "notes"]);
    t.add_row([
        "run".to_string(),
        r.run_id.clone(),
        format!(
            "T = {}, snapshot {}{}",
            crate::db::timestamp(r.at),
            r.snapshot,
            if r.snapshot_reused { " (reused)" } else { "" }
        ),
    ]);
    t.add_row([
        "standing".to_string(),
        String::new(),
        match &r.closed_period {
            Some(p) => format!("tiers and scores of {p}, the latest closed period"),
            None => "no closed period yet: every operator tier none, no scores".into(),
        },
    ]);
    t.add_row([
        "leads assigned".to_string(),
        r.assigned().to_string(),
        r.by_rule
            .iter()
            .map(|(rule, n)| format!("{rule} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
    ]);
    t.add_row([
        "no capacity (new)".to_string(),
        r.no_capacity.to_string(),
        if r.released > 0 {
            format!(
                "{} lead(s) waiting in all; {} waiting lead(s) assigned in the CRM meanwhile, no longer tried",
                r.waiting, r.released
            )
        } else {
            format!("{} lead(s) waiting in all", r.waiting)
        },
    ]);
    t.add_row([
        "emails".to_string(),
        r.mail.queued.to_string(),
        format!(
            "{} operator(s) told their new leads; delivered {}, failed {}",
            r.operators_mailed, r.delivery.sent, r.delivery.failed
        ),
    ]);
    t.add_row([
        "published".to_string(),
        r.published.len().to_string(),
        if r.published.is_empty() {
            "nothing new to publish".to_string()
        } else {
            r.published.join("\n")
        },
    ]);
    if let Some(n) = r.written_back {
        t.add_row([
            "written back to the CRM".to_string(),
            n.to_string(),
            String::new(),
        ]);
    }
    let mut out = t.to_string();
    for p in &r.problems {
        out.push_str(&format!(
            "\nnot done (the next run tries again; the assignments stand): {p}"
        ));
    }
    out
}

/// `opnet leads show`: assignments made at or after `since` (default: the last 7
/// days), optionally of one operator, oldest first, with a count by rule.
pub async fn show(
    app: &App,
    since: Option<DateTime<Utc>>,
    operator: Option<&str>,
) -> Result<String> {
    let since = since.unwrap_or_else(|| Utc::now() - chrono::TimeDelta::days(7));
    let mut filter = "assigned_at >= $1".to_string();
    let mut binds = vec![Value::Text(crate::db::timestamp(since))];
    if let Some(op) = operator {
        filter.push_str(" AND operator_id = $2");
        binds.push(Value::Text(op.to_string()));
    }
    let mut conn = app.db.pool.acquire().await?;
    let rows = store::rows(&mut conn, &filter, &binds).await?;
    let waiting = store::waiting(&mut conn).await?;
    let mut t = table([
        "lead_id",
        "operator_id",
        "rule",
        "score",
        "assigned_at",
        "run_id",
    ]);
    let mut by_rule: std::collections::BTreeMap<&str, usize> = Default::default();
    for r in &rows {
        *by_rule.entry(r.rule.as_str()).or_default() += 1;
        t.add_row([
            r.lead_id.clone(),
            r.operator_id.clone().unwrap_or_default(),
            r.rule.clone(),
            r.score.map(|s| format!("{s:.3}")).unwrap_or_default(),
            r.assigned_at.clone(),
            r.run_id.clone(),
        ]);
    }
    let counts = if by_rule.is_empty() {
        "none".to_string()
    } else {
        by_rule
            .iter()
            .map(|(rule, n)| format!("{rule} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Ok(format!(
        "{t}\n{} row(s) since {}{}: {counts}; {waiting} lead(s) waiting without an operator (no_capacity) in all",
        rows.len(),
        crate::db::timestamp(since),
        operator.map(|o| format!(" for {o}")).unwrap_or_default(),
    ))
}

/// `--at`: RFC 3339.
pub fn parse_at(s: &str) -> Result<DateTime<Utc>, String> {
    leads::parse_time(s, false)
}

/// `--since`: RFC 3339 or a date (midnight UTC).
pub fn parse_since(s: &str) -> Result<DateTime<Utc>, String> {
    leads::parse_time(s, true)
}
