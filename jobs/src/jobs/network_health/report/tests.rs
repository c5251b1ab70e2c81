//! Tests of the network-health report on a hand-built frame: a network whose figures
//! start in 2024-11 (so the 12-month window of 2025-08 lacks its first two months),
//! with no figures at all for 2025-02, and one stray row older than the window.

use super::*;
use opnet_pipelines::Plan;

const M: &str = "2025-08";

/// One `network_health` row as the fixture writes it.
struct R {
    period: String,
    metric: &'static str,
    dimension: Option<&'static str>,
    value: Option<f64>,
    value_cents: Option<i64>,
    target: Option<f64>,
    on_target: Option<bool>,
}

fn fig(period: &str, metric: &'static str, dimension: Option<&'static str>, value: f64) -> R {
    R {
        period: period.to_string(),
        metric,
        dimension,
        value: Some(value),
        value_cents: None,
        target: None,
        on_target: None,
    }
}

fn money(period: &str, metric: &'static str, currency: &'static str, cents: i64) -> R {
    R {
        period: period.to_string(),
        metric,
        dimension: Some(currency),
        value: None,
        value_cents: Some(cents),
        target: None,
        on_target: None,
    }
}

impl R {
    fn target(mut self, target: f64, on: bool) -> Self {
        self.target = Some(target);
        self.on_target = Some(on);
        self
    }
}

fn frame(rows: &[R]) -> DataFrame {
    let period: Vec<&str> = rows.iter().map(|r| r.period.as_str()).collect();
    let metric: Vec<&str> = rows.iter().map(|r| r.metric).collect();
    let dimension: Vec<Option<&str>> = rows.iter().map(|r| r.dimension).collect();
    let value: Vec<Option<f64>> = rows.iter().map(|r| r.value).collect();
    let value_cents: Vec<Option<i64>> = rows.iter().map(|r| r.value_cents).collect();
    let target: Vec<Option<f64>> = rows.iter().map(|r| r.target).collect();
    let on_target: Vec<Option<bool>> = rows.iter().map(|r| r.on_target).collect();
    DataFrame::new_infer_height(vec![
        Column::new("period".into(), period),
        Column::new("metric".into(), metric),
        Column::new("dimension".into(), dimension),
        Column::new("value".into(), value),
        Column::new("value_cents".into(), value_cents),
        Column::new("target".into(), target),
        Column::new("on_target".into(), on_target),
    ])
    .expect("fixture frame")
}

/// The 21 rows of M.
fn rows_of_m() -> Vec<R> {
    use metric::*;
    vec![
        fig(M, ACTIVE_OPERATORS, None, 62.0).target(50.0, true),
        fig(M, METRO_COVERED, Some("Austin"), 1.0).target(1.0, true),
        fig(M, METRO_COVERED, Some("Denver"), 0.0).target(1.0, false),
        fig(M, METRO_COVERED, Some("Boston"), 1.0).target(1.0, true),
        fig(M, COVERAGE_SHARE, None, 2.0 / 3.0).target(1.0, false),
        fig(M, VERTICAL_SPECIALISTS, Some("dental"), 3.0).target(2.0, true),
        fig(M, VERTICAL_SPECIALISTS, Some("legal"), 1.0).target(2.0, false),
        fig(M, VERTICAL_SPECIALISTS, Some("R&D labs"), 0.0).target(2.0, false),
        money(M, TOTAL_MRR_CENTS, "USD", 93_000_000),
        money(M, TOTAL_MRR_CENTS, "EUR", 1_234_567),
        money(M, MRR_PER_OPERATOR_CENTS, "USD", 1_500_000).target(1_500_000.0, true),
        money(M, MRR_PER_OPERATOR_CENTS, "EUR", 19_912),
        fig(M, OPERATOR_RETENTION, None, 0.875).target(0.85, true),
        money(M, PAYOUTS_CENTS, "USD", 46_500_000),
        fig(M, TIER_OPERATORS, Some("none"), 10.0),
        fig(M, TIER_OPERATORS, Some("bronze"), 20.0),
        fig(M, TIER_OPERATORS, Some("silver"), 18.0),
        fig(M, TIER_OPERATORS, Some("gold"), 10.0),
        fig(M, TIER_OPERATORS, Some("platinum"), 4.0),
        fig(M, OPERATORS_JOINED, None, 3.0),
        fig(M, OPERATORS_LOST, None, 1.0),
    ]
}

