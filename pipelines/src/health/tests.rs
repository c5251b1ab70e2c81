//! R5 figures and their targets: active operators, coverage, vertical specialists,
//! revenue per operator (USD targets only), retention, payouts, tiers, joins and losses.

use super::*;
use chrono::NaiveDate;

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

const M: &str = "2025-06";

/// (metric, dimension) → (value, value_cents, target, on_target)
type Row = (Option<f64>, Option<i64>, Option<f64>, Option<bool>);

struct Report(DataFrame);

impl Report {
    fn get(&self, metric: &str, dimension: Option<&str>) -> Row {
        let df = &self.0;
        let metrics = df.column("metric").unwrap().str().unwrap();
        let dims = df.column("dimension").unwrap().str().unwrap();
        let hits: Vec<usize> = (0..df.height())
            .filter(|&i| metrics.get(i) == Some(metric) && dims.get(i) == dimension)
            .collect();
        assert_eq!(hits.len(), 1, "{metric} {dimension:?}");
        let i = hits[0];
        (
            df.column("value").unwrap().f64().unwrap().get(i),
            df.column("value_cents").unwrap().i64().unwrap().get(i),
            df.column("target").unwrap().f64().unwrap().get(i),
            df.column("on_target").unwrap().bool().unwrap().get(i),
        )
    }

    fn dims(&self, metric: &str) -> Vec<String> {
        let df = &self.0;
        let metrics = df.column("metric").unwrap().str().unwrap();
        let dims = df.column("dimension").unwrap().str().unwrap();
        (0..df.height())
            .filter(|&i| metrics.get(i) == Some(metric))
            .map(|i| dims.get(i).unwrap_or("").to_string())
            .collect()
    }
}

fn empty_tiers() -> LazyFrame {
    df!("operator_id" => Vec::<String>::new(), "tier" => Vec::<String>::new())
        .unwrap()
        .lazy()
}

fn empty_payable() -> LazyFrame {
    df!("currency" => Vec::<String>::new(), "payable_cents" => Vec::<i64>::new())
        .unwrap()
        .lazy()
}

fn report(inputs: &Inputs, plan: &Plan) -> Report {
    report_with(inputs, plan, empty_tiers(), empty_payable())
}

fn report_with(inputs: &Inputs, plan: &Plan, tiers: LazyFrame, payable: LazyFrame) -> Report {
    Report(
        network_health(inputs, Period::parse(M).unwrap(), plan, tiers, payable)
            .collect()
            .unwrap(),
    )
}

/// `n` operators joined 2024-01-01 in metro `m1` listing `v1; v2`.
fn operators(n: usize) -> Inputs {
    let mut i = Inputs::empty();
    i.operators = df!(
        "operator_id" => (0..n).map(|k| format!("op{k:03}")).collect::<Vec<_>>(),
        "metro" => vec!["m1"; n],
        "verticals" => vec!["v1; v2"; n],
        "joined_on" => vec![d("2024-01-01"); n],
        "terminated_on" => vec![None::<NaiveDate>; n],
    )
    .unwrap()
    .lazy();
    i
}

#[test]
fn r5_1_active_operators_target_band() {
    let plan = Plan::playbook();
    for (n, on) in [
        (49, false),
        (50, true),
        (51, true),
        (100, true),
        (101, false),
    ] {
        let r = report(&operators(n), &plan);
        assert_eq!(
            r.get("active_operators", None),
            (Some(n as f64), None, Some(50.0), Some(on)),
            "{n}"
        );
    }
}

#[test]
fn r5_1_terminated_and_future_operators_are_not_active() {
    let mut i = Inputs::empty();
    i.operators = df!(
        "operator_id" => ["a", "gone", "later", "left_next_month"],
        "metro" => ["m1", "m1", "m1", "m1"],
        "verticals" => ["v", "v", "v", "v"],
        "joined_on" => [d("2024-01-01"), d("2024-01-01"), d("2025-07-01"), d("2025-06-01")],
        "terminated_on" => [None, Some(d("2025-06-30")), None, Some(d("2025-07-01"))],
    )
    .unwrap()
    .lazy();
    let r = report(&i, &Plan::playbook());
    assert_eq!(r.get("active_operators", None).0, Some(2.0));
    assert_eq!(r.get("operators_joined", None).0, Some(1.0));
    assert_eq!(r.get("operators_lost", None).0, Some(1.0));
    // the vertical is listed by every operator, but only two are active
    assert_eq!(
        r.get("vertical_specialists", Some("v")),
        (Some(2.0), None, Some(2.0), Some(true))
    );
}

