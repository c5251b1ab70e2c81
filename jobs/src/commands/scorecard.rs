//! `opnet scorecard show --period M [--operator ID]`: the R8.1 scorecards of a closed
//! period at a terminal — one row per operator (its total and the seven component
//! scores), or, for one operator, one row per component with its value and weight.

use crate::app::App;
use crate::jobs::scorecard::component_view;
use crate::term::table;
use comfy_table::CellAlignment;
use opnet_pipelines::Period;
use opnet_pipelines::scorecard::{COMPONENTS, component};
use sqlx::Row;
use std::collections::BTreeMap;

/// A score or a value for people: one decimal, `—` when there is none.
fn figure(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "—".into())
}

/// The period's scorecards as a terminal table.
pub async fn show(app: &App, period: Period, operator: Option<&str>) -> anyhow::Result<String> {
    let rows = sqlx::query(
        "SELECT operator_id, component, value, score, weight FROM operator_scorecards \
         WHERE period = $1 AND ($2 = '' OR operator_id = $2) ORDER BY operator_id, component",
    )
    .bind(period.to_string())
    .bind(operator.unwrap_or(""))
    .fetch_all(&app.db.pool)
    .await?;
    if rows.is_empty() {
        anyhow::bail!(
            "no scorecards for {period}{} — run `opnet close --through {period}` first",
            operator
                .map(|o| format!(" and operator {o}"))
                .unwrap_or_default()
        );
    }
    type Cells = BTreeMap<String, (Option<f64>, Option<f64>, f64)>;
    let mut by_op: BTreeMap<String, Cells> = BTreeMap::new();
    for r in &rows {
        by_op
            .entry(r.try_get(0)?)
            .or_default()
            .insert(r.try_get(1)?, (r.try_get(2)?, r.try_get(3)?, r.try_get(4)?));
    }
    if let (Some(op), Some(cells)) = (operator, by_op.values().next()) {
        // Values in words, as the operator's report shows them, at the period's plan.
        let plan = app.config.plan.for_period(period)?;
        let mut t = table([
            "component",
            "value",
            "score",
            "weight",
            "what would raise it",
        ]);
        for c in COMPONENTS {
            let (value, score, weight) = cells.get(c).copied().unwrap_or((None, None, 0.0));
            let v = component_view(c, value, score, weight, plan);
            t.add_row([v.label, v.value, v.score, v.weight, v.advice]);
        }
        let (_, total, weight) = cells
            .get(component::TOTAL)
            .copied()
            .unwrap_or((None, None, 0.0));
        t.add_row([
            "Total".to_string(),
            String::new(),
            figure(total),
            format!("{:.0} %", weight * 100.0),
            String::new(),
        ]);
        for i in 1..4 {
            if let Some(col) = t.column_mut(i) {
                col.set_cell_alignment(CellAlignment::Right);
            }
        }
        return Ok(format!("scorecard {period} of {op}\n{t}"));
    }
    let mut header = vec!["operator", "total"];
    header.extend(COMPONENTS);
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    t.set_header(header);
    for (op, cells) in &by_op {
        let mut row = vec![
            op.clone(),
            figure(cells.get(component::TOTAL).and_then(|c| c.1)),
        ];
        row.extend(
            COMPONENTS
                .iter()
                .map(|c| figure(cells.get(*c).and_then(|c| c.1))),
        );
        t.add_row(row);
    }
    for i in 1..=COMPONENTS.len() + 1 {
        if let Some(col) = t.column_mut(i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    Ok(format!(
        "scorecards {period}: {} operator(s), scores 0–100 (— without data)\n{t}",
        by_op.len()
    ))
}