/// Trend months with figures: 2024-11 … 2025-07 except 2025-02.
fn trend_periods() -> Vec<String> {
    let start = Period::parse("2024-11").expect("period");
    let end = Period::parse("2025-07").expect("period");
    start
        .through(end)
        .map(|p| p.to_string())
        .filter(|p| p != "2025-02")
        .collect()
}

fn fixture_rows() -> Vec<R> {
    use metric::*;
    let mut rows = Vec::new();
    for (i, p) in trend_periods().iter().enumerate() {
        let i = i as i64;
        let active = 40 + 2 * i;
        rows.push(fig(p, ACTIVE_OPERATORS, None, active as f64).target(50.0, active >= 50));
        rows.push(money(p, TOTAL_MRR_CENTS, "USD", 60_000_000 + 3_000_000 * i));
        rows.push(money(p, TOTAL_MRR_CENTS, "EUR", 1_000_000 + 20_000 * i));
        rows.push(
            money(p, MRR_PER_OPERATOR_CENTS, "USD", 1_400_000 + 12_500 * i)
                .target(1_500_000.0, false),
        );
        rows.push(money(p, MRR_PER_OPERATOR_CENTS, "EUR", 18_000 + 200 * i));
        rows.push(fig(p, OPERATOR_RETENTION, None, 0.80 + 0.01 * i as f64).target(0.85, i > 5));
        for (tier, share) in [
            ("none", 4),
            ("bronze", 12),
            ("silver", 14),
            ("gold", 8),
            ("platinum", 2),
        ] {
            rows.push(fig(p, TIER_OPERATORS, Some(tier), (share + i / 2) as f64));
        }
    }
    rows.extend(rows_of_m());
    // Older than the window: must not reach any chart.
    rows.push(fig("2024-07", ACTIVE_OPERATORS, None, 12_345.0).target(50.0, false));
    rows
}

fn fixture_report() -> Report {
    render(M, &frame(&fixture_rows()), &Plan::playbook()).expect("fixture renders")
}

/// The `<figure id="…">` ids in document order.
fn figure_ids(html: &str) -> Vec<String> {
    html.split("<figure id=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(str::to_string)
        .collect()
}

fn figure<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<figure id=\"{id}\""))
        .unwrap_or_else(|| panic!("figure {id} present"));
    let len = html[start..].find("</figure>").expect("figure closed");
    &html[start..start + len]
}

fn kpi_table(html: &str) -> &str {
    let start = html.find("<table class=\"kpi\"").expect("kpi table");
    let len = html[start..].find("</table>").expect("kpi table closed");
    &html[start..start + len]
}

const EXPECTED_CHARTS: [&str; 7] = [
    "chart-active-operators",
    "chart-total-mrr-usd",
    "chart-mrr-per-operator-usd",
    "chart-total-mrr-eur",
    "chart-mrr-per-operator-eur",
    "chart-operator-retention",
    "chart-tier-mix",
];

#[test]
fn html_has_one_svg_per_chart_figure() {
    let html = fixture_report().html;
    assert_eq!(figure_ids(&html), EXPECTED_CHARTS);
    assert_eq!(html.matches("<svg").count(), EXPECTED_CHARTS.len());
    for id in EXPECTED_CHARTS {
        let fig = figure(&html, id);
        assert_eq!(fig.matches("<svg").count(), 1, "{id}");
        assert_eq!(fig.matches("</svg>").count(), 1, "{id}");
        assert!(fig.contains("<figcaption>"), "{id}");
    }
}