#[test]
fn r5_2_coverage_with_a_target_metro_without_operators() {
    let mut i = operators(1);
    i.territories = df!(
        "territory_id" => ["t1", "t2", "t3"],
        "metro" => ["m1", "m2", "m1"],
        "currency" => ["USD", "USD", "USD"],
    )
    .unwrap()
    .lazy();
    let r = report(&i, &Plan::playbook());
    assert_eq!(
        r.get("metro_covered", Some("m1")),
        (Some(1.0), None, Some(1.0), Some(true))
    );
    assert_eq!(
        r.get("metro_covered", Some("m2")),
        (Some(0.0), None, Some(1.0), Some(false))
    );
    assert_eq!(
        r.get("coverage_share", None),
        (Some(0.5), None, Some(1.0), Some(false))
    );
    assert_eq!(r.dims("metro_covered"), ["m1", "m2"]);

    // the plan's target metros replace the territories' metros
    let mut plan = Plan::playbook();
    plan.network.target_metros = vec!["m1".into()];
    let r = report(&i, &plan);
    assert_eq!(r.dims("metro_covered"), ["m1"]);
    assert_eq!(
        r.get("coverage_share", None),
        (Some(1.0), None, Some(1.0), Some(true))
    );
}

#[test]
fn r5_2_no_target_metro_gives_a_null_share() {
    let r = report(&operators(1), &Plan::playbook());
    assert!(r.dims("metro_covered").is_empty());
    assert_eq!(r.get("coverage_share", None), (None, None, Some(1.0), None));
}

#[test]
fn r5_3_vertical_specialists_split_trimmed_and_at_threshold() {
    let mut i = Inputs::empty();
    i.operators = df!(
        "operator_id" => ["a", "b", "c"],
        "metro" => ["m", "m", "m"],
        "verticals" => ["dental; legal", "dental;;retail ", "legal"],
        "joined_on" => [d("2024-01-01"), d("2024-01-01"), d("2024-01-01")],
        "terminated_on" => [None, None, Some(d("2025-01-01"))],
    )
    .unwrap()
    .lazy();
    let r = report(&i, &Plan::playbook());
    assert_eq!(
        r.dims("vertical_specialists"),
        ["dental", "legal", "retail"]
    );
    assert_eq!(
        r.get("vertical_specialists", Some("dental")),
        (Some(2.0), None, Some(2.0), Some(true))
    );
    assert_eq!(
        r.get("vertical_specialists", Some("legal")),
        (Some(1.0), None, Some(2.0), Some(false))
    );
    assert_eq!(
        r.get("vertical_specialists", Some("retail")),
        (Some(1.0), None, Some(2.0), Some(false))
    );
}

/// Two active operators; one USD customer billing `usd` a month and one EUR
/// customer billing `eur`.
fn revenue(usd: i64, eur: i64) -> Inputs {
    let mut i = operators(2);
    i.customers = df!(
        "customer_id" => ["cu", "ce"],
        "operator_id" => [Some("op000"), Some("op001")],
    )
    .unwrap()
    .lazy();
    i.invoices = df!(
        "invoice_id" => ["iu", "ie"],
        "customer_id" => ["cu", "ce"],
        "currency" => ["USD", "EUR"],
        "status" => ["paid", "open"],
    )
    .unwrap()
    .lazy();
    i.invoice_lines = df!(
        "invoice_id" => ["iu", "ie"],
        "line_no" => [1i64, 1],
        "revenue_type" => ["software", "software"],
        "amount_cents" => [usd, eur],
        "service_start" => [d("2025-06-01"), d("2025-06-01")],
        "service_end" => [d("2025-06-30"), d("2025-06-30")],
    )
    .unwrap()
    .lazy();
    i
}

#[test]
fn r5_4_revenue_per_operator_target_applies_to_usd_only() {
    let plan = Plan::playbook();
    // USD 3,000,001 / 2 = 1,500,000.5 → 1,500,000 (half-even): equal, on target
    let r = report(&revenue(3_000_001, 5), &plan);
    assert_eq!(
        r.get("total_mrr_cents", Some("USD")),
        (Some(3_000_001.0), Some(3_000_001), None, None)
    );
    assert_eq!(
        r.get("mrr_per_operator_cents", Some("USD")),
        (
            Some(1_500_000.0),
            Some(1_500_000),
            Some(1_500_000.0),
            Some(true)
        )
    );
    // EUR: 5 / 2 = 2.5 → 2, no target
    assert_eq!(
        r.get("mrr_per_operator_cents", Some("EUR")),
        (Some(2.0), Some(2), None, None)
    );
    assert_eq!(
        r.get("total_mrr_cents", Some("EUR")),
        (Some(5.0), Some(5), None, None)
    );
    // just below: 2,999,998 / 2 = 1,499,999
    let r = report(&revenue(2_999_998, 5), &plan);
    assert_eq!(r.get("mrr_per_operator_cents", Some("USD")).3, Some(false));
    // just above
    let r = report(&revenue(3_000_002, 5), &plan);
    assert_eq!(r.get("mrr_per_operator_cents", Some("USD")).3, Some(true));
}

