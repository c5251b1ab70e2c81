//! What a simulation reports: one row per period, operator and currency with the
//! payable of the recorded statement (latest revision) and of the simulated one and
//! the difference; per period and currency totals; the largest differences; and the
//! three forms people read them in — a terminal table, `simulation.csv` (every row,
//! exact cents) and `index.html` (totals and a chart of the monthly totals per
//! currency, self-contained).
//!
//! Money stays integer cents (R0.2): sums are checked, never wrapped; only the chart
//! turns cents into `f64`, to place points.

use std::collections::BTreeMap;

use minijinja::{Environment, Value, context};
use opnet_pipelines::Period;
use serde::Serialize;

use crate::charts::{Axis, BLUE_LINE, Line, LineChart, YFormat, draw_line_chart};
use crate::mail::format_cents;
use crate::mail::render::csv_row;
use crate::mail::render::tier_label;

const PAGE_TEMPLATE: &str = include_str!("page.html");

/// Colour of the simulated line (the recorded one is the charts' blue).
const SIMULATED_LINE: plotters::style::RGBColor = plotters::style::RGBColor(0xe0, 0x7b, 0x00);

/// One statement of either side: its key, tier and payable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    pub period: Period,
    pub operator_id: String,
    pub currency: String,
    pub tier: String,
    pub payable_cents: i64,
}

/// One row of the simulation: a statement on either side or both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub period: Period,
    pub operator_id: String,
    pub currency: String,
    /// `None`: no recorded statement (it counts as 0).
    pub recorded_tier: Option<String>,
    /// `None`: no simulated statement (it counts as 0).
    pub simulated_tier: Option<String>,
    pub recorded_payable_cents: i64,
    pub simulated_payable_cents: i64,
    /// simulated − recorded.
    pub difference_cents: i64,
}

/// A sum or difference of cents left `i64` (R0.2: an error, never a wrapped figure).
#[derive(Debug, thiserror::Error)]
#[error("simulation: {what} leaves the range of i64 cents")]
pub struct Overflow {
    what: String,
}

fn overflow(what: impl Into<String>) -> Overflow {
    Overflow { what: what.into() }
}

/// The rows of a simulation, sorted by period, operator, currency: every statement of
/// either side; a statement on one side only counts with 0 on the other.
pub fn diff(recorded: Vec<Statement>, simulated: Vec<Statement>) -> Result<Vec<Row>, Overflow> {
    type Key = (Period, String, String);
    let mut sides: BTreeMap<Key, (Option<Statement>, Option<Statement>)> = BTreeMap::new();
    for s in recorded {
        let key = (s.period, s.operator_id.clone(), s.currency.clone());
        sides.entry(key).or_default().0 = Some(s);
    }
    for s in simulated {
        let key = (s.period, s.operator_id.clone(), s.currency.clone());
        sides.entry(key).or_default().1 = Some(s);
    }
    sides
        .into_iter()
        .map(|((period, operator_id, currency), (rec, sim))| {
            let r = rec.as_ref().map_or(0, |s| s.payable_cents);
            let s = sim.as_ref().map_or(0, |s| s.payable_cents);
            let difference_cents = s.checked_sub(r).ok_or_else(|| {
                overflow(format!(
                    "the difference of {period} {operator_id} {currency}"
                ))
            })?;
            Ok(Row {
                period,
                operator_id,
                currency,
                recorded_tier: rec.map(|s| s.tier),
                simulated_tier: sim.map(|s| s.tier),
                recorded_payable_cents: r,
                simulated_payable_cents: s,
                difference_cents,
            })
        })
        .collect()
}

/// The totals of one period and currency.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Total {
    pub recorded_cents: i64,
    pub simulated_cents: i64,
    pub difference_cents: i64,
    /// Operators whose payable differs.
    pub operators_affected: usize,
}

/// Per (period, currency), in that order.
pub fn totals(rows: &[Row]) -> Result<BTreeMap<(Period, String), Total>, Overflow> {
    let mut out: BTreeMap<(Period, String), Total> = BTreeMap::new();
    for r in rows {
        let t = out.entry((r.period, r.currency.clone())).or_default();
        let what = || overflow(format!("the totals of {} {}", r.period, r.currency));
        t.recorded_cents = t
            .recorded_cents
            .checked_add(r.recorded_payable_cents)
            .ok_or_else(what)?;
        t.simulated_cents = t
            .simulated_cents
            .checked_add(r.simulated_payable_cents)
            .ok_or_else(what)?;
        t.difference_cents = t
            .difference_cents
            .checked_add(r.difference_cents)
            .ok_or_else(what)?;
        if r.difference_cents != 0 {
            t.operators_affected += 1;
        }
    }
    Ok(out)
}