#[test]
fn html_is_a_self_contained_titled_page() {
    let html = fixture_report().html;
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<title>Candlefish network health — 2025-08</title>"));
    assert!(html.contains("<h1>Candlefish network health — 2025-08</h1>"));
    assert!(html.contains("<style>"));
    for external in ["<link", "<script", "src=", "url(", "<img"] {
        assert!(
            !html.contains(external),
            "external resource marker {external}"
        );
    }
}

#[test]
fn kpi_table_shows_every_figure_of_m_formatted() {
    let html = fixture_report().html;
    let table = kpi_table(&html);
    // Data rows: one per row of M.
    assert_eq!(table.matches("<tr class=").count(), 21);
    for expected in [
        "<td class=\"num\">62</td><td class=\"num\">50–100</td>",
        "<td>Austin</td><td class=\"num\">covered</td>",
        "<td>Denver</td><td class=\"num\">not covered</td>",
        "<td class=\"num\">66.7%</td><td class=\"num\">100.0%</td>",
        "<td>dental</td><td class=\"num\">3</td><td class=\"num\">≥ 2</td>",
        "<td>legal</td><td class=\"num\">1</td>",
        "<td>R&amp;D labs</td><td class=\"num\">0</td>",
        "<td>USD</td><td class=\"num\">930,000.00 USD</td>",
        "<td>EUR</td><td class=\"num\">12,345.67 EUR</td>",
        "<td class=\"num\">15,000.00 USD</td><td class=\"num\">≥ 15,000.00 USD</td>",
        "<td>EUR</td><td class=\"num\">199.12 EUR</td><td class=\"num\">—</td>",
        "<td class=\"num\">87.5%</td><td class=\"num\">&gt; 85.0%</td>",
        "<td class=\"num\">465,000.00 USD</td>",
        "<td>none</td><td class=\"num\">10</td>",
        "<td>bronze</td><td class=\"num\">20</td>",
        "<td>silver</td><td class=\"num\">18</td>",
        "<td>gold</td><td class=\"num\">10</td>",
        "<td>platinum</td><td class=\"num\">4</td>",
        "<code>operators_joined</code></td><td></td><td class=\"num\">3</td>",
        "<code>operators_lost</code></td><td></td><td class=\"num\">1</td>",
    ] {
        assert!(table.contains(expected), "KPI table lacks {expected}");
    }
    // On/off markers with their colours; no target means no verdict.
    assert_eq!(table.matches("✓ on target").count(), 6);
    assert_eq!(table.matches("✗ off target").count(), 4);
    assert!(table.contains("<tr class=\"off\"><td>Target metro covered<br><code>metro_covered</code></td><td>Denver</td>"));
    assert!(table.contains("color: #c62828;\">✗ off target"));
    assert!(table.contains("color: #1a7f37;\">✓ on target"));
}

#[test]
fn money_is_formatted_from_integer_cents() {
    let row = Row {
        period: Period::parse(M).expect("period"),
        metric: metric::MRR_PER_OPERATOR_CENTS.to_string(),
        dimension: Some("USD".to_string()),
        value: None,
        value_cents: Some(1_500_000),
        target: Some(1_500_000.0),
        on_target: Some(true),
    };
    let net = Plan::playbook().network;
    assert_eq!(format_value(&row), "15,000.00 USD");
    assert_eq!(format_target(&row, &net), "≥ 15,000.00 USD");
    // Exact beyond what an f64 of units could hold to the cent.
    let big = Row {
        value_cents: Some(9_007_199_254_740_993),
        ..row.clone()
    };
    assert_eq!(format_value(&big), "90,071,992,547,409.93 USD");
    let negative = Row {
        value_cents: Some(-1_234_505),
        ..row
    };
    assert_eq!(format_value(&negative), "-12,345.05 USD");
    assert!(fixture_report().html.contains("15,000.00 USD"));
}

