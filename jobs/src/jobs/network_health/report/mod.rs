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
use plotters::coord::types::{RangedCoordf64, RangedCoordi32};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use polars::prelude::*;
use serde::Serialize;

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
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

const CHART_WIDTH: u32 = 760;
const CHART_HEIGHT: u32 = 300;
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

    let axis = Axis::new(&window, m);
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

/// `Some(n)` when `v` is a whole number that fits an i64 exactly.
fn whole_number(v: f64) -> Option<i64> {
    // 2^53: beyond it not every integer is representable, so the cast could lie.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    (v.is_finite() && v.fract() == 0.0 && v.abs() <= EXACT).then_some(v as i64)
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

/// `1234567` → `1,234,567`.
fn group_thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn format_money(cents: i64, currency: &str) -> String {
    // format_cents appends the code; a money row without one must not end in a space.
    format_cents(cents, currency).trim_end().to_string()
}

fn format_count(v: f64) -> String {
    match whole_number(v) {
        Some(n) => group_thousands(n),
        None => format!("{v:.2}"),
    }
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

/// The x axis of every trend chart: consecutive months from the first month of the
/// window that has any figure to M. A younger network gets a shorter axis rather
/// than empty months on the left; a month missing in between stays on the axis but
/// has no point, and lines break around it.
struct Axis {
    periods: Vec<Period>,
}

impl Axis {
    fn new(window: &[Row], m: Period) -> Self {
        let first = window.iter().map(|r| r.period).min().unwrap_or(m);
        Self {
            periods: first.through(m).collect(),
        }
    }

    fn len(&self) -> i32 {
        // At most 12 months by construction.
        i32::try_from(self.periods.len()).unwrap_or(i32::MAX)
    }

    fn index(&self, p: Period) -> Option<i32> {
        let first = self.periods.first()?;
        let i = p.months() - first.months();
        (0..self.len()).contains(&i).then_some(i)
    }

    fn period(&self, x: i32) -> Option<Period> {
        usize::try_from(x)
            .ok()
            .and_then(|i| self.periods.get(i))
            .copied()
    }

    /// The tick label of month `x`: the month's short name, with the year on the
    /// first month and on each January ("Nov 2024", "Dec", "Jan 2025", …). Twelve
    /// `YYYY-MM` labels do not fit side by side in a chart a mail client scales
    /// down; three letters do, and the year is still never ambiguous.
    fn label(&self, x: i32) -> String {
        let Some(p) = self.period(x) else {
            return String::new();
        };
        let name = MONTHS
            .get(usize::try_from(p.month()).unwrap_or(1).saturating_sub(1))
            .copied()
            .unwrap_or("");
        if x == 0 || p.month() == 1 {
            format!("{name} {}", p.year())
        } else {
            name.to_string()
        }
    }

    fn first(&self) -> String {
        self.period(0).map(|p| p.to_string()).unwrap_or_default()
    }

    fn last(&self) -> String {
        self.period(self.len() - 1)
            .map(|p| p.to_string())
            .unwrap_or_default()
    }
}

/// A chart ready for the page.
#[derive(Debug, Serialize)]
struct ChartView {
    id: String,
    caption: String,
    svg: Value,
}

/// How the y ticks of a chart read.
enum YFormat {
    Count,
    Share,
    /// Ticks are cents, labelled in the currency's units without the code (the code
    /// is in the axis description).
    Money(String),
}

impl YFormat {
    fn tick(&self, y: f64) -> String {
        match self {
            YFormat::Count => format_count(y),
            YFormat::Share => format!("{:.0}%", y * 100.0),
            // Rounding a tick position to whole cents is presentation, not money
            // arithmetic: the tick is not a figure of the report.
            YFormat::Money(cur) => format_cents(y.round() as i64, cur)
                .trim_end_matches(cur.as_str())
                .trim_end()
                .to_string(),
        }
    }
}

struct Line {
    label: String,
    colour: RGBColor,
    points: Vec<(i32, f64)>,
}

/// A dashed horizontal reference line (a target).
struct Guide {
    label: String,
    value: f64,
}

struct LineChart {
    id: String,
    caption: String,
    y_desc: String,
    y_format: YFormat,
    lines: Vec<Line>,
    guides: Vec<Guide>,
    /// A fixed y range (shares are 0–100 %); otherwise fitted to the data.
    y_range: Option<(f64, f64)>,
}

type DrawResult<T> = Result<T, Box<dyn StdError + Send + Sync>>;

const BLUE_LINE: RGBColor = RGBColor(0x2f, 0x6f, 0xb0);
const GUIDE_COLOUR: RGBColor = RGBColor(0xc6, 0x28, 0x28);
const AXIS_TEXT: RGBColor = RGBColor(0x52, 0x60, 0x6d);
const GRID: RGBColor = RGBColor(0xe4, 0xe7, 0xeb);

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

/// Splits points into runs of consecutive months, so a line never bridges a gap.
fn runs(points: &[(i32, f64)]) -> Vec<Vec<(i32, f64)>> {
    let mut out: Vec<Vec<(i32, f64)>> = Vec::new();
    for &p in points {
        match out.last_mut() {
            Some(run) if run.last().is_some_and(|q| q.0 + 1 == p.0) => run.push(p),
            _ => out.push(vec![p]),
        }
    }
    out
}

/// A y range that shows every value and guide, from zero unless values go below.
fn fit_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((0.0_f64, 0.0_f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let hi = if hi <= lo { lo + 1.0 } else { hi };
    (lo, hi + (hi - lo) * 0.1)
}

/// Makes the SVG scale down in narrow mail clients and names it for screen readers.
fn finish_svg(svg: String, label: &str) -> String {
    let label = label
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('"', "&quot;");
    svg.replacen(
        "<svg ",
        &format!("<svg role=\"img\" aria-label=\"{label}\" style=\"max-width:100%;height:auto\" "),
        1,
    )
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// How a legend entry is marked.
enum Mark {
    Line(RGBColor),
    Dashed(RGBColor),
    Swatch(RGBColor),
}

const LEGEND_HEIGHT: u32 = 28;

/// The legend as a strip above the plot: inside the plot it would hide figures
/// (stacked tiers fill the whole area), and to the side it would take the width
/// twelve month labels need.
fn draw_legend(area: &Area<'_>, entries: &[(&str, Mark)]) -> DrawResult<()> {
    let font = ("sans-serif", 14)
        .into_font()
        .color(&AXIS_TEXT)
        .pos(Pos::new(HPos::Left, VPos::Center));
    let y = i32::try_from(LEGEND_HEIGHT / 2).unwrap_or(14);
    let mut x = 106;
    for (label, mark) in entries {
        match mark {
            Mark::Line(c) => {
                area.draw(&PathElement::new(
                    vec![(x, y), (x + 18, y)],
                    c.stroke_width(2),
                ))?;
            }
            Mark::Dashed(c) => {
                area.draw(&PathElement::new(
                    vec![(x, y), (x + 7, y)],
                    c.stroke_width(1),
                ))?;
                area.draw(&PathElement::new(
                    vec![(x + 11, y), (x + 18, y)],
                    c.stroke_width(1),
                ))?;
            }
            Mark::Swatch(c) => {
                area.draw(&Rectangle::new(
                    [(x + 3, y - 6), (x + 15, y + 6)],
                    c.mix(0.55).filled(),
                ))?;
            }
        }
        area.draw(&Text::new(label.to_string(), (x + 24, y), font.clone()))?;
        // The SVG backend cannot measure text; ~7 px per character at this size.
        let width = i32::try_from(label.chars().count()).unwrap_or(40) * 7;
        x += 24 + width + 22;
    }
    Ok(())
}

fn no_data(area: &Area<'_>) -> DrawResult<()> {
    let (w, h) = area.dim_in_pixel();
    let centre = (
        i32::try_from(w / 2).unwrap_or(380),
        i32::try_from(h / 2).unwrap_or(150),
    );
    area.draw(&Text::new(
        "no figures in this period range",
        centre,
        ("sans-serif", 14)
            .into_font()
            .color(&AXIS_TEXT)
            .pos(Pos::new(HPos::Center, VPos::Center)),
    ))?;
    Ok(())
}

/// Builds the chart with the axes every trend chart shares: months on x (with one
/// empty slot either side, so the first and last month are not drawn on the frame
/// and a single month still has a visible axis) and `y0..y1` on y.
fn trend_axes<'a, 'b>(
    area: &'a Area<'b>,
    axis: &Axis,
    (y0, y1): (f64, f64),
    y_desc: &str,
    y_format: &YFormat,
    has_data: bool,
) -> DrawResult<ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordi32, RangedCoordf64>>> {
    let n = axis.len();
    let x_fmt = |x: &i32| axis.label(*x);
    let y_fmt = |y: &f64| y_format.tick(*y);
    let mut chart = ChartBuilder::on(area)
        .margin(14)
        .margin_top(6)
        .x_label_area_size(30)
        .y_label_area_size(92)
        .build_cartesian_2d(-1..n, y0..y1)?;
    chart
        .configure_mesh()
        .x_labels(usize::try_from(n + 2).unwrap_or(14))
        .x_label_formatter(&x_fmt)
        // Without figures the y scale is arbitrary: better no numbers than made-up ones.
        .y_labels(if has_data { 6 } else { 0 })
        .y_label_formatter(&y_fmt)
        .y_desc(y_desc)
        .disable_x_mesh()
        .light_line_style(WHITE)
        .bold_line_style(GRID)
        .axis_style(AXIS_TEXT)
        .label_style(("sans-serif", 14).into_font().color(&AXIS_TEXT))
        .axis_desc_style(("sans-serif", 14).into_font().color(&AXIS_TEXT))
        .draw()?;
    Ok(chart)
}

fn draw_line_chart(axis: &Axis, spec: &LineChart) -> DrawResult<String> {
    let n = axis.len();
    let range = spec.y_range.unwrap_or_else(|| {
        fit_range(
            spec.lines
                .iter()
                .flat_map(|l| l.points.iter().map(|p| p.1))
                .chain(spec.guides.iter().map(|g| g.value)),
        )
    });
    let has_data = spec.lines.iter().any(|l| !l.points.is_empty());

    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (CHART_WIDTH, CHART_HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let (top, body) = root.split_vertically(LEGEND_HEIGHT);
        let mut chart = trend_axes(&body, axis, range, &spec.y_desc, &spec.y_format, has_data)?;

        let mut legend: Vec<(&str, Mark)> = Vec::new();
        for line in &spec.lines {
            let colour = line.colour;
            for run in runs(&line.points) {
                chart.draw_series(LineSeries::new(run, colour.stroke_width(2)))?;
            }
            // Markers make a month that stands alone (after a gap) visible.
            chart.draw_series(
                line.points
                    .iter()
                    .map(|&(x, y)| Circle::new((x, y), 3, colour.filled())),
            )?;
            legend.push((line.label.as_str(), Mark::Line(colour)));
        }
        for g in &spec.guides {
            chart.draw_series(DashedLineSeries::new(
                vec![(-1, g.value), (n, g.value)],
                6,
                4,
                GUIDE_COLOUR.stroke_width(1),
            ))?;
            legend.push((g.label.as_str(), Mark::Dashed(GUIDE_COLOUR)));
        }
        draw_legend(&top, &legend)?;
        if !has_data {
            no_data(&body)?;
        }
        root.present()?;
    }
    Ok(finish_svg(svg, &spec.caption))
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