#[test]
fn r5_4_target_currency_is_reported_even_without_revenue() {
    let r = report(&revenue(0, 100), &Plan::playbook());
    assert_eq!(
        r.get("mrr_per_operator_cents", Some("USD")),
        (Some(0.0), Some(0), Some(1_500_000.0), Some(false))
    );
    let r = report(&Inputs::empty(), &Plan::playbook());
    // no active operator: per-operator revenue is undefined
    assert_eq!(
        r.get("mrr_per_operator_cents", Some("USD")),
        (None, None, Some(1_500_000.0), None)
    );
    assert_eq!(
        r.get("total_mrr_cents", Some("USD")),
        (Some(0.0), Some(0), None, None)
    );
}

#[test]
fn r5_5_operator_retention_above_target_and_null_on_empty_cohort() {
    // 20 operators active at end of 2024-06; `lost` of them terminated by end of M
    let retention = |lost: usize| {
        let mut i = Inputs::empty();
        let n = 20;
        i.operators = df!(
            "operator_id" => (0..n + 1).map(|k| format!("op{k}")).collect::<Vec<_>>(),
            "metro" => vec!["m"; n + 1],
            "verticals" => vec!["v"; n + 1],
            // op20 joined after M−12: outside the cohort
            "joined_on" => (0..n + 1).map(|k| if k < n { d("2024-01-01") } else { d("2024-07-01") }).collect::<Vec<_>>(),
            "terminated_on" => (0..n + 1).map(|k| if k < lost { Some(d("2025-06-30")) } else { None }).collect::<Vec<_>>(),
        )
        .unwrap()
        .lazy();
        report(&i, &Plan::playbook()).get("operator_retention", None)
    };
    assert_eq!(retention(2), (Some(0.9), None, Some(0.85), Some(true)));
    // 17/20 = 0.85 is not above the target
    assert_eq!(retention(3), (Some(0.85), None, Some(0.85), Some(false)));
    assert_eq!(retention(4), (Some(0.8), None, Some(0.85), Some(false)));
    // empty cohort
    let r = report(&operators(0), &Plan::playbook());
    assert_eq!(
        r.get("operator_retention", None),
        (None, None, Some(0.85), None)
    );
}

#[test]
fn r5_also_payouts_tiers_joined_and_lost() {
    let tiers = df!("operator_id" => ["a", "b", "c"], "tier" => ["gold", "gold", "none"])
        .unwrap()
        .lazy();
    let payable = df!("currency" => ["USD", "USD", "EUR"], "payable_cents" => [100i64, 250, 7])
        .unwrap()
        .lazy();
    let r = report_with(&operators(3), &Plan::playbook(), tiers, payable);
    assert_eq!(
        r.get("payouts_cents", Some("USD")),
        (Some(350.0), Some(350), None, None)
    );
    assert_eq!(
        r.get("payouts_cents", Some("EUR")),
        (Some(7.0), Some(7), None, None)
    );
    assert_eq!(
        r.dims("tier_operators"),
        ["bronze", "gold", "none", "platinum", "silver"]
    );
    assert_eq!(r.get("tier_operators", Some("gold")).0, Some(2.0));
    assert_eq!(r.get("tier_operators", Some("none")).0, Some(1.0));
    assert_eq!(
        r.get("tier_operators", Some("platinum")),
        (Some(0.0), None, None, None)
    );
    assert_eq!(
        r.get("operators_joined", None),
        (Some(0.0), None, None, None)
    );
    assert_eq!(r.get("operators_lost", None), (Some(0.0), None, None, None));
}

#[test]
fn r5_columns_types_and_order() {
    let r = report(&operators(1), &Plan::playbook());
    let schema: Vec<(String, DataType)> =
        r.0.schema()
            .iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect();
    let want: Vec<(String, DataType)> = [
        ("period", DataType::String),
        ("metric", DataType::String),
        ("dimension", DataType::String),
        ("value", DataType::Float64),
        ("value_cents", DataType::Int64),
        ("target", DataType::Float64),
        ("on_target", DataType::Boolean),
    ]
    .iter()
    .map(|(n, t)| (n.to_string(), t.clone()))
    .collect();
    assert_eq!(schema, want);
    let metrics: Vec<String> =
        r.0.column("metric")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .flatten()
            .map(String::from)
            .collect();
    let mut sorted = metrics.clone();
    sorted.sort();
    assert_eq!(metrics, sorted);
    for m in [
        "active_operators",
        "coverage_share",
        "operator_retention",
        "operators_joined",
        "operators_lost",
        "total_mrr_cents",
        "mrr_per_operator_cents",
        "tier_operators",
        "vertical_specialists",
    ] {
        assert!(metrics.iter().any(|x| x == m), "{m}");
    }
}