#[test]
fn missing_trend_months_are_absent() {
    let html = fixture_report().html;
    // The axis starts with the first month that has figures…
    let active = figure(&html, "chart-active-operators");
    assert!(active.contains("\nNov 2024\n"), "{active}");
    assert!(active.contains("\nAug\n"));
    for absent in ["2024-09", "2024-10", "2024-07", "Sep 2024", "Oct 2024"] {
        assert!(!html.contains(absent), "{absent} should not appear");
    }
    // …the stray row older than the window is ignored (its value would stretch the axis)…
    assert!(!html.contains("12,345<"));
    // …and the page says why the trend is short.
    assert!(
        html.contains("The figures start in 2024-11, so the trend covers 10 months instead of 12.")
    );
    // A gap month breaks the line: 2024-11..2025-01 and 2025-03..2025-08 are two runs.
    let axis = Axis {
        periods: Period::parse("2024-11")
            .expect("period")
            .through(Period::parse(M).expect("period"))
            .collect(),
    };
    let rows = read_rows(&frame(&fixture_rows())).expect("rows");
    let points = series(&axis, &rows, metric::ACTIVE_OPERATORS, None);
    assert_eq!(points.len(), 9);
    let lens: Vec<usize> = runs(&points).iter().map(Vec::len).collect();
    assert_eq!(lens, [3, 6]);
}

#[test]
fn a_network_with_only_one_month_still_renders_every_chart() {
    let report = render(M, &frame(&rows_of_m()), &Plan::playbook()).expect("renders");
    assert_eq!(figure_ids(&report.html), EXPECTED_CHARTS);
    assert_eq!(report.html.matches("<svg").count(), EXPECTED_CHARTS.len());
    assert!(
        report
            .html
            .contains("the trend covers 1 month instead of 12")
    );
}

#[test]
fn usd_charts_exist_without_usd_figures() {
    let rows = vec![
        fig(M, metric::ACTIVE_OPERATORS, None, 3.0).target(50.0, false),
        money(M, metric::TOTAL_MRR_CENTS, "CAD", 500),
    ];
    let report = render(M, &frame(&rows), &Plan::playbook()).expect("renders");
    let ids = figure_ids(&report.html);
    assert!(ids.contains(&"chart-total-mrr-usd".to_string()));
    assert!(ids.contains(&"chart-mrr-per-operator-usd".to_string()));
    assert!(ids.contains(&"chart-total-mrr-cad".to_string()));
    assert!(
        figure(&report.html, "chart-total-mrr-usd").contains("no figures in this period range")
    );
    // Without metro or vertical rows the sections say so rather than vanish.
    assert!(
        report
            .html
            .contains("No target metros in the figures of 2025-08.")
    );
    assert!(
        report
            .html
            .contains("Every vertical has at least 2 active specialists.")
    );
}

#[test]
fn coverage_and_thin_verticals_are_listed() {
    let html = fixture_report().html;
    let coverage = &html[html.find("id=\"coverage\"").expect("coverage section")..];
    assert!(coverage.contains("2 of 3 target metros covered (66.7%)."));
    assert!(coverage.contains("<li style=\"color: #c62828;\">Denver</li>"));
    assert!(coverage.contains("Covered: Austin, Boston."));
    let verticals = &html[html.find("id=\"verticals\"").expect("verticals section")..];
    assert!(verticals.contains("<td>R&amp;D labs</td>"));
    assert!(verticals.contains("<td>legal</td>"));
    assert!(!verticals.contains("<td>dental</td>"));
}