/// The `n` rows with the largest differences (by absolute value; ties in row order),
/// zero differences left out.
pub fn largest(rows: &[Row], n: usize) -> Vec<&Row> {
    let mut out: Vec<&Row> = rows.iter().filter(|r| r.difference_cents != 0).collect();
    // Stable: equal differences keep the period, operator, currency order.
    out.sort_by_key(|r| std::cmp::Reverse(r.difference_cents.unsigned_abs()));
    out.truncate(n);
    out
}

/// `simulation.csv`: a header and every row, in row order (period, operator,
/// currency), money as exact integer cents; a tier is empty on the side without a
/// statement.
pub fn csv(rows: &[Row]) -> String {
    let mut out = String::new();
    csv_row(
        &mut out,
        &[
            "period",
            "operator_id",
            "currency",
            "recorded_tier",
            "simulated_tier",
            "recorded_payable_cents",
            "simulated_payable_cents",
            "difference_cents",
        ],
    );
    for r in rows {
        csv_row(
            &mut out,
            &[
                &r.period.to_string(),
                &r.operator_id,
                &r.currency,
                r.recorded_tier.as_deref().unwrap_or(""),
                r.simulated_tier.as_deref().unwrap_or(""),
                &r.recorded_payable_cents.to_string(),
                &r.simulated_payable_cents.to_string(),
                &r.difference_cents.to_string(),
            ],
        );
    }
    out
}

/// Money in a table cell: the number without the currency (the currency has its
/// own column), as `payouts show` writes it.
fn cell(cents: i64) -> String {
    format_cents(cents, "")
}

/// A difference with its sign, `+12.50`, so a rise reads as one.
fn signed(cents: i64) -> String {
    if cents > 0 {
        format!("+{}", cell(cents))
    } else {
        cell(cents)
    }
}

/// `bronze → silver`, or the one tier when both sides agree; `—` for a side without
/// a statement.
fn tier_change(r: &Row) -> String {
    let side = |t: &Option<String>| t.as_deref().map_or("—".to_string(), tier_label);
    if r.recorded_tier == r.simulated_tier {
        side(&r.recorded_tier)
    } else {
        format!("{} → {}", side(&r.recorded_tier), side(&r.simulated_tier))
    }
}

/// The terminal report: the totals per period and currency, then the `top` largest
/// per-operator differences.
pub fn terminal(rows: &[Row], top: usize) -> Result<String, Overflow> {
    use comfy_table::CellAlignment::Right;
    let mut t = crate::term::table([
        "period",
        "cur",
        "recorded",
        "simulated",
        "difference",
        "operators affected",
    ]);
    for ((period, cur), x) in totals(rows)? {
        t.add_row(vec![
            period.to_string(),
            cur,
            cell(x.recorded_cents),
            cell(x.simulated_cents),
            signed(x.difference_cents),
            x.operators_affected.to_string(),
        ]);
    }
    for i in 2..6 {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(Right);
        }
    }
    let mut out = format!("payable per period and currency\n{t}\n");
    let big = largest(rows, top);
    if big.is_empty() {
        out.push_str("no operator's payable differs\n");
        return Ok(out);
    }
    let mut b = crate::term::table([
        "period",
        "operator",
        "cur",
        "tier",
        "recorded",
        "simulated",
        "difference",
    ]);
    for r in &big {
        b.add_row(vec![
            r.period.to_string(),
            r.operator_id.clone(),
            r.currency.clone(),
            tier_change(r),
            cell(r.recorded_payable_cents),
            cell(r.simulated_payable_cents),
            signed(r.difference_cents),
        ]);
    }
    for i in 4..7 {
        if let Some(c) = b.column_mut(i) {
            c.set_cell_alignment(Right);
        }
    }
    out.push_str(&format!(
        "largest differences ({} of {} statement(s) that differ)\n{b}\n",
        big.len(),
        rows.iter().filter(|r| r.difference_cents != 0).count()
    ));
    Ok(out)
}

/// What the page says about the simulation besides its rows.
pub struct PageInfo<'a> {
    pub plan_file: &'a str,
    /// The simulated plan version per period, in words ("2027.1 for 2025-01 .. 2025-06").
    pub simulated_plan: &'a str,
    /// The recorded plan versions, in words.
    pub recorded_plan: &'a str,
    pub from: Period,
    pub through: Period,
    pub top: usize,
}

#[derive(Serialize)]
struct TotalView {
    period: String,
    currency: String,
    recorded: String,
    simulated: String,
    difference: String,
    operators_affected: usize,
    changed: bool,
}

