//! `opnet scorecard show --period M [--operator ID]`: a period's R8.1 operator
//! scorecards (`operator_scorecards`, written by the close's scorecard job) as a
//! table for a person at a terminal — per operator its seven components and the
//! total, in the rule's order.

use anyhow::{Result, bail};
use opnet_pipelines::Period;
use sqlx::Row;

use crate::app::App;
use crate::term::table;

/// R8.1's components in the rule's order, then the total.
const ORDER: [&str; 8] = [
    "revenue_generation",
    "customer_acquisition",
    "customer_retention",
    "implementation_speed",
    "customer_satisfaction",
    "training_compliance",
    "community_contribution",
    "total",
];

/// One `operator_scorecards` row.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreRow {
    pub operator_id: String,
    pub component: String,
    pub value: Option<f64>,
    pub score: Option<f64>,
    pub weight: Option<f64>,
}

/// A component's value as a person reads it: MRR in USD (the value is cents),
/// shares as percentages, counts and days as numbers; empty when null.
fn value_text(component: &str, value: Option<f64>) -> String {
    let Some(v) = value else {
        return String::new();
    };
    match component {
        "revenue_generation" => crate::mail::format_cents(v.round() as i64, "USD"),
        "customer_retention" | "training_compliance" => format!("{:.1} %", 100.0 * v),
        "implementation_speed" => format!("{v:.1} days"),
        _ => format!("{v:.2}"),
    }
}

