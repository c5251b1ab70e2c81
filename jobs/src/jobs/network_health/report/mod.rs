//! The leadership network-health report (R5): one period's `network_health` figures
//! rendered as a self-contained HTML page, a plain-text KPI table and a CSV.
//!
//! The input is the `network_health` rows of the period M and of the 11 periods
//! before it. The HTML page has the KPI table of M (value, target, ✓/✗), 12-month
//! trend charts drawn with plotters into inline SVG (no external resource, so the
//! page works both as an email body and as a file), and the two gaps leadership acts
//! on: uncovered target metros and verticals with too few specialists. Money is
//! always formatted from its integer minor units (`value_cents`), never from floats;
//! the charts plot cents as `f64` only to place points, and label their ticks by
//! formatting the rounded integer again.

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error as StdError;

use minijinja::{Environment, Value, context};
use opnet_pipelines::Period;
use opnet_pipelines::period::PeriodError;

use plotters::prelude::*;

use polars::prelude::*;
use serde::Serialize;

use crate::charts::{
    Axis, BLUE_LINE, CHART_HEIGHT, CHART_WIDTH, DrawResult, Guide, LEGEND_HEIGHT, Line, LineChart,
    Mark, YFormat, draw_legend, draw_line_chart, finish_svg, fit_range, format_count,
    group_thousands, no_data, runs, trend_axes, whole_number,
};
use crate::mail::format_cents;
use crate::mail::render::csv_row;
use opnet_pipelines::Plan;
use opnet_pipelines::plan::NetworkTargets;

/// The report of one period, in the three forms the leadership email needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// A complete HTML page with inline CSS and inline SVG charts.
    pub html: String,
    /// The KPI table as plain text, for the email's text part.
    pub text: String,
    /// Every row of M as CSV: `period,metric,dimension,value,value_cents,target,on_target`.
    pub csv: Vec<u8>,
}