#[test]
fn text_part_is_the_kpi_table() {
    let text = fixture_report().text;
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("Candlefish network health — 2025-08"));
    assert_eq!(lines.next(), Some(""));
    assert!(
        lines
            .next()
            .is_some_and(|h| h.starts_with("Metric") && h.ends_with("Status"))
    );
    assert!(text.contains("15,000.00 USD"));
    assert!(text.contains("≥ 15,000.00 USD  ✓ on target"));
    assert!(text.contains("✗ off target"));
    assert!(text.contains("Uncovered target metros: Denver\n"));
    assert!(text.contains("Verticals with fewer than 2 specialists: R&D labs (0), legal (1)\n"));
    // One line per row of M between the rule and the blank line.
    let table: Vec<&str> = text.lines().skip(4).take_while(|l| !l.is_empty()).collect();
    assert_eq!(table.len(), 21);
}

#[test]
fn csv_has_a_header_and_one_line_per_row_of_m() {
    let csv = String::from_utf8(fixture_report().csv).expect("utf-8");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + 21);
    assert_eq!(
        lines[0],
        "period,metric,dimension,value,value_cents,target,on_target"
    );
    assert!(lines[1..].iter().all(|l| l.starts_with("2025-08,")));
    assert!(lines.contains(&"2025-08,active_operators,,62,,50,true"));
    assert!(lines.contains(&"2025-08,mrr_per_operator_cents,USD,,1500000,1500000,true"));
    assert!(lines.contains(&"2025-08,total_mrr_cents,EUR,,1234567,,"));
    assert!(lines.contains(&"2025-08,operator_retention,,0.875,,0.85,true"));
    assert!(lines.contains(&"2025-08,metro_covered,Denver,0,,1,false"));
}

/// The CSV is RFC 4180: a dimension holding a comma, a quote or a line break (a
/// vertical or metro name) is quoted with its quotes doubled, so it stays one field.
#[test]
fn csv_quotes_fields_that_need_it() {
    let row = |dimension: &str| Row {
        period: Period::parse(M).expect("period"),
        metric: metric::VERTICAL_SPECIALISTS.to_string(),
        dimension: Some(dimension.to_string()),
        value: Some(1.0),
        value_cents: None,
        target: Some(2.0),
        on_target: Some(false),
    };
    let csv = String::from_utf8(render_csv(&[
        row("Legal, tax"),
        row("R&D \"labs\""),
        row("two\nlines"),
        row("plain"),
    ]))
    .expect("utf-8");
    assert_eq!(
        csv,
        "period,metric,dimension,value,value_cents,target,on_target\n\
         2025-08,vertical_specialists,\"Legal, tax\",1,,2,false\n\
         2025-08,vertical_specialists,\"R&D \"\"labs\"\"\",1,,2,false\n\
         2025-08,vertical_specialists,\"two\nlines\",1,,2,false\n\
         2025-08,vertical_specialists,plain,1,,2,false\n"
    );
}

#[test]
fn errors_name_the_problem() {
    let rows = frame(&fixture_rows());
    assert!(matches!(
        render("2025-13", &rows, &Plan::playbook()),
        Err(ReportError::Period(_))
    ));
    assert!(
        matches!(render("2026-03", &rows, &Plan::playbook()), Err(ReportError::NoRows(p)) if p == "2026-03")
    );
    let bad = frame(&[fig("August", metric::ACTIVE_OPERATORS, None, 1.0)]);
    assert!(matches!(
        render(M, &bad, &Plan::playbook()),
        Err(ReportError::Row { row: 0, .. })
    ));
    let no_metric =
        DataFrame::new_infer_height(vec![Column::new("period".into(), [M])]).expect("frame");
    assert!(matches!(
        render(M, &no_metric, &Plan::playbook()),
        Err(ReportError::Frame(_))
    ));
}

#[test]
fn writes_the_fixture_page_for_a_look() {
    let report = fixture_report();
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/report-fixture.html");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("target dir");
    }
    std::fs::write(&path, report.html).expect("write fixture page");
}

