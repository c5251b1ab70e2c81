//! Twelve-month trend charts as inline SVG (plotters), shared by the leadership report
//! and the operators' monthly report: a month axis ending at M, line charts with
//! target guides, a legend strip, and figures formatted from the same rules as the
//! reports' text. No external resource, so a chart works in an email body and in a
//! file alike. Values are `f64` only to place points; money labels are formatted
//! from rounded integers again.

use std::error::Error as StdError;

use opnet_pipelines::Period;
use plotters::coord::types::{RangedCoordf64, RangedCoordi32};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::mail::format_cents;

pub(crate) const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

pub(crate) const CHART_WIDTH: u32 = 760;

pub(crate) const CHART_HEIGHT: u32 = 300;

/// The x axis of every trend chart: consecutive months from the first month of the
/// window that has any figure to M. A younger network gets a shorter axis rather
/// than empty months on the left; a month missing in between stays on the axis but
/// has no point, and lines break around it.
pub(crate) struct Axis {
    pub(crate) periods: Vec<Period>,
}

impl Axis {
    /// Consecutive months from `first` to `m` (just `m` when `first` is later).
    pub(crate) fn months(first: Period, m: Period) -> Self {
        Self {
            periods: first.min(m).through(m).collect(),
        }
    }

    pub(crate) fn len(&self) -> i32 {
        // At most 12 months by construction.
        i32::try_from(self.periods.len()).unwrap_or(i32::MAX)
    }

    pub(crate) fn index(&self, p: Period) -> Option<i32> {
        let first = self.periods.first()?;
        let i = p.months() - first.months();
        (0..self.len()).contains(&i).then_some(i)
    }

    pub(crate) fn period(&self, x: i32) -> Option<Period> {
        usize::try_from(x)
            .ok()
            .and_then(|i| self.periods.get(i))
            .copied()
    }

    /// The tick label of month `x`: the month's short name, with the year on the
    /// first month and on each January ("Nov 2024", "Dec", "Jan 2025", …). Twelve
    /// `YYYY-MM` labels do not fit side by side in a chart a mail client scales
    /// down; three letters do, and the year is still never ambiguous.
    pub(crate) fn label(&self, x: i32) -> String {
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

    pub(crate) fn first(&self) -> String {
        self.period(0).map(|p| p.to_string()).unwrap_or_default()
    }

    pub(crate) fn last(&self) -> String {
        self.period(self.len() - 1)
            .map(|p| p.to_string())
            .unwrap_or_default()
    }
}

/// How the y ticks of a chart read.
pub(crate) enum YFormat {
    Count,
    Share,
    /// Ticks are cents, labelled in the currency's units without the code (the code
    /// is in the axis description).
    Money(String),
}

impl YFormat {
    pub(crate) fn tick(&self, y: f64) -> String {
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

pub(crate) struct Line {
    pub(crate) label: String,
    pub(crate) colour: RGBColor,
    pub(crate) points: Vec<(i32, f64)>,
}

/// A dashed horizontal reference line (a target).
pub(crate) struct Guide {
    pub(crate) label: String,
    pub(crate) value: f64,
}

pub(crate) struct LineChart {
    pub(crate) id: String,
    pub(crate) caption: String,
    pub(crate) y_desc: String,
    pub(crate) y_format: YFormat,
    pub(crate) lines: Vec<Line>,
    pub(crate) guides: Vec<Guide>,
    /// A fixed y range (shares are 0–100 %); otherwise fitted to the data.
    pub(crate) y_range: Option<(f64, f64)>,
}

pub(crate) type DrawResult<T> = Result<T, Box<dyn StdError + Send + Sync>>;

pub(crate) const BLUE_LINE: RGBColor = RGBColor(0x2f, 0x6f, 0xb0);

pub(crate) const GUIDE_COLOUR: RGBColor = RGBColor(0xc6, 0x28, 0x28);

pub(crate) const AXIS_TEXT: RGBColor = RGBColor(0x52, 0x60, 0x6d);

pub(crate) const GRID: RGBColor = RGBColor(0xe4, 0xe7, 0xeb);

/// Splits points into runs of consecutive months, so a line never bridges a gap.
pub(crate) fn runs(points: &[(i32, f64)]) -> Vec<Vec<(i32, f64)>> {
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
pub(crate) fn fit_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((0.0_f64, 0.0_f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let hi = if hi <= lo { lo + 1.0 } else { hi };
    (lo, hi + (hi - lo) * 0.1)
}

/// Makes the SVG scale down in narrow mail clients and names it for screen readers.
pub(crate) fn finish_svg(svg: String, label: &str) -> String {
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

pub(crate) type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// How a legend entry is marked.
pub(crate) enum Mark {
    Line(RGBColor),
    Dashed(RGBColor),
    Swatch(RGBColor),
}

pub(crate) const LEGEND_HEIGHT: u32 = 28;

/// The legend as a strip above the plot: inside the plot it would hide figures
/// (stacked tiers fill the whole area), and to the side it would take the width
/// twelve month labels need.
pub(crate) fn draw_legend(area: &Area<'_>, entries: &[(&str, Mark)]) -> DrawResult<()> {
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

pub(crate) fn no_data(area: &Area<'_>) -> DrawResult<()> {
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
pub(crate) fn trend_axes<'a, 'b>(
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

pub(crate) fn draw_line_chart(axis: &Axis, spec: &LineChart) -> DrawResult<String> {
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

/// `1234567` → `1,234,567`.
pub(crate) fn group_thousands(n: i64) -> String {
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

pub(crate) fn format_count(v: f64) -> String {
    match whole_number(v) {
        Some(n) => group_thousands(n),
        None => format!("{v:.2}"),
    }
}

/// `Some(n)` when `v` is a whole number that fits an i64 exactly.
pub(crate) fn whole_number(v: f64) -> Option<i64> {
    // 2^53: beyond it not every integer is representable, so the cast could lie.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    (v.is_finite() && v.fract() == 0.0 && v.abs() <= EXACT).then_some(v as i64)
}