/// Why a report could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("report period: {0}")]
    Period(#[from] PeriodError),
    #[error("network_health rows: {0}")]
    Frame(#[from] PolarsError),
    #[error("network_health row {row}: {reason}")]
    Row { row: usize, reason: String },
    #[error("no network_health rows for {0}: run the network-health job first")]
    NoRows(String),
    #[error("chart {chart}: {message}")]
    Chart { chart: String, message: String },
    #[error("report template: {0:#}")]
    Template(#[from] minijinja::Error),
}

/// The R5 metric ids, defined once beside the rule (`opnet_pipelines::health`);
/// `metric::ALL` is also the order the report presents them in.
pub use opnet_pipelines::health::metric;

/// The `id`s of the chart figures in the HTML page. Money charts are per currency:
/// the id ends with the lower-case currency code (`chart-total-mrr-usd`).
pub mod chart_id {
    pub const ACTIVE_OPERATORS: &str = "chart-active-operators";
    pub const TOTAL_MRR_PREFIX: &str = "chart-total-mrr-";
    pub const MRR_PER_OPERATOR_PREFIX: &str = "chart-mrr-per-operator-";
    pub const OPERATOR_RETENTION: &str = "chart-operator-retention";
    pub const TIER_MIX: &str = "chart-tier-mix";
}

/// Tiers from lowest to highest: the stacking order of the tier-mix chart (R2.2).
const TIERS: [&str; 5] = opnet_pipelines::tiers::TIER_ORDER;
const TREND_MONTHS: i32 = 12;

const GREEN: &str = "#1a7f37";
const RED_TEXT: &str = "#c62828";
const GREY_TEXT: &str = "#7b8794";

const PAGE_TEMPLATE: &str = include_str!("page.html");

/// One `network_health` row, typed.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    period: Period,
    metric: String,
    dimension: Option<String>,
    value: Option<f64>,
    value_cents: Option<i64>,
    target: Option<f64>,
    on_target: Option<bool>,
}

impl Row {
    fn is_money(&self) -> bool {
        self.metric.ends_with("_cents")
    }

    /// Minor units of a money row. `value_cents` is authoritative; a producer that
    /// only filled `value` still gets its figure shown, but only when it is a whole
    /// number of cents, so no float is ever rounded into money.
    fn cents(&self) -> Option<i64> {
        self.value_cents
            .or_else(|| self.value.and_then(whole_number))
    }

    fn currency(&self) -> &str {
        self.dimension.as_deref().unwrap_or("")
    }

    /// What the trend charts plot for this row.
    fn plotted(&self) -> Option<f64> {
        if self.is_money() {
            // i64 → f64 only positions a point; labels are formatted from integers.
            self.cents().map(|c| c as f64)
        } else {
            self.value
        }
    }
}

/// Renders the report of `period` from the `network_health` rows of that period and
/// of the 11 before it, with the targets of `plan`, the plan in force for the period
/// (R0.5): the rows carry each figure's verdict and lower target, the plan the rest
/// (the top of the active-operator band, the specialists a vertical needs, the
/// currency of the money targets). Rows outside the window are ignored; months of
/// the window without rows are simply absent from the charts.
///
/// The key figures list the off-target ones first, so the reader sees what needs
/// action before what is fine.
pub fn render(period: &str, rows: &DataFrame, plan: &Plan) -> Result<Report, ReportError> {
    let net = &plan.network;
    let m = Period::parse(period)?;
    let first = m.add_months(1 - TREND_MONTHS);
    let all = read_rows(rows)?;
    let window: Vec<Row> = all
        .into_iter()
        .filter(|r| r.period >= first && r.period <= m)
        .collect();

    let mut current: Vec<Row> = window.iter().filter(|r| r.period == m).cloned().collect();
    if current.is_empty() {
        return Err(ReportError::NoRows(m.to_string()));
    }
    current.sort_by_cached_key(|r| presentation_key(r, net));
    // The CSV keeps the R5 order: it is data, and its bytes key the email (same
    // numbers, same key).
    let csv = render_csv(&current);
    current.sort_by_key(|r| r.on_target != Some(false));

    let axis = Axis::months(window.iter().map(|r| r.period).min().unwrap_or(m), m);
    let charts = trend_charts(&axis, &window, net)?;
    let html = render_html(m, &axis, &current, &charts, net)?;
    let text = render_text(m, &current, net);
    Ok(Report { html, text, csv })
}

// ---------------------------------------------------------------------------
// Reading the frame.
// ---------------------------------------------------------------------------

fn read_rows(df: &DataFrame) -> Result<Vec<Row>, ReportError> {
    let height = df.height();
    let periods = strings(df, "period", true)?;
    let metrics = strings(df, "metric", true)?;
    let dimensions = strings(df, "dimension", false)?;
    let values = floats(df, "value")?;
    let cents = ints(df, "value_cents")?;
    let targets = floats(df, "target")?;
    let on_target = bools(df, "on_target")?;

    let mut out = Vec::with_capacity(height);
    for i in 0..height {
        let row_error = |reason: &str| ReportError::Row {
            row: i,
            reason: reason.to_string(),
        };
        let period_str = periods[i]
            .as_deref()
            .ok_or_else(|| row_error("period is null"))?;
        let period = Period::parse(period_str).map_err(|e| row_error(&e.to_string()))?;
        let metric = metrics[i]
            .clone()
            .ok_or_else(|| row_error("metric is null"))?;
        out.push(Row {
            period,
            metric,
            // The table stores "no dimension" as null; an empty string means the same.
            dimension: dimensions[i].clone().filter(|d| !d.is_empty()),
            value: values[i],
            value_cents: cents[i],
            target: targets[i],
            on_target: on_target[i],
        });
    }
    Ok(out)
}

/// A nullable column as a vector; an absent optional column reads as all null, so a
/// producer that never fills, say, `value_cents` for non-money rows may omit it.
fn column(
    df: &DataFrame,
    name: &str,
    dtype: &DataType,
    required: bool,
) -> Result<Option<Column>, ReportError> {
    match df.column(name) {
        Ok(c) => Ok(Some(c.cast(dtype)?)),
        Err(e) if required => Err(e.into()),
        Err(_) => Ok(None),
    }
}

fn strings(df: &DataFrame, name: &str, required: bool) -> Result<Vec<Option<String>>, ReportError> {
    Ok(match column(df, name, &DataType::String, required)? {
        Some(c) => c.str()?.iter().map(|v| v.map(str::to_owned)).collect(),
        None => vec![None; df.height()],
    })
}

fn floats(df: &DataFrame, name: &str) -> Result<Vec<Option<f64>>, ReportError> {
    Ok(match column(df, name, &DataType::Float64, false)? {
        Some(c) => c.f64()?.iter().collect(),
        None => vec![None; df.height()],
    })
}

fn ints(df: &DataFrame, name: &str) -> Result<Vec<Option<i64>>, ReportError> {
    Ok(match column(df, name, &DataType::Int64, false)? {
        Some(c) => c.i64()?.iter().collect(),
        None => vec![None; df.height()],
    })
}

fn bools(df: &DataFrame, name: &str) -> Result<Vec<Option<bool>>, ReportError> {
    Ok(match column(df, name, &DataType::Boolean, false)? {
        Some(c) => c.bool()?.iter().collect(),
        None => vec![None; df.height()],
    })
}

// ---------------------------------------------------------------------------
// Formatting figures.
// ---------------------------------------------------------------------------

fn metric_rank(metric: &str) -> usize {
    metric::ALL
        .iter()
        .position(|m| *m == metric)
        .unwrap_or(metric::ALL.len())
}

fn tier_rank(tier: &str) -> usize {
    TIERS.iter().position(|t| *t == tier).unwrap_or(TIERS.len())
}

/// KPI order: R5 metric order, then tiers low to high, the target currency first,
/// and otherwise dimensions alphabetically (ignoring case).
fn presentation_key(r: &Row, net: &NetworkTargets) -> (usize, String, usize, String, String) {
    let dim = r.dimension.clone().unwrap_or_default();
    let sub = match r.metric.as_str() {
        metric::TIER_OPERATORS => tier_rank(&dim),
        _ if r.is_money() => usize::from(dim != net.target_currency),
        _ => 0,
    };
    let unknown = if metric_rank(&r.metric) == metric::ALL.len() {
        r.metric.clone()
    } else {
        String::new()
    };
    // Case-insensitive first, so "R&D" sorts among the lower-case verticals.
    (
        metric_rank(&r.metric),
        unknown,
        sub,
        dim.to_lowercase(),
        dim,
    )
}

fn metric_label(metric: &str) -> &str {
    match metric {
        metric::ACTIVE_OPERATORS => "Active operators",
        metric::METRO_COVERED => "Target metro covered",
        metric::COVERAGE_SHARE => "Target metros covered (share)",
        metric::VERTICAL_SPECIALISTS => "Vertical specialists",
        metric::TOTAL_MRR_CENTS => "Total MRR",
        metric::MRR_PER_OPERATOR_CENTS => "MRR per active operator",
        metric::OPERATOR_RETENTION => "Operator retention (12 months)",
        metric::PAYOUTS_CENTS => "Payouts",
        metric::TIER_OPERATORS => "Operators per tier",
        metric::OPERATORS_JOINED => "Operators joined",
        metric::OPERATORS_LOST => "Operators lost",
        other => other,
    }
}

fn format_money(cents: i64, currency: &str) -> String {
    // format_cents appends the code; a money row without one must not end in a space.
    format_cents(cents, currency).trim_end().to_string()
}

fn format_share(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

const NONE: &str = "—";

fn format_value(r: &Row) -> String {
    if r.is_money() {
        return r
            .cents()
            .map_or_else(|| NONE.to_string(), |c| format_money(c, r.currency()));
    }
    let Some(v) = r.value else {
        // R5.5: retention is null when nobody was active twelve months earlier.
        return if r.metric == metric::OPERATOR_RETENTION {
            "n/a".to_string()
        } else {
            NONE.to_string()
        };
    };
    match r.metric.as_str() {
        metric::METRO_COVERED => if v >= 1.0 { "covered" } else { "not covered" }.to_string(),
        metric::COVERAGE_SHARE | metric::OPERATOR_RETENTION => format_share(v),
        _ => format_count(v),
    }
}

fn format_target(r: &Row, net: &NetworkTargets) -> String {
    let Some(t) = r.target else {
        return NONE.to_string();
    };
    match r.metric.as_str() {
        metric::ACTIVE_OPERATORS => {
            format!(
                "{}–{}",
                format_count(t),
                group_thousands(net.active_operators_max)
            )
        }
        metric::METRO_COVERED => "covered".to_string(),
        metric::COVERAGE_SHARE => format_share(t),
        metric::VERTICAL_SPECIALISTS => format!("≥ {}", format_count(t)),
        metric::OPERATOR_RETENTION => format!("> {}", format_share(t)),
        _ if r.is_money() => match whole_number(t) {
            Some(c) => format!("≥ {}", format_money(c, r.currency())),
            None => format!("≥ {t}"),
        },
        _ => format_count(t),
    }
}

/// The status marker, its CSS class and colour.
fn status(r: &Row) -> (&'static str, &'static str, &'static str) {
    match r.on_target {
        Some(true) => ("✓ on target", "on", GREEN),
        Some(false) => ("✗ off target", "off", RED_TEXT),
        None => (NONE, "na", GREY_TEXT),
    }
}

// ---------------------------------------------------------------------------
// Trend charts.
// ---------------------------------------------------------------------------

/// A chart ready for the page.
#[derive(Debug, Serialize)]
struct ChartView {
    id: String,
    caption: String,
    svg: Value,
}

/// One colour per tier, each told apart from its neighbours by hue and lightness:
/// `none` a pale grey (no tier), silver a blue-grey, platinum a violet; bronze and
/// gold their metals.
fn tier_colour(tier: &str) -> RGBColor {
    match tier {
        "none" => RGBColor(0xc8, 0xce, 0xd4),
        "bronze" => RGBColor(0xb0, 0x6a, 0x2c),
        "silver" => RGBColor(0x6f, 0x97, 0xb8),
        "gold" => RGBColor(0xd4, 0xa0, 0x17),
        "platinum" => RGBColor(0x5a, 0x3d, 0x8a),
        _ => RGBColor(0x2e, 0x7d, 0x6b),
    }
}

/// Points of one (metric, dimension) series on the axis, in period order.
fn series(axis: &Axis, window: &[Row], metric: &str, dimension: Option<&str>) -> Vec<(i32, f64)> {
    let mut by_x: BTreeMap<i32, f64> = BTreeMap::new();
    for r in window
        .iter()
        .filter(|r| r.metric == metric && r.dimension.as_deref() == dimension)
    {
        if let (Some(x), Some(y)) = (axis.index(r.period), r.plotted()) {
            by_x.insert(x, y);
        }
    }
    by_x.into_iter().collect()
}

/// The target of a series as the latest row of the window states it.
fn latest_target(window: &[Row], metric: &str, dimension: Option<&str>) -> Option<f64> {
    window
        .iter()
        .filter(|r| r.metric == metric && r.dimension.as_deref() == dimension && r.target.is_some())
        .max_by_key(|r| r.period)
        .and_then(|r| r.target)
}

/// Every trend chart of the page, drawn: active operators, the money charts per
/// currency, retention and the tier mix.
fn trend_charts(
    axis: &Axis,
    window: &[Row],
    net: &NetworkTargets,
) -> Result<Vec<ChartView>, ReportError> {
    let span = format!("{} – {}", axis.first(), axis.last());
    let mut specs = vec![active_operators_chart(axis, window, net, &span)];
    // Money, one chart per currency and figure: currencies do not share a scale.
    for cur in currencies(window, &net.target_currency) {
        specs.push(total_mrr_chart(axis, window, &cur, &span));
        specs.push(mrr_per_operator_chart(axis, window, &cur, &span));
    }
    specs.push(retention_chart(axis, window, &span));

    let mut charts = Vec::with_capacity(specs.len() + 1);
    for spec in &specs {
        let svg = draw_line_chart(axis, spec).map_err(|e| chart_error(&spec.id, e.as_ref()))?;
        charts.push(ChartView {
            id: spec.id.clone(),
            caption: spec.caption.clone(),
            svg: Value::from_safe_string(svg),
        });
    }
    let svg =
        draw_tier_chart(axis, window).map_err(|e| chart_error(chart_id::TIER_MIX, e.as_ref()))?;
    charts.push(ChartView {
        id: chart_id::TIER_MIX.to_string(),
        caption: format!("Active operators per tier (stacked, lowest tier at the bottom), {span}."),
        svg: Value::from_safe_string(svg),
    });
    Ok(charts)
}

/// Active operators, with the R5.1 band.
fn active_operators_chart(
    axis: &Axis,
    window: &[Row],
    net: &NetworkTargets,
    span: &str,
) -> LineChart {
    let mut guides = Vec::new();
    if let Some(t) = latest_target(window, metric::ACTIVE_OPERATORS, None) {
        guides.push(Guide {
            label: format!("target ≥ {}", format_count(t)),
            value: t,
        });
        guides.push(Guide {
            label: format!("target ≤ {}", group_thousands(net.active_operators_max)),
            // A count of operators: exact in an f64.
            value: net.active_operators_max as f64,
        });
    }
    LineChart {
        id: chart_id::ACTIVE_OPERATORS.to_string(),
        caption: format!(
            "Active operators at the end of each month, {span}{}.",
            if guides.is_empty() {
                ""
            } else {
                "; dashed: the target band"
            }
        ),
        y_desc: "operators".to_string(),
        y_format: YFormat::Count,
        lines: vec![Line {
            label: "active operators".to_string(),
            colour: BLUE_LINE,
            points: series(axis, window, metric::ACTIVE_OPERATORS, None),
        }],
        guides,
        y_range: None,
    }
}

/// Total MRR in one currency.
fn total_mrr_chart(axis: &Axis, window: &[Row], cur: &str, span: &str) -> LineChart {
    LineChart {
        id: format!("{}{}", chart_id::TOTAL_MRR_PREFIX, cur.to_lowercase()),
        caption: format!("Total MRR in {cur}, {span}."),
        y_desc: cur.to_string(),
        y_format: YFormat::Money(cur.to_string()),
        lines: vec![Line {
            label: format!("total MRR ({cur})"),
            colour: BLUE_LINE,
            points: series(axis, window, metric::TOTAL_MRR_CENTS, Some(cur)),
        }],
        guides: Vec::new(),
        y_range: None,
    }
}

/// MRR per active operator in one currency, with its R5.4 target where stated.
fn mrr_per_operator_chart(axis: &Axis, window: &[Row], cur: &str, span: &str) -> LineChart {
    let mut guides = Vec::new();
    if let Some(t) = latest_target(window, metric::MRR_PER_OPERATOR_CENTS, Some(cur))
        && let Some(c) = whole_number(t)
    {
        guides.push(Guide {
            label: format!("target ≥ {}", format_money(c, cur)),
            value: t,
        });
    }
    LineChart {
        id: format!(
            "{}{}",
            chart_id::MRR_PER_OPERATOR_PREFIX,
            cur.to_lowercase()
        ),
        caption: format!(
            "MRR per active operator in {cur}, {span}{}.",
            if guides.is_empty() {
                ""
            } else {
                "; dashed: the target"
            }
        ),
        y_desc: cur.to_string(),
        y_format: YFormat::Money(cur.to_string()),
        lines: vec![Line {
            label: format!("MRR per operator ({cur})"),
            colour: RGBColor(0x1a, 0x7f, 0x37),
            points: series(axis, window, metric::MRR_PER_OPERATOR_CENTS, Some(cur)),
        }],
        guides,
        y_range: None,
    }
}

/// Retention, with its R5.5 threshold.
fn retention_chart(axis: &Axis, window: &[Row], span: &str) -> LineChart {
    let guides: Vec<Guide> = latest_target(window, metric::OPERATOR_RETENTION, None)
        .map(|t| Guide {
            label: format!("target > {}", format_share(t)),
            value: t,
        })
        .into_iter()
        .collect();
    LineChart {
        id: chart_id::OPERATOR_RETENTION.to_string(),
        caption: format!(
            "Operator retention: share of the operators active twelve months earlier still active, {span}{}.",
            if guides.is_empty() {
                ""
            } else {
                "; dashed: the target"
            }
        ),
        y_desc: "retained".to_string(),
        y_format: YFormat::Share,
        lines: vec![Line {
            label: "retention".to_string(),
            colour: BLUE_LINE,
            points: series(axis, window, metric::OPERATOR_RETENTION, None),
        }],
        guides,
        y_range: Some((0.0, 1.05)),
    }
}

fn chart_error(chart: &str, e: &(dyn StdError + Send + Sync)) -> ReportError {
    ReportError::Chart {
        chart: chart.to_string(),
        message: e.to_string(),
    }
}

/// Currencies of the money trend: the target currency always (the money targets
/// are stated in it, R5), then the others alphabetically.
fn currencies(window: &[Row], target_currency: &str) -> Vec<String> {
    let others: BTreeSet<String> = window
        .iter()
        .filter(|r| {
            r.metric == metric::TOTAL_MRR_CENTS || r.metric == metric::MRR_PER_OPERATOR_CENTS
        })
        .filter_map(|r| r.dimension.clone())
        .filter(|c| c != target_currency)
        .collect();
    std::iter::once(target_currency.to_string())
        .chain(others)
        .collect()
}

/// A month of a tier's band in the stacked tier chart: (x, lower, upper).
type BandPoint = (i32, f64, f64);

/// Tier mix as stacked areas, lowest tier at the bottom. A month with any tier
/// figure counts missing tiers as 0; a month without any is a gap.
fn draw_tier_chart(axis: &Axis, window: &[Row]) -> DrawResult<String> {
    let mut tiers: Vec<String> = TIERS.iter().map(|t| (*t).to_string()).collect();
    let mut extra: BTreeSet<String> = BTreeSet::new();
    let mut counts: BTreeMap<(String, i32), f64> = BTreeMap::new();
    let mut months: BTreeSet<i32> = BTreeSet::new();
    for r in window.iter().filter(|r| r.metric == metric::TIER_OPERATORS) {
        let (Some(x), Some(v), Some(tier)) = (axis.index(r.period), r.value, r.dimension.clone())
        else {
            continue;
        };
        if tier_rank(&tier) == TIERS.len() {
            extra.insert(tier.clone());
        }
        counts.insert((tier, x), v);
        months.insert(x);
    }
    tiers.extend(extra);

    // Cumulative bands: per tier, (x, lower, upper) for each month with figures.
    let mut bands: Vec<(String, Vec<BandPoint>)> = Vec::with_capacity(tiers.len());
    let mut base: BTreeMap<i32, f64> = months.iter().map(|&x| (x, 0.0)).collect();
    for tier in &tiers {
        let mut band = Vec::with_capacity(months.len());
        for (&x, lower) in base.iter_mut() {
            let v = counts.get(&(tier.clone(), x)).copied().unwrap_or(0.0);
            band.push((x, *lower, *lower + v));
            *lower += v;
        }
        bands.push((tier.clone(), band));
    }
    let range = fit_range(base.values().copied());

    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (CHART_WIDTH, CHART_HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let (top, body) = root.split_vertically(LEGEND_HEIGHT);
        let mut chart = trend_axes(
            &body,
            axis,
            range,
            "operators",
            &YFormat::Count,
            !months.is_empty(),
        )?;

        for (tier, band) in &bands {
            let colour = tier_colour(tier);
            let upper: Vec<(i32, f64)> = band.iter().map(|&(x, _, u)| (x, u)).collect();
            for run in runs(&upper) {
                let (Some(&(from, _)), Some(&(to, _))) = (run.first(), run.last()) else {
                    continue;
                };
                let seg: Vec<&BandPoint> =
                    band.iter().filter(|b| (from..=to).contains(&b.0)).collect();
                let polygon: Vec<(i32, f64)> = seg
                    .iter()
                    .map(|&&(x, _, u)| (x, u))
                    .chain(seg.iter().rev().map(|&&(x, l, _)| (x, l)))
                    .collect();
                if from == to {
                    // An area one month wide has no width: draw the month as a bar.
                    chart.draw_series(seg.iter().map(|&&(x, l, u)| {
                        PathElement::new(vec![(x, l), (x, u)], colour.mix(0.55).stroke_width(14))
                    }))?;
                } else {
                    chart.draw_series(std::iter::once(Polygon::new(
                        polygon,
                        colour.mix(0.55).filled(),
                    )))?;
                }
                chart.draw_series(LineSeries::new(run, colour.stroke_width(2)))?;
            }
            // Markers keep a month that stands alone (after a gap) visible.
            chart.draw_series(
                upper
                    .iter()
                    .map(|&(x, y)| Circle::new((x, y), 2, colour.filled())),
            )?;
        }
        let legend: Vec<(&str, Mark)> = tiers
            .iter()
            .map(|t| (t.as_str(), Mark::Swatch(tier_colour(t))))
            .collect();
        draw_legend(&top, &legend)?;
        if months.is_empty() {
            no_data(&body)?;
        }
        root.present()?;
    }
    Ok(finish_svg(svg, "Active operators per tier"))
}

// ---------------------------------------------------------------------------
// The page, the text part and the CSV.
// ---------------------------------------------------------------------------

#[derive(Debug, Serialize)]
struct KpiView {
    label: String,
    metric: String,
    dimension: String,
    value: String,
    target: String,
    status: &'static str,
    status_class: &'static str,
    status_colour: &'static str,
}

#[derive(Debug, Serialize)]
struct VerticalView {
    name: String,
    count: String,
}

fn kpi_views(rows: &[Row], net: &NetworkTargets) -> Vec<KpiView> {
    rows.iter()
        .map(|r| {
            let (status, status_class, status_colour) = status(r);
            KpiView {
                label: metric_label(&r.metric).to_string(),
                metric: r.metric.clone(),
                dimension: r.dimension.clone().unwrap_or_default(),
                value: format_value(r),
                target: format_target(r, net),
                status,
                status_class,
                status_colour,
            }
        })
        .collect()
}

fn title(m: Period) -> String {
    format!("Candlefish network health — {m}")
}

/// Target metros of M split into (covered, uncovered), each alphabetical.
fn metros(rows: &[Row]) -> (Vec<String>, Vec<String>) {
    let mut covered = Vec::new();
    let mut uncovered = Vec::new();
    for r in rows.iter().filter(|r| r.metric == metric::METRO_COVERED) {
        let name = r.dimension.clone().unwrap_or_default();
        if r.value.is_some_and(|v| v >= 1.0) {
            covered.push(name);
        } else {
            uncovered.push(name);
        }
    }
    covered.sort_by_cached_key(|m| (m.to_lowercase(), m.clone()));
    uncovered.sort_by_cached_key(|m| (m.to_lowercase(), m.clone()));
    (covered, uncovered)
}

/// Verticals of M with fewer than the R5.3 minimum of specialists, fewest first.
fn thin_verticals(rows: &[Row], net: &NetworkTargets) -> Vec<(String, Option<f64>)> {
    // A count of operators: exact in an f64.
    let min = net.vertical_specialists_min as f64;
    let mut out: Vec<(String, Option<f64>)> = rows
        .iter()
        .filter(|r| r.metric == metric::VERTICAL_SPECIALISTS)
        .filter(|r| r.value.is_none_or(|v| v < min))
        .map(|r| (r.dimension.clone().unwrap_or_default(), r.value))
        .collect();
    out.sort_by(|a, b| {
        a.1.unwrap_or(0.0)
            .total_cmp(&b.1.unwrap_or(0.0))
            .then_with(|| a.0.cmp(&b.0))
    });
    out
}

fn render_html(
    m: Period,
    axis: &Axis,
    rows: &[Row],
    charts: &[ChartView],
    net: &NetworkTargets,
) -> Result<String, ReportError> {
    let mut env = Environment::new();
    // The .html name turns on HTML auto-escaping: dimensions are free text.
    env.add_template("report.html", PAGE_TEMPLATE)?;
    let template = env.get_template("report.html")?;

    let judged = rows.iter().filter(|r| r.on_target.is_some()).count();
    let met = rows.iter().filter(|r| r.on_target == Some(true)).count();
    let (covered, uncovered) = metros(rows);
    let coverage_share = rows
        .iter()
        .find(|r| r.metric == metric::COVERAGE_SHARE)
        .and_then(|r| r.value)
        .map(format_share);
    let thin: Vec<VerticalView> = thin_verticals(rows, net)
        .into_iter()
        .map(|(name, v)| VerticalView {
            name,
            count: v.map_or_else(|| NONE.to_string(), format_count),
        })
        .collect();
    let trend_note = if axis.len() < TREND_MONTHS {
        format!(
            "The figures start in {}, so the trend covers {} month{} instead of {TREND_MONTHS}.",
            axis.first(),
            axis.len(),
            if axis.len() == 1 { "" } else { "s" }
        )
    } else {
        format!("The twelve months {} to {}.", axis.first(), axis.last())
    };

    Ok(template.render(context! {
        title => title(m),
        period => m.to_string(),
        met,
        judged,
        kpis => kpi_views(rows, net),
        trend_note,
        trend_first => axis.first(),
        charts,
        metros_total => covered.len() + uncovered.len(),
        metros_covered => covered.len(),
        coverage_share,
        covered,
        uncovered,
        min_specialists => group_thousands(net.vertical_specialists_min),
        thin_verticals => thin,
    })?)
}

fn render_text(m: Period, rows: &[Row], net: &NetworkTargets) -> String {
    let header = ["Metric", "Dimension", "Value", "Target", "Status"];
    let body: Vec<[String; 5]> = kpi_views(rows, net)
        .into_iter()
        .map(|k| {
            [
                k.label,
                k.dimension,
                k.value,
                k.target,
                k.status.to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for line in &body {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    // Numbers right-aligned, words left-aligned, as in the HTML table.
    let right = [false, false, true, true, false];
    let fmt_line = |cells: [&str; 5]| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i > 0 {
                s.push_str("  ");
            }
            if right[i] {
                s.push_str(&" ".repeat(pad));
                s.push_str(cell);
            } else {
                s.push_str(cell);
                s.push_str(&" ".repeat(pad));
            }
        }
        s.trim_end().to_string()
    };

    let mut out = String::new();
    out.push_str(&title(m));
    out.push_str("\n\n");
    out.push_str(&fmt_line(header));
    out.push('\n');
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&rule.join("  "));
    out.push('\n');
    for line in &body {
        out.push_str(&fmt_line([
            &line[0], &line[1], &line[2], &line[3], &line[4],
        ]));
        out.push('\n');
    }

    let (_, uncovered) = metros(rows);
    out.push('\n');
    if uncovered.is_empty() {
        out.push_str("Uncovered target metros: none\n");
    } else {
        out.push_str(&format!(
            "Uncovered target metros: {}\n",
            uncovered.join(", ")
        ));
    }
    let thin = thin_verticals(rows, net);
    let min = group_thousands(net.vertical_specialists_min);
    if thin.is_empty() {
        out.push_str(&format!(
            "Verticals with fewer than {min} specialists: none\n"
        ));
    } else {
        let list: Vec<String> = thin
            .iter()
            .map(|(name, v)| {
                format!(
                    "{name} ({})",
                    v.map_or_else(|| NONE.to_string(), format_count)
                )
            })
            .collect();
        out.push_str(&format!(
            "Verticals with fewer than {min} specialists: {}\n",
            list.join(", ")
        ));
    }
    out
}

/// The report's rows as CSV (`period,metric,dimension,value,value_cents,target,
/// on_target`), RFC 4180 quoted by the one CSV writer of the mail layer.
fn render_csv(rows: &[Row]) -> Vec<u8> {
    let opt = |v: Option<String>| v.unwrap_or_default();
    let mut out = String::new();
    csv_row(
        &mut out,
        &[
            "period",
            "metric",
            "dimension",
            "value",
            "value_cents",
            "target",
            "on_target",
        ],
    );
    for r in rows {
        // `{}` on f64 is the shortest text that reads back to the same number.
        csv_row(
            &mut out,
            &[
                &r.period.to_string(),
                &r.metric,
                r.dimension.as_deref().unwrap_or(""),
                &opt(r.value.map(|v| v.to_string())),
                &opt(r.value_cents.map(|v| v.to_string())),
                &opt(r.target.map(|v| v.to_string())),
                &opt(r.on_target.map(|v| v.to_string())),
            ],
        );
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests;