/// Issue 14: what needs action comes first — the off-target figures lead the KPI
/// table and its text part, each group in the R5 order; the CSV keeps the R5 order.
#[test]
fn off_target_figures_come_first() {
    let report = fixture_report();
    let table = kpi_table(&report.html);
    let statuses: Vec<&str> = table
        .split("<tr class=\"")
        .skip(1)
        .map(|r| r.split('"').next().unwrap_or(""))
        .collect();
    assert_eq!(statuses.len(), 21);
    let off = statuses.iter().take_while(|s| **s == "off").count();
    assert_eq!(off, 4, "{statuses:?}");
    assert!(statuses[off..].iter().all(|s| *s != "off"), "{statuses:?}");
    // Within the off-target group: Denver (metro), coverage share, then the verticals.
    let first_off = &table[table.find("<tr class=\"off\">").expect("off row")..];
    assert!(first_off.starts_with("<tr class=\"off\"><td>Target metro covered"));
    assert!(report.html.contains("4 off target come first"));
    let text_rows: Vec<&str> = report
        .text
        .lines()
        .skip(4)
        .take_while(|l| !l.is_empty())
        .collect();
    assert!(
        text_rows[..4].iter().all(|l| l.ends_with("✗ off target")),
        "{text_rows:#?}"
    );
    assert!(text_rows[4..].iter().all(|l| !l.ends_with("✗ off target")));
    let csv = String::from_utf8(report.csv).expect("utf-8");
    assert!(
        csv.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("2025-08,active_operators,")),
        "{csv}"
    );
}

/// Issue 14: twelve `YYYY-MM` labels overlapped on a scaled-down chart; month names
/// fit, with the year on the first month and on January.
#[test]
fn month_labels_are_short_and_name_the_year_where_it_changes() {
    let axis = Axis {
        periods: Period::parse("2024-09")
            .expect("period")
            .through(Period::parse(M).expect("period"))
            .collect(),
    };
    let labels: Vec<String> = (0..axis.len()).map(|x| axis.label(x)).collect();
    assert_eq!(
        labels,
        [
            "Sep 2024", "Oct", "Nov", "Dec", "Jan 2025", "Feb", "Mar", "Apr", "May", "Jun", "Jul",
            "Aug"
        ]
    );
    assert_eq!(axis.label(-1), "");
    assert_eq!(axis.label(12), "");
    // The widest two neighbours fit the space of a month on the 760-pixel chart
    // (~49 px at ~7 px per character): no label is longer than 8 characters and
    // no two long ones are adjacent.
    for pair in labels.windows(2) {
        assert!(pair[0].len() + pair[1].len() <= 11, "{pair:?}");
    }
    assert_eq!(axis.first(), "2024-09");
    assert_eq!(axis.last(), "2025-08");
}

/// Issue 14: `none` and `silver` shared one grey in the tier chart. Every tier has
/// its own colour, far enough apart to be told apart in the stacked bands (the old
/// none/silver pair was 79 apart by this measure).
#[test]
fn every_tier_has_a_distinct_colour() {
    let colours: Vec<RGBColor> = TIERS.iter().map(|t| tier_colour(t)).collect();
    for (i, a) in colours.iter().enumerate() {
        for (j, b) in colours.iter().enumerate().skip(i + 1) {
            let d = |x: u8, y: u8| (i32::from(x) - i32::from(y)).abs();
            let distance = d(a.0, b.0) + d(a.1, b.1) + d(a.2, b.2);
            assert!(
                distance >= 100,
                "{} and {} are too alike ({distance})",
                TIERS[i],
                TIERS[j]
            );
        }
    }
    assert_ne!(tier_colour("mystery"), tier_colour("none"));
}