#[derive(Serialize)]
struct RowView {
    period: String,
    operator_id: String,
    currency: String,
    tier: String,
    recorded: String,
    simulated: String,
    difference: String,
}

#[derive(Serialize)]
struct ChartView {
    currency: String,
    /// `2025-01 .. 2025-12`
    span: String,
    svg: Value,
}

/// Why the page could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error(transparent)]
    Overflow(#[from] Overflow),
    #[error("simulation page template: {0}")]
    Template(#[from] minijinja::Error),
    #[error("simulation chart of {currency}: {reason}")]
    Chart { currency: String, reason: String },
}

/// `index.html`: the totals table, a chart of the monthly totals (recorded and
/// simulated) per currency, and the largest differences. Self-contained: inline CSS
/// and SVG, no external resource; every text is escaped by the template engine.
pub fn page(rows: &[Row], info: &PageInfo<'_>) -> Result<String, PageError> {
    let totals = totals(rows)?;
    let mut charts = Vec::new();
    // Twelve months per chart: the shared trend axis labels every month, and a
    // longer range would crowd them; a 36-month range gets three charts per currency.
    let currencies: std::collections::BTreeSet<&str> =
        totals.keys().map(|(_, c)| c.as_str()).collect();
    let windows: Vec<(Period, Period)> = {
        let months: Vec<Period> = info.from.through(info.through).collect();
        months
            .chunks(12)
            .filter_map(|w| Some((*w.first()?, *w.last()?)))
            .collect()
    };
    for cur in currencies {
        for &(first, last) in &windows {
            let axis = Axis::months(first, last);
            let (mut recorded, mut simulated) = (Vec::new(), Vec::new());
            for ((period, c), t) in &totals {
                if c != cur {
                    continue;
                }
                let Some(x) = axis.index(*period) else {
                    continue;
                };
                // f64 only to place the points (charts.rs): the figures are in the table.
                recorded.push((x, t.recorded_cents as f64));
                simulated.push((x, t.simulated_cents as f64));
            }
            let span = if first == last {
                first.to_string()
            } else {
                format!("{first} .. {last}")
            };
            let spec = LineChart {
                id: format!("totals-{cur}-{first}"),
                caption: format!("Payable per month in {cur}, recorded and simulated, {span}"),
                y_desc: format!("payable ({cur})"),
                y_format: YFormat::Money(cur.to_string()),
                lines: vec![
                    Line {
                        label: "recorded".into(),
                        colour: BLUE_LINE,
                        points: recorded,
                    },
                    Line {
                        label: "simulated".into(),
                        colour: SIMULATED_LINE,
                        points: simulated,
                    },
                ],
                guides: Vec::new(),
                y_range: None,
            };
            let svg = draw_line_chart(&axis, &spec).map_err(|e| PageError::Chart {
                currency: cur.to_string(),
                reason: e.to_string(),
            })?;
            charts.push(ChartView {
                currency: cur.to_string(),
                span,
                // Made by plotters from our own figures; its texts are escaped there.
                svg: Value::from_safe_string(svg),
            });
        }
    }
    let total_views: Vec<TotalView> = totals
        .iter()
        .map(|((period, cur), t)| TotalView {
            period: period.to_string(),
            currency: cur.clone(),
            recorded: format_cents(t.recorded_cents, cur),
            simulated: format_cents(t.simulated_cents, cur),
            difference: signed(t.difference_cents) + " " + cur,
            operators_affected: t.operators_affected,
            changed: t.difference_cents != 0,
        })
        .collect();
    let differing = rows.iter().filter(|r| r.difference_cents != 0).count();
    let largest: Vec<RowView> = largest(rows, info.top)
        .into_iter()
        .map(|r| RowView {
            period: r.period.to_string(),
            operator_id: r.operator_id.clone(),
            currency: r.currency.clone(),
            tier: tier_change(r),
            recorded: format_cents(r.recorded_payable_cents, &r.currency),
            simulated: format_cents(r.simulated_payable_cents, &r.currency),
            difference: signed(r.difference_cents) + " " + &r.currency,
        })
        .collect();
    let mut env = Environment::new();
    // The .html name turns on HTML auto-escaping: the plan file name and ids are text.
    env.add_template("simulation.html", PAGE_TEMPLATE)?;
    Ok(env.get_template("simulation.html")?.render(context! {
        plan_file => info.plan_file,
        simulated_plan => info.simulated_plan,
        recorded_plan => info.recorded_plan,
        from => info.from.to_string(),
        through => info.through.to_string(),
        statements => rows.len(),
        differing,
        totals => total_views,
        charts,
        largest,
    })?)
}

#[cfg(test)]
mod tests;