/// The rows as a table, operators in id order, components in the rule's order
/// (unknown ones after, by name).
pub fn render(period: Period, rows: &[ScoreRow]) -> String {
    let rank = |c: &str| ORDER.iter().position(|o| *o == c).unwrap_or(ORDER.len());
    let mut sorted: Vec<&ScoreRow> = rows.iter().collect();
    sorted.sort_by(|a, b| {
        (&a.operator_id, rank(&a.component), &a.component).cmp(&(
            &b.operator_id,
            rank(&b.component),
            &b.component,
        ))
    });
    let mut t = table(["operator", "component", "value", "score", "weight"]);
    for r in &sorted {
        t.add_row([
            r.operator_id.clone(),
            r.component.clone(),
            value_text(&r.component, r.value),
            r.score.map(|s| format!("{s:.1}")).unwrap_or_default(),
            r.weight.map(|w| format!("{w:.2}")).unwrap_or_default(),
        ]);
    }
    let operators = sorted
        .iter()
        .map(|r| r.operator_id.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    format!(
        "{t}\n{period}: scorecards of {operators} operator(s); an empty score is a component without data, left out of the total (R8.1)"
    )
}

/// `opnet scorecard show`: the period's scorecards, or one operator's.
pub async fn show(app: &App, period: Period, operator: Option<&str>) -> Result<String> {
    let mut conn = app.db.pool.acquire().await?;
    if !crate::leads::store::table_exists(&mut conn, "operator_scorecards").await? {
        bail!(
            "this database has no operator_scorecards table: the scorecard job (R8.1) has not been installed here"
        );
    }
    let mut sql = "SELECT operator_id, component, value, score, weight FROM operator_scorecards \
                   WHERE period = $1"
        .to_string();
    if operator.is_some() {
        sql.push_str(" AND operator_id = $2");
    }
    let mut q = sqlx::query(&sql).bind(period.to_string());
    if let Some(op) = operator {
        q = q.bind(op.to_string());
    }
    let rows = q
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| {
            Ok(ScoreRow {
                operator_id: r.try_get(0)?,
                component: r.try_get(1)?,
                value: r.try_get(2)?,
                score: r.try_get(3)?,
                weight: r.try_get(4)?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    if rows.is_empty() {
        bail!(
            "no scorecards for {period}{}: close the period first (opnet close --from {period} --through {period})",
            operator
                .map(|o| format!(" and operator {o}"))
                .unwrap_or_default()
        );
    }
    Ok(render(period, &rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(op: &str, component: &str, value: Option<f64>, score: Option<f64>) -> ScoreRow {
        ScoreRow {
            operator_id: op.into(),
            component: component.into(),
            value,
            score,
            weight: Some(0.2),
        }
    }

    /// R8.1's order per operator whatever the database's; money, shares and days
    /// worded; a null score left empty.
    #[test]
    fn r8_1_scorecards_in_the_rules_order_with_values_worded() {
        let p = Period::parse("2025-06").unwrap();
        let out = render(
            p,
            &[
                row("OP-2", "total", None, Some(55.0)),
                row("OP-1", "total", None, Some(71.25)),
                row("OP-1", "customer_retention", Some(0.875), Some(97.2)),
                row("OP-1", "revenue_generation", Some(1_234_567.0), Some(82.3)),
                row("OP-1", "implementation_speed", None, None),
            ],
        );
        let order: Vec<&str> = out
            .lines()
            .filter(|l| l.contains("OP-"))
            .map(|l| l.split('┆').nth(1).unwrap().trim())
            .collect();
        assert_eq!(
            order,
            [
                "revenue_generation",
                "customer_retention",
                "implementation_speed",
                "total",
                "total"
            ]
        );
        assert!(out.contains("12,345.67 USD"), "{out}");
        assert!(out.contains("87.5 %"), "{out}");
        assert!(out.contains("71.2") || out.contains("71.3"), "{out}");
        assert!(out.contains("scorecards of 2 operator(s)"), "{out}");
    }

    /// Against a database: the table missing is said plainly; an empty period too;
    /// `--operator` keeps only that operator's rows.
    #[tokio::test(flavor = "multi_thread")]
    async fn show_reads_the_period_and_one_operator() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::Config {
            source: dir.path().join("source").display().to_string(),
            lake: dir.path().join("lake").display().to_string(),
            database: format!("sqlite://{}/o.db", dir.path().display()),
            mail: format!("file:{}", dir.path().join("outbox").display()),
            email: Default::default(),
            schedule: Default::default(),
            plan: Default::default(),
            plan_origin: "test".into(),
            file: None,
            sources: Default::default(),
            smtp: Default::default(),
            s3: Default::default(),
            ingest: Default::default(),
            close: Default::default(),
            leads: Default::default(),
        };
        let app = App::open(config).await.unwrap();
        let p = Period::parse("2025-06").unwrap();
        let pool = &app.db.pool;
        let has_table = sqlx::query("SELECT 1 FROM operator_scorecards LIMIT 1")
            .fetch_optional(pool)
            .await
            .is_ok();
        if !has_table {
            let e = show(&app, p, None).await.unwrap_err();
            assert!(
                e.to_string().contains("no operator_scorecards table"),
                "{e}"
            );
            // As the data contract has it (the scorecard job's migration creates it).
            sqlx::query(
                "CREATE TABLE operator_scorecards (period TEXT NOT NULL, operator_id TEXT NOT NULL, \
                 component TEXT NOT NULL, value REAL, score REAL, weight REAL NOT NULL, run_id TEXT NOT NULL)",
            )
            .execute(pool)
            .await
            .unwrap();
        }
        let e = show(&app, p, None).await.unwrap_err();
        assert!(e.to_string().contains("no scorecards for 2025-06"), "{e}");
        for (op, score) in [("OP-1", 61.5), ("OP-2", 42.0)] {
            sqlx::query(
                "INSERT INTO operator_scorecards (period, operator_id, component, value, score, weight, run_id) \
                 VALUES ('2025-06', $1, 'total', NULL, $2, 1.0, 'r')",
            )
            .bind(op)
            .bind(score)
            .execute(pool)
            .await
            .unwrap();
        }
        let all = show(&app, p, None).await.unwrap();
        assert!(all.contains("OP-1") && all.contains("OP-2"), "{all}");
        let one = show(&app, p, Some("OP-2")).await.unwrap();
        assert!(one.contains("OP-2") && !one.contains("OP-1"), "{one}");
        assert!(one.contains("42.0"), "{one}");
    }
}