/// Issue 10 (R0.5): the report takes every target from the plan in force for M. A
/// plan version that moves the R5 targets turns the same network's ✓ into ✗, and
/// the report states the new targets — through the pipeline, as the job runs it.
#[test]
fn r0_5_a_plan_version_with_other_r5_targets_changes_the_verdicts() {
    use opnet_pipelines::{Inputs, PlanBook};
    let book = PlanBook::from_toml(
        r#"
[[version]]
version = "playbook"
effective_from = "2020-01"

[[version]]
version = "2025.2"
effective_from = "2025-08"
network.active_operators_min = 70
network.active_operators_max = 200
network.vertical_specialists_min = 80
network.operator_retention_min = 0.99
"#,
    )
    .expect("plan");
    // 60 operators, active since 2024-01 in metro m1, all listing v1; one left in
    // 2025-03, so retention is 59/60.
    let n = 60;
    let mut inputs = Inputs::empty();
    inputs.operators = polars::df!(
        "operator_id" => (0..n).map(|k| format!("op{k:03}")).collect::<Vec<_>>(),
        "name" => vec!["x"; n],
        "email" => vec!["x@example.com"; n],
        "metro" => vec!["m1"; n],
        "verticals" => vec!["v1"; n],
        "joined_on" => vec![chrono::NaiveDate::from_ymd_opt(2024, 1, 1).expect("date"); n],
        "terminated_on" => (0..n)
            .map(|k| (k == 0).then(|| chrono::NaiveDate::from_ymd_opt(2025, 3, 1).expect("date")))
            .collect::<Vec<_>>(),
    )
    .expect("operators")
    .lazy();
    let render_with = |period: &str| {
        let p = Period::parse(period).expect("period");
        let plan = book.for_period(p).expect("plan in force");
        let tiers =
            polars::df!("operator_id" => Vec::<String>::new(), "tier" => Vec::<String>::new())
                .expect("tiers")
                .lazy();
        let payable =
            polars::df!("currency" => Vec::<String>::new(), "payable_cents" => Vec::<i64>::new())
                .expect("payable")
                .lazy();
        let rows = opnet_pipelines::health::network_health(&inputs, p, plan, tiers, payable)
            .collect()
            .expect("rows");
        render(period, &rows, plan).expect("report")
    };
    let row_of = |html: &str, metric: &str| -> String {
        let table = kpi_table(html);
        let at = table
            .find(&format!("<code>{metric}</code>"))
            .unwrap_or_else(|| panic!("{metric} row"));
        let end = table[at..].find("</tr>").expect("row end");
        table[at..at + end].to_string()
    };

    let before = render_with("2025-07");
    let after = render_with("2025-08");
    let (a, b) = (
        row_of(&before.html, "active_operators"),
        row_of(&after.html, "active_operators"),
    );
    assert!(a.contains("50–100") && a.contains("✓ on target"), "{a}");
    assert!(b.contains("70–200") && b.contains("✗ off target"), "{b}");
    let (a, b) = (
        row_of(&before.html, "vertical_specialists"),
        row_of(&after.html, "vertical_specialists"),
    );
    assert!(a.contains("≥ 2") && a.contains("✓ on target"), "{a}");
    assert!(b.contains("≥ 80") && b.contains("✗ off target"), "{b}");
    let (a, b) = (
        row_of(&before.html, "operator_retention"),
        row_of(&after.html, "operator_retention"),
    );
    assert!(a.contains("&gt; 85.0%") && a.contains("✓ on target"), "{a}");
    assert!(
        b.contains("&gt; 99.0%") && b.contains("✗ off target"),
        "{b}"
    );
    // The sections and the text part follow the same plan.
    assert!(
        before
            .html
            .contains("Every vertical has at least 2 active specialists.")
    );
    assert!(
        after
            .html
            .contains("Verticals with fewer than 80 specialists")
    );
    assert!(
        after
            .text
            .contains("Verticals with fewer than 80 specialists: v1 (59)")
    );
    assert!(
        after.html.contains("target ≤ 200"),
        "the chart's band follows the plan"
    );
}
