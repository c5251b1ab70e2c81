//! R1 and R7 through the payout close: pricing by phase, tier and type, clawbacks at the
//! shares of collection, carry-forward, exception holds, control totals and determinism.
//! The fixture builders (`fixture`, `history_with`, …) are `pub(crate)`: the reconcile
//! tests use them too.

use super::*;
use chrono::NaiveDate;
use proptest::prelude::*;

pub(crate) fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

pub(crate) fn per(s: &str) -> Period {
    Period::parse(s).unwrap()
}

type Inv = (
    String,
    String,
    String,
    NaiveDate,
    String,
    Option<NaiveDate>,
    i64,
);

/// A small literal snapshot of billing and CRM.
#[derive(Default, Clone)]
pub(crate) struct Fx {
    ops: Vec<(String, NaiveDate, Option<NaiveDate>)>,
    customers: Vec<(String, Option<String>, NaiveDate, Option<NaiveDate>)>,
    invoices: Vec<Inv>,
    lines: Vec<(String, i64, String, i64)>,
    refunds: Vec<(String, String, i64, NaiveDate, i64)>,
}

impl Fx {
    pub(crate) fn op(&mut self, id: &str, joined: &str, terminated: Option<&str>) -> &mut Self {
        self.ops.push((id.into(), d(joined), terminated.map(d)));
        self
    }
    pub(crate) fn customer(
        &mut self,
        id: &str,
        op: Option<&str>,
        signed: &str,
        churned: Option<&str>,
    ) -> &mut Self {
        self.customers
            .push((id.into(), op.map(str::to_string), d(signed), churned.map(d)));
        self
    }
    /// `n` more active customers of `op` (for its tier).
    pub(crate) fn customers_of(&mut self, op: &str, n: usize) -> &mut Self {
        for k in 0..n {
            self.customer(&format!("{op}-extra{k}"), Some(op), "2020-01-01", None);
        }
        self
    }
    /// An invoice whose total is the sum of its lines.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn invoice(
        &mut self,
        id: &str,
        cust: &str,
        cur: &str,
        issued: &str,
        status: &str,
        paid: Option<&str>,
        lines: &[(&str, i64)],
    ) -> &mut Self {
        let total = lines.iter().map(|l| l.1).sum();
        self.invoice_total(id, cust, cur, issued, status, paid, total);
        for (k, (ty, amount)) in lines.iter().enumerate() {
            self.line(id, k as i64 + 1, ty, *amount);
        }
        self
    }
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn invoice_total(
        &mut self,
        id: &str,
        cust: &str,
        cur: &str,
        issued: &str,
        status: &str,
        paid: Option<&str>,
        total: i64,
    ) -> &mut Self {
        self.invoices.push((
            id.into(),
            cust.into(),
            cur.into(),
            d(issued),
            status.into(),
            paid.map(d),
            total,
        ));
        self
    }
    pub(crate) fn line(&mut self, inv: &str, no: i64, ty: &str, amount: i64) -> &mut Self {
        self.lines.push((inv.into(), no, ty.into(), amount));
        self
    }
    pub(crate) fn refund(
        &mut self,
        id: &str,
        inv: &str,
        line: i64,
        on: &str,
        amount: i64,
    ) -> &mut Self {
        self.refunds
            .push((id.into(), inv.into(), line, d(on), amount));
        self
    }
    pub(crate) fn inputs(&self) -> Inputs {
        let mut i = Inputs::empty();
        i.operators = df!(
            "operator_id" => self.ops.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
            "joined_on" => self.ops.iter().map(|r| r.1).collect::<Vec<_>>(),
            "terminated_on" => self.ops.iter().map(|r| r.2).collect::<Vec<_>>(),
        )
        .unwrap()
        .lazy();
        i.customers = df!(
            "customer_id" => self.customers.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
            "operator_id" => self.customers.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
            "contract_signed_on" => self.customers.iter().map(|r| r.2).collect::<Vec<_>>(),
            "churned_on" => self.customers.iter().map(|r| r.3).collect::<Vec<_>>(),
        )
        .unwrap()
        .lazy();
        i.invoices = df!(
            "invoice_id" => self.invoices.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
            "customer_id" => self.invoices.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
            "currency" => self.invoices.iter().map(|r| r.2.clone()).collect::<Vec<_>>(),
            "issued_on" => self.invoices.iter().map(|r| r.3).collect::<Vec<_>>(),
            "status" => self.invoices.iter().map(|r| r.4.clone()).collect::<Vec<_>>(),
            "paid_on" => self.invoices.iter().map(|r| r.5).collect::<Vec<_>>(),
            "total_cents" => self.invoices.iter().map(|r| r.6).collect::<Vec<_>>(),
        )
        .unwrap()
        .lazy();
        i.invoice_lines = df!(
            "invoice_id" => self.lines.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
            "line_no" => self.lines.iter().map(|r| r.1).collect::<Vec<_>>(),
            "revenue_type" => self.lines.iter().map(|r| r.2.clone()).collect::<Vec<_>>(),
            "amount_cents" => self.lines.iter().map(|r| r.3).collect::<Vec<_>>(),
        )
        .unwrap()
        .lazy();
        i.refunds = df!(
            "refund_id" => self.refunds.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
            "invoice_id" => self.refunds.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
            "line_no" => self.refunds.iter().map(|r| r.2).collect::<Vec<_>>(),
            "refunded_on" => self.refunds.iter().map(|r| r.3).collect::<Vec<_>>(),
            "amount_cents" => self.refunds.iter().map(|r| r.4).collect::<Vec<_>>(),
        )
        .unwrap()
        .lazy();
        i
    }
}

/// Period 2025-03. `a` joined 2024-03 (tenure 13, growth) with 6 customers
/// (silver); `b` joined 2025-01 (initial) with 1 (bronze); `t` joined 2022-01
/// (mature), terminated 2025-02-15, still with a customer.
pub(crate) fn fixture_fx() -> Fx {
    let mut fx = Fx::default();
    fx.op("a", "2024-03-01", None)
        .op("b", "2025-01-20", None)
        .op("t", "2022-01-01", Some("2025-02-15"))
        .customer("ca1", Some("a"), "2024-06-01", None)
        .customers_of("a", 5)
        .customer("cb1", Some("b"), "2025-01-25", None)
        .customer("ct1", Some("t"), "2022-02-01", None)
        .invoice(
            "I1",
            "ca1",
            "USD",
            "2025-03-01",
            "paid",
            Some("2025-03-10"),
            &[("software", 10_000)],
        )
        .invoice(
            "I2",
            "cb1",
            "USD",
            "2025-03-01",
            "paid",
            Some("2025-03-15"),
            &[("implementation", 5_000), ("software", -1_005)],
        )
        .invoice(
            "I3",
            "ct1",
            "EUR",
            "2025-02-01",
            "paid",
            Some("2025-03-20"),
            &[("software", 2_000)],
        )
        .invoice(
            "I4",
            "cb1",
            "USD",
            "2025-03-05",
            "open",
            None,
            &[("support", 700)],
        )
        .invoice(
            "I5",
            "ca1",
            "USD",
            "2025-02-01",
            "paid",
            Some("2025-02-10"),
            &[("support", 400)],
        );
    fx
}

pub(crate) fn fixture() -> (Inputs, Period) {
    (fixture_fx().inputs(), per("2025-03"))
}

/// History holding these collection lines:
/// (period, operator, currency, invoice, line, type, amount, bp).
#[allow(clippy::type_complexity)]
pub(crate) fn history_with(
    rows: &[(&str, &str, &str, &str, i64, &str, i64, i64)],
) -> PayoutHistory {
    let mut h = PayoutHistory::empty();
    h.prior_lines = df!(
        "period" => rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        "operator_id" => rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        "currency" => rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        "invoice_id" => rows.iter().map(|r| r.3).collect::<Vec<_>>(),
        "line_no" => rows.iter().map(|r| r.4).collect::<Vec<_>>(),
        "revenue_type" => rows.iter().map(|r| r.5).collect::<Vec<_>>(),
        "amount_cents" => rows.iter().map(|r| r.6).collect::<Vec<_>>(),
        "operator_bp" => rows.iter().map(|r| r.7).collect::<Vec<_>>(),
        "kind" => rows.iter().map(|_| "collection").collect::<Vec<_>>(),
        "refund_id" => rows.iter().map(|_| None::<&str>).collect::<Vec<_>>(),
    )
    .unwrap()
    .lazy();
    h
}

fn strs(df: &DataFrame, c: &str) -> Vec<Option<String>> {
    df.column(c)
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect()
}

fn names(df: &DataFrame) -> Vec<String> {
    df.get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn ints(df: &DataFrame, c: &str) -> Vec<i64> {
    df.column(c)
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .map(|v| v.unwrap())
        .collect()
}

type Line = (
    String,
    String,
    String,
    i64,
    Option<String>,
    String,
    String,
    i64,
    i64,
    i64,
    i64,
    String,
);

#[allow(clippy::too_many_arguments)]
fn line(
    op: &str,
    cur: &str,
    inv: &str,
    no: i64,
    refund: Option<&str>,
    ty: &str,
    kind: &str,
    amount: i64,
    bp: i64,
    opc: i64,
    cfc: i64,
    collected: &str,
) -> Line {
    (
        op.into(),
        cur.into(),
        inv.into(),
        no,
        refund.map(str::to_string),
        ty.into(),
        kind.into(),
        amount,
        bp,
        opc,
        cfc,
        collected.into(),
    )
}

fn lines_of(close: &PayoutClose) -> Vec<Line> {
    let df = &close.lines;
    let s = |c| strs(df, c);
    let (op, cur, inv, rf, ty, kind, cp) = (
        s("operator_id"),
        s("currency"),
        s("invoice_id"),
        s("refund_id"),
        s("revenue_type"),
        s("kind"),
        s("collected_period"),
    );
    let (no, amt, bp, opc, cfc) = (
        ints(df, "line_no"),
        ints(df, "amount_cents"),
        ints(df, "operator_bp"),
        ints(df, "operator_cents"),
        ints(df, "candlefish_cents"),
    );
    (0..df.height())
        .map(|i| {
            (
                op[i].clone().unwrap(),
                cur[i].clone().unwrap(),
                inv[i].clone().unwrap(),
                no[i],
                rf[i].clone(),
                ty[i].clone().unwrap(),
                kind[i].clone().unwrap(),
                amt[i],
                bp[i],
                opc[i],
                cfc[i],
                cp[i].clone().unwrap(),
            )
        })
        .collect()
}

/// (operator, currency, phase, tier, [software, implementation, support,
/// operator_share, candlefish_share, clawback, carried_in, payable, carried_out]).
type Stmt = (String, String, Option<String>, String, Vec<i64>);

fn statements_of(close: &PayoutClose) -> Vec<Stmt> {
    let df = &close.statements;
    let money = [
        "software_cents",
        "implementation_cents",
        "support_cents",
        "operator_share_cents",
        "candlefish_share_cents",
        "clawback_cents",
        "carried_in_cents",
        "payable_cents",
        "carried_out_cents",
    ]
    .map(|c| ints(df, c));
    let (op, cur, ph, tier) = (
        strs(df, "operator_id"),
        strs(df, "currency"),
        strs(df, "phase"),
        strs(df, "tier"),
    );
    (0..df.height())
        .map(|i| {
            (
                op[i].clone().unwrap(),
                cur[i].clone().unwrap(),
                ph[i].clone(),
                tier[i].clone().unwrap(),
                money.iter().map(|m| m[i]).collect(),
            )
        })
        .collect()
}

fn stmt(op: &str, cur: &str, phase: &str, tier: &str, money: [i64; 9]) -> Stmt {
    (
        op.into(),
        cur.into(),
        Some(phase.into()),
        tier.into(),
        money.to_vec(),
    )
}

fn close(inputs: &Inputs, history: &PayoutHistory, p: &str) -> PayoutClose {
    close_payouts(inputs, history, per(p), &Plan::playbook()).unwrap()
}

/// Closes `periods` in order, each feeding its collection lines and carried-out
/// balances into the next one's history, as the job does.
pub(crate) fn chain(inputs: &Inputs, periods: &[&str]) -> Vec<PayoutClose> {
    let mut history = PayoutHistory::empty();
    let mut out = Vec::new();
    for p in periods {
        let c = close(inputs, &history, p);
        let new_lines = c.lines.clone().lazy().select(
            [
                "period",
                "operator_id",
                "currency",
                "invoice_id",
                "line_no",
                "revenue_type",
                "amount_cents",
                "operator_bp",
                "kind",
                "refund_id",
            ]
            .map(col),
        );
        history = PayoutHistory {
            prior_lines: concat([history.prior_lines, new_lines], UnionArgs::default()).unwrap(),
            carried_in: c.statements.clone().lazy().select([
                col("operator_id"),
                col("currency"),
                col("carried_out_cents").alias("carried_in_cents"),
            ]),
        };
        out.push(c);
    }
    out
}

#[test]
fn r1_5_collections_priced_at_phase_tier_and_type() {
    let (inputs, _) = fixture();
    let c = close(&inputs, &PayoutHistory::empty(), "2025-03");
    assert_eq!(
        lines_of(&c),
        [
            // a: growth software 6000 + silver 500
            line(
                "a",
                "USD",
                "I1",
                1,
                None,
                "software",
                "collection",
                10_000,
                6_500,
                6_500,
                3_500,
                "2025-03"
            ),
            // b: initial implementation 9000 (no bonus on implementation)
            line(
                "b",
                "USD",
                "I2",
                1,
                None,
                "implementation",
                "collection",
                5_000,
                9_000,
                4_500,
                500,
                "2025-03"
            ),
            // discount line: 70 % of −1005 = −703.5 → −704 (half-even), Candlefish −301
            line(
                "b",
                "USD",
                "I2",
                2,
                None,
                "software",
                "collection",
                -1_005,
                7_000,
                -704,
                -301,
                "2025-03"
            ),
            // t terminated: mature 5000, tier none, no bonus — still paid (run-off)
            line(
                "t",
                "EUR",
                "I3",
                1,
                None,
                "software",
                "collection",
                2_000,
                5_000,
                1_000,
                1_000,
                "2025-03"
            ),
        ]
    );
    assert_eq!(names(&c.lines), LINE_COLUMNS);
    assert_eq!(
        c.lines.column("refund_id").unwrap().dtype(),
        &DataType::String
    );
    assert!(c.exceptions.height() == 0);
}

#[test]
fn r1_7_r1_8_statements_by_operator_and_currency() {
    let (inputs, _) = fixture();
    let c = close(&inputs, &PayoutHistory::empty(), "2025-03");
    assert_eq!(
        statements_of(&c),
        [
            stmt(
                "a",
                "USD",
                "growth",
                "silver",
                [10_000, 0, 0, 6_500, 3_500, 0, 0, 6_500, 0]
            ),
            stmt(
                "b",
                "USD",
                "initial",
                "bronze",
                [-1_005, 5_000, 0, 3_796, 199, 0, 0, 3_796, 0]
            ),
            stmt(
                "t",
                "EUR",
                "mature",
                "none",
                [2_000, 0, 0, 1_000, 1_000, 0, 0, 1_000, 0]
            ),
        ]
    );
    assert_eq!(names(&c.statements), STATEMENT_COLUMNS);
    // R1.8: statement date 2025-04-01, NET 30 → 2025-05-01
    let on = c.statements.column("statement_on").unwrap();
    let due = c.statements.column("due_on").unwrap();
    assert_eq!(on.dtype(), &DataType::Date);
    assert_eq!(on.get(0).unwrap().to_string(), "2025-04-01");
    assert_eq!(due.get(0).unwrap().to_string(), "2025-05-01");
}

#[test]
fn r1_8_payment_terms_come_from_the_plan() {
    let (inputs, _) = fixture();
    let mut plan = Plan::playbook();
    plan.payment_terms_days = 45;
    let c = close_payouts(&inputs, &PayoutHistory::empty(), per("2025-12"), &plan).unwrap();
    // no lines in December, no carried balance: no statements at all
    assert_eq!(c.statements.height(), 0);
    let c = close_payouts(&inputs, &PayoutHistory::empty(), per("2025-03"), &plan).unwrap();
    assert_eq!(
        c.statements
            .column("due_on")
            .unwrap()
            .get(0)
            .unwrap()
            .to_string(),
        "2025-05-16"
    );
}

#[test]
fn r1_5_terminated_operator_collects_with_tier_none_and_no_bonus() {
    let mut fx = Fx::default();
    // t would be platinum (40 customers) but was terminated on 2025-03-31: not
    // active at end of March (R6.2) → tier none, no bonus; mature base 5000.
    fx.op("t", "2022-01-01", Some("2025-03-31"))
        .customers_of("t", 40)
        .invoice(
            "T1",
            "t-extra0",
            "USD",
            "2025-03-01",
            "paid",
            Some("2025-03-31"),
            &[("software", 1_000), ("support", 300)],
        );
    let c = close(&fx.inputs(), &PayoutHistory::empty(), "2025-03");
    assert_eq!(c.tiers.height(), 0, "a terminated operator has no tier row");
    assert_eq!(
        lines_of(&c),
        [
            line(
                "t",
                "USD",
                "T1",
                1,
                None,
                "software",
                "collection",
                1_000,
                5_000,
                500,
                500,
                "2025-03"
            ),
            line(
                "t",
                "USD",
                "T1",
                2,
                None,
                "support",
                "collection",
                300,
                10_000,
                300,
                0,
                "2025-03"
            ),
        ]
    );
    assert_eq!(
        statements_of(&c),
        [stmt(
            "t",
            "USD",
            "mature",
            "none",
            [1_000, 0, 300, 800, 500, 0, 0, 800, 0]
        )]
    );
}

/// One operator per (joined_on, customers), each with a 10000 software invoice
/// paid in March 2025; returns the software bp of each, in operator order.
fn software_bp(ops: &[(&str, &str, usize, Option<&str>)], plan: &Plan) -> Vec<i64> {
    let mut fx = Fx::default();
    for (id, joined, n, churned) in ops {
        fx.op(id, joined, None).customers_of(id, *n);
        // the invoice's customer: signed long ago, churned as given
        let cust = format!("{id}-payer");
        fx.customer(&cust, Some(id), "2020-01-01", *churned);
        fx.invoice(
            &format!("INV-{id}"),
            &cust,
            "USD",
            "2025-03-01",
            "paid",
            Some("2025-03-05"),
            &[("software", 10_000)],
        );
    }
    let c = close_payouts(&fx.inputs(), &PayoutHistory::empty(), per("2025-03"), plan).unwrap();
    ints(&c.lines, "operator_bp")
}

#[test]
fn r1_3_tenure_12_is_initial_13_is_growth() {
    // tenure(2025-03) = 12 for joined 2024-04, 13 for joined 2024-03 (bronze: +0)
    let bp = software_bp(
        &[
            ("o12", "2024-04-30", 0, None),
            ("o13", "2024-03-31", 0, None),
        ],
        &Plan::playbook(),
    );
    assert_eq!(bp, [7_000, 6_000]);
}

#[test]
fn r1_3_tenure_24_is_growth_25_is_mature() {
    let bp = software_bp(
        &[
            ("o24", "2023-04-01", 0, None),
            ("o25", "2023-03-01", 0, None),
        ],
        &Plan::playbook(),
    );
    assert_eq!(bp, [6_000, 5_000]);
}

#[test]
fn r1_4_tier_bonus_at_5_6_15_16_30_31_active_customers() {
    // each operator also has its paying customer: n + 1 active customers
    let ops = [
        ("n05", "2025-01-01", 4, None),
        ("n06", "2025-01-01", 5, None),
        ("n15", "2025-01-01", 14, None),
        ("n16", "2025-01-01", 15, None),
        ("n30", "2025-01-01", 29, None),
        ("n31", "2025-01-01", 30, None),
    ];
    assert_eq!(
        software_bp(&ops, &Plan::playbook()),
        [7_000, 7_500, 7_500, 8_000, 8_000, 8_500]
    );
}

#[test]
fn r2_1_churn_on_the_last_day_drops_a_tier_the_day_after_does_not() {
    // 5 other customers + the payer: payer churned on 03-31 → 5 active (bronze);
    // payer churned on 04-01 → 6 active (silver, +500)
    let ops = [
        ("on_day", "2025-01-01", 5, Some("2025-03-31")),
        ("day_after", "2025-01-01", 5, Some("2025-04-01")),
    ];
    // operators sort by id: day_after, on_day
    assert_eq!(software_bp(&ops, &Plan::playbook()), [7_500, 7_000]);
}

#[test]
fn r1_4_share_never_exceeds_10000() {
    let mut plan = Plan::playbook();
    plan.revenue_share.initial.software = 9_000;
    assert_eq!(
        software_bp(&[("p", "2025-01-01", 40, None)], &plan),
        [10_000]
    );
}

#[test]
fn r0_4_half_cent_ties_round_half_even() {
    let mut fx = Fx::default();
    // mature (5000 bp), bronze: shares of 1, 3, 5, −1, −3 cents are 0.5, 1.5, 2.5,
    // −0.5, −1.5 → 0, 2, 2, 0, −2
    fx.op("m", "2020-01-01", None)
        .customer("cm", Some("m"), "2020-01-01", None)
        .invoice(
            "H",
            "cm",
            "USD",
            "2025-03-01",
            "paid",
            Some("2025-03-02"),
            &[
                ("software", 1),
                ("software", 3),
                ("software", 5),
                ("software", -1),
                ("software", -3),
            ],
        );
    let c = close(&fx.inputs(), &PayoutHistory::empty(), "2025-03");
    assert_eq!(ints(&c.lines, "operator_cents"), [0, 2, 2, 0, -2]);
    assert_eq!(ints(&c.lines, "candlefish_cents"), [1, 1, 3, -1, -1]);
}

#[test]
fn r1_6_clawback_uses_the_bp_of_a_line_collected_two_periods_earlier() {
    let (inputs, _) = fixture();
    let mut fx = fixture_fx();
    // H1/1 was collected in 2025-01 by a at 9000 bp (another phase and tier than
    // a's 6500 of March); 333 of it is refunded in March.
    fx.refund("R1", "H1", 1, "2025-03-05", 333);
    let history = history_with(&[("2025-01", "a", "USD", "H1", 1, "software", 5_000, 9_000)]);
    let c = close(&fx.inputs(), &history, "2025-03");
    let claw: Vec<Line> = lines_of(&c)
        .into_iter()
        .filter(|l| l.6 == "clawback")
        .collect();
    // −333 × 0.9 = −299.7 → −300; Candlefish −33
    assert_eq!(
        claw,
        [line(
            "a",
            "USD",
            "H1",
            1,
            Some("R1"),
            "software",
            "clawback",
            -333,
            9_000,
            -300,
            -33,
            "2025-01"
        )]
    );
    assert_eq!(
        statements_of(&c)[0],
        stmt(
            "a",
            "USD",
            "growth",
            "silver",
            [10_000, 0, 0, 6_500, 3_467, -300, 0, 6_200, 0]
        )
    );
    drop(inputs);
}

#[test]
fn r7_a_held_refund_does_not_shrink_what_is_left_of_its_line() {
    // The clarified R7: a line collected at 50,000 (January) with an accepted refund
    // of 40,000 (February); a refund of 15,000 in March exceeds the 10,000 left and
    // is held; a refund of 10,000 in April is exactly what is left: accepted and
    // clawed back, so the operator keeps no share of a fully refunded line.
    let mut fx = Fx::default();
    fx.op("x", "2024-10-01", None)
        .customer("cx", Some("x"), "2024-10-01", None)
        .invoice(
            "L1",
            "cx",
            "USD",
            "2025-01-02",
            "paid",
            Some("2025-01-10"),
            &[("software", 50_000)],
        )
        .refund("F40", "L1", 1, "2025-02-10", 40_000)
        .refund("F15", "L1", 1, "2025-03-10", 15_000)
        .refund("F10", "L1", 1, "2025-04-10", 10_000);
    let closes = chain(&fx.inputs(), &["2025-01", "2025-02", "2025-03", "2025-04"]);
    let kinds = |c: &PayoutClose| strs(&c.exceptions, "kind");
    assert!(kinds(&closes[1]).is_empty());
    assert_eq!(kinds(&closes[2]), [Some("refund_exceeds_line".to_string())]);
    assert_eq!(
        strs(&closes[2].exceptions, "detail")[0].as_deref(),
        Some("refund 15000 > left 10000 (line 50000, accepted earlier refunds 40000)")
    );
    assert!(kinds(&closes[3]).is_empty(), "{:?}", kinds(&closes[3]));
    let claw: Vec<Line> = lines_of(&closes[3]);
    // x is in tenure 7 (initial, 7000 bp, bronze: no bonus): −10,000 → −7,000.
    assert_eq!(
        claw,
        [line(
            "x",
            "USD",
            "L1",
            1,
            Some("F10"),
            "software",
            "clawback",
            -10_000,
            7_000,
            -7_000,
            -3_000,
            "2025-01"
        )]
    );
    // Over the four months the operator got 35,000 − 28,000 − 7,000 = 0 of the line.
    let share: i64 = closes
        .iter()
        .flat_map(|c| ints(&c.lines, "operator_cents"))
        .sum();
    assert_eq!(share, 0);
    // February's clawback (−28,000) is carried through March; April's adds to it
    // with nothing collected to absorb either: carried out, never lost (R1.7).
    assert_eq!(ints(&closes[3].statements, "carried_in_cents"), [-28_000]);
    assert_eq!(ints(&closes[3].statements, "carried_out_cents"), [-35_000]);
}

#[test]
fn r7_refunds_of_one_line_in_one_month_are_decided_in_order() {
    // Within M: 8,000 (03-05) accepted, 3,000 (03-10) exceeds the 2,000 left and is
    // held, 2,000 (03-20) is exactly what is left: accepted.
    let mut fx = fixture_fx();
    fx.refund("A8", "I1", 1, "2025-03-05", 8_000)
        .refund("B3", "I1", 1, "2025-03-10", 3_000)
        .refund("C2", "I1", 1, "2025-03-20", 2_000);
    let c = close(&fx.inputs(), &PayoutHistory::empty(), "2025-03");
    let refunds: Vec<Option<String>> = lines_of(&c)
        .into_iter()
        .filter(|l| l.6 == "clawback")
        .map(|l| l.4)
        .collect();
    assert_eq!(refunds, [Some("A8".to_string()), Some("C2".to_string())]);
    assert_eq!(strs(&c.exceptions, "refund_id"), [Some("B3".to_string())]);
    assert_eq!(
        strs(&c.exceptions, "detail")[0].as_deref(),
        Some("refund 3000 > left 2000 (line 10000, accepted earlier refunds 8000)")
    );
}

#[test]
fn r7_duplicate_refund_holds_every_copy_and_the_close_succeeds() {
    // The same refund id twice (once conflicting): no clawback from either copy, one
    // exception per copy, and the close does not trip over payout_lines' key.
    let mut fx = fixture_fx();
    fx.refund("D1", "I1", 1, "2025-03-05", 1_000)
        .refund("D1", "I1", 1, "2025-03-05", 1_000)
        .refund("D1", "I2", 1, "2025-03-06", 500);
    let c = close(&fx.inputs(), &PayoutHistory::empty(), "2025-03");
    assert!(lines_of(&c).iter().all(|l| l.6 != "clawback"));
    let kinds = strs(&c.exceptions, "kind");
    assert_eq!(
        kinds,
        [
            Some("duplicate_refund".to_string()),
            Some("duplicate_refund".to_string())
        ]
    );
    assert_eq!(
        strs(&c.exceptions, "customer_id"),
        [Some("ca1".to_string()), Some("cb1".to_string())]
    );
}

#[test]
fn r0_2_a_huge_line_does_not_wrap_the_operator_share() {
    // 2·10¹⁸ cents at 7000 bp used to wrap to a negative share.
    let mut fx = fixture_fx();
    fx.invoice(
        "BIG",
        "cb1",
        "USD",
        "2025-03-01",
        "paid",
        Some("2025-03-02"),
        &[("software", 2_000_000_000_000_000_000)],
    );
    let c = close(&fx.inputs(), &PayoutHistory::empty(), "2025-03");
    let big = lines_of(&c).into_iter().find(|l| l.2 == "BIG").unwrap();
    assert_eq!(
        (big.9, big.10),
        (1_400_000_000_000_000_000, 600_000_000_000_000_000)
    );
}

#[test]
fn r0_2_totals_beyond_i64_fail_the_close_instead_of_wrapping() {
    // Two lines of 5·10¹⁸ for one operator: each fits in i64, their sum does not.
    let mut fx = fixture_fx();
    fx.invoice_total(
        "H1",
        "cb1",
        "USD",
        "2025-03-01",
        "paid",
        Some("2025-03-02"),
        0,
    )
    .line("H1", 1, "support", 5_000_000_000_000_000_000)
    .line("H1", 2, "support", -5_000_000_000_000_000_000)
    .invoice(
        "H2",
        "cb1",
        "USD",
        "2025-03-01",
        "paid",
        Some("2025-03-02"),
        &[("support", 5_000_000_000_000_000_000)],
    )
    .invoice(
        "H3",
        "cb1",
        "USD",
        "2025-03-01",
        "paid",
        Some("2025-03-02"),
        &[("support", 5_000_000_000_000_000_000)],
    );
    let res = close_payouts(
        &fx.inputs(),
        &PayoutHistory::empty(),
        per("2025-03"),
        &Plan::playbook(),
    );
    let err = res
        .err()
        .expect("the support gross of cb1's operator leaves i64");
    let msg = err.to_string();
    assert!(
        msg.contains("payout close 2025-03") && msg.contains("i64"),
        "{msg}"
    );
}

#[test]
fn r1_7_a_clawback_for_an_operator_gone_from_the_crm_is_still_a_statement() {
    // H9/1 was collected for `gone`, who is no longer in crm/operators; its refund in
    // March is clawed back: the statement is written with phase unknown, tier none.
    let mut fx = fixture_fx();
    fx.refund("G1", "H9", 1, "2025-03-05", 1_000);
    let history = history_with(&[("2024-11", "gone", "USD", "H9", 1, "software", 4_000, 5_000)]);
    let c = close(&fx.inputs(), &history, "2025-03");
    let gone = statements_of(&c)
        .into_iter()
        .find(|s| s.0 == "gone")
        .expect("a statement for the clawback");
    assert_eq!(
        gone,
        stmt(
            "gone",
            "USD",
            PHASE_UNKNOWN,
            "none",
            [0, 0, 0, 0, -500, -500, 0, 0, -500]
        )
    );
}

#[test]
fn r1_6_clawback_of_a_line_collected_in_the_same_period() {
    let mut fx = fixture_fx();
    fx.refund("R2", "I2", 1, "2025-03-31", 1_001);
    let c = close(&fx.inputs(), &PayoutHistory::empty(), "2025-03");
    // 9000 bp of −1001 = −900.9 → −901
    assert!(lines_of(&c).contains(&line(
        "b",
        "USD",
        "I2",
        1,
        Some("R2"),
        "implementation",
        "clawback",
        -1_001,
        9_000,
        -901,
        -100,
        "2025-03"
    )));
    // a refund dated April is not March's
    let mut fx = fixture_fx();
    fx.refund("R3", "I2", 1, "2025-04-01", 1_001);
    let c = close(&fx.inputs(), &PayoutHistory::empty(), "2025-03");
    assert!(lines_of(&c).iter().all(|l| l.6 == "collection"));
}

#[test]
fn r1_7_negative_total_is_carried_out_then_absorbed() {
    let mut fx = Fx::default();
    // z (initial, bronze): January collects 10000 software (7000 to z); March
    // refunds all of it (−7000, nothing collected) → carried out −7000; April
    // collects 5000 (3500) → still −3500; May collects 20000 (14000) → pays 10500.
    fx.op("z", "2025-01-01", None)
        .customer("cz", Some("z"), "2025-01-01", None)
        .invoice(
            "J",
            "cz",
            "USD",
            "2025-01-02",
            "paid",
            Some("2025-01-03"),
            &[("software", 10_000)],
        )
        .refund("RJ", "J", 1, "2025-03-10", 10_000)
        .invoice(
            "A",
            "cz",
            "USD",
            "2025-04-02",
            "paid",
            Some("2025-04-03"),
            &[("software", 5_000)],
        )
        .invoice(
            "M",
            "cz",
            "USD",
            "2025-05-02",
            "paid",
            Some("2025-05-03"),
            &[("software", 20_000)],
        );
    let closes = chain(
        &fx.inputs(),
        &["2025-01", "2025-02", "2025-03", "2025-04", "2025-05"],
    );
    let s: Vec<Vec<Stmt>> = closes.iter().map(statements_of).collect();
    assert_eq!(
        s[0],
        [stmt(
            "z",
            "USD",
            "initial",
            "bronze",
            [10_000, 0, 0, 7_000, 3_000, 0, 0, 7_000, 0]
        )]
    );
    assert!(
        s[1].is_empty(),
        "nothing happened in February and nothing was carried"
    );
    assert_eq!(
        s[2],
        [stmt(
            "z",
            "USD",
            "initial",
            "bronze",
            [0, 0, 0, 0, -3_000, -7_000, 0, 0, -7_000]
        )]
    );
    assert_eq!(
        s[3],
        [stmt(
            "z",
            "USD",
            "initial",
            "bronze",
            [5_000, 0, 0, 3_500, 1_500, 0, -7_000, 0, -3_500]
        )]
    );
    assert_eq!(
        s[4],
        [stmt(
            "z",
            "USD",
            "initial",
            "bronze",
            [20_000, 0, 0, 14_000, 6_000, 0, -3_500, 10_500, 0]
        )]
    );
}

#[test]
fn r1_7_a_carried_balance_alone_makes_a_statement() {
    let (inputs, _) = fixture();
    let mut history = PayoutHistory::empty();
    history.carried_in = df!(
        "operator_id" => ["a", "b", "b"],
        "currency" => ["GBP", "CHF", "USD"],
        "carried_in_cents" => [-250i64, 0, -4_000],
    )
    .unwrap()
    .lazy();
    let c = close(&inputs, &history, "2025-03");
    let s = statements_of(&c);
    // b/CHF carried 0: no statement; a/GBP only a balance: a statement carrying it on
    assert_eq!(s.len(), 4);
    assert_eq!(
        s[0],
        stmt(
            "a",
            "GBP",
            "growth",
            "silver",
            [0, 0, 0, 0, 0, 0, -250, 0, -250]
        )
    );
    assert_eq!(
        s[2],
        stmt(
            "b",
            "USD",
            "initial",
            "bronze",
            [-1_005, 5_000, 0, 3_796, 199, 0, -4_000, 0, -204]
        )
    );
}

#[test]
fn r1_7_two_currencies_for_one_operator_make_two_statements() {
    let mut fx = fixture_fx();
    fx.customer("ca-eu", Some("a"), "2024-06-01", None).invoice(
        "E1",
        "ca-eu",
        "EUR",
        "2025-03-01",
        "paid",
        Some("2025-03-02"),
        &[("support", 1_234)],
    );
    let c = close(&fx.inputs(), &PayoutHistory::empty(), "2025-03");
    let s = statements_of(&c);
    assert_eq!(
        s[0],
        stmt(
            "a",
            "EUR",
            "growth",
            "silver",
            [0, 0, 1_234, 1_234, 0, 0, 0, 1_234, 0]
        )
    );
    assert_eq!(
        s[1],
        stmt(
            "a",
            "USD",
            "growth",
            "silver",
            [10_000, 0, 0, 6_500, 3_500, 0, 0, 6_500, 0]
        )
    );
    assert_eq!(
        strs(&c.control, "currency"),
        [Some("EUR".into()), Some("USD".into())]
    );
}

#[test]
fn r7_each_exception_kind_holds_its_rows_and_the_rest_is_paid() {
    let mut fx = fixture_fx();
    fx.customer("cn", None, "2024-01-01", None)
        .customer("cg", Some("ghost"), "2024-01-01", None)
        .invoice_total(
            "X1",
            "ca1",
            "USD",
            "2025-03-01",
            "paid",
            Some("2025-03-11"),
            10_000,
        )
        .line("X1", 1, "software", 9_500)
        .invoice(
            "X2",
            "nobody",
            "USD",
            "2025-03-01",
            "paid",
            Some("2025-03-11"),
            &[("software", 100)],
        )
        .invoice(
            "X3",
            "cn",
            "USD",
            "2025-03-01",
            "paid",
            Some("2025-03-11"),
            &[("software", 100)],
        )
        .invoice(
            "X4",
            "cg",
            "USD",
            "2025-03-01",
            "paid",
            Some("2025-03-11"),
            &[("software", 100)],
        )
        .invoice(
            "X5",
            "ca1",
            "USD",
            "2025-03-01",
            "paid",
            Some("2025-03-12"),
            &[("support", 100)],
        )
        .invoice_total(
            "X5",
            "ca1",
            "USD",
            "2025-03-01",
            "paid",
            Some("2025-03-12"),
            100,
        )
        .invoice_total(
            "X6",
            "ca1",
            "USD",
            "2025-03-01",
            "paid",
            Some("2025-03-12"),
            200,
        )
        .line("X6", 1, "support", 100)
        .line("X6", 1, "support", 100)
        .invoice(
            "X7",
            "ca1",
            "USD",
            "2025-03-20",
            "paid",
            Some("2025-03-10"),
            &[("support", 100)],
        )
        .invoice(
            "X8",
            "ca1",
            "USD",
            "2025-03-02",
            "paid",
            None,
            &[("support", 100)],
        )
        // February's problems are February's exceptions
        .invoice(
            "X9",
            "ca1",
            "USD",
            "2025-02-02",
            "paid",
            None,
            &[("support", 100)],
        )
        .invoice_total(
            "XA",
            "nobody",
            "USD",
            "2025-02-01",
            "paid",
            Some("2025-02-11"),
            1,
        )
        .refund("RF1", "I1", 1, "2025-03-25", 11_000)
        .refund("RF2", "X1", 1, "2025-03-25", 10)
        .refund("RF3", "NOPE", 1, "2025-03-25", 10)
        .refund("RF4", "I2", 1, "2025-03-25", 500);
    let c = close(&fx.inputs(), &PayoutHistory::empty(), "2025-03");
    let e = &c.exceptions;
    let got: Vec<(String, String, Option<i64>, Option<String>)> = (0..e.height())
        .map(|i| {
            (
                strs(e, "kind")[i].clone().unwrap(),
                strs(e, "invoice_id")[i].clone().unwrap(),
                e.column("line_no").unwrap().i64().unwrap().get(i),
                strs(e, "refund_id")[i].clone(),
            )
        })
        .collect();
    let row = |k: &str, inv: &str, l: Option<i64>, r: Option<&str>| {
        (k.to_string(), inv.to_string(), l, r.map(str::to_string))
    };
    assert_eq!(
        got,
        [
            row("refund_exceeds_line", "I1", Some(1), Some("RF1")),
            row("refund_of_uncollected_line", "NOPE", Some(1), Some("RF3")),
            row("total_mismatch", "X1", None, None),
            row("refund_of_uncollected_line", "X1", Some(1), Some("RF2")),
            row("unknown_customer", "X2", None, None),
            row("customer_without_operator", "X3", None, None),
            row("customer_without_operator", "X4", None, None),
            row("duplicate_invoice", "X5", None, None),
            row("duplicate_line", "X6", Some(1), None),
            row("paid_before_issued", "X7", None, None),
            row("paid_without_date", "X8", None, None),
        ]
    );
    assert!(
        strs(e, "period")
            .iter()
            .all(|p| p.as_deref() == Some("2025-03"))
    );
    let details = strs(e, "detail");
    assert_eq!(
        details[0].as_deref(),
        Some("refund 11000 > left 10000 (line 10000, accepted earlier refunds 0)")
    );
    assert_eq!(
        details[1].as_deref(),
        Some("refund 10 of line 1, which was never paid out (no collection payout line)")
    );
    assert_eq!(details[2].as_deref(), Some("total 10000 ≠ lines 9500"));
    assert_eq!(
        details[9].as_deref(),
        Some("paid on 2025-03-10 before issued on 2025-03-20")
    );
    assert_eq!(
        details[6].as_deref(),
        Some("customer cg has operator ghost, unknown to crm/operators")
    );
    assert_eq!(strs(e, "customer_id")[4].as_deref(), Some("nobody"));
    // held rows are out; the fixture's lines and the good refund are paid
    let paid: Vec<(String, String, Option<String>)> =
        lines_of(&c).into_iter().map(|l| (l.2, l.6, l.4)).collect();
    assert_eq!(
        paid,
        [
            ("I1".into(), "collection".into(), None),
            ("I2".into(), "clawback".into(), Some("RF4".into())),
            ("I2".into(), "collection".into(), None),
            ("I2".into(), "collection".into(), None),
            ("I3".into(), "collection".into(), None),
        ]
    );
    check_control_totals(&c).unwrap();
}

#[test]
fn r7_exceptions_belong_to_their_own_month() {
    let mut fx = fixture_fx();
    fx.invoice(
        "X9",
        "ca1",
        "USD",
        "2025-02-02",
        "paid",
        None,
        &[("support", 100)],
    )
    .invoice_total(
        "XA",
        "nobody",
        "USD",
        "2025-02-01",
        "paid",
        Some("2025-02-11"),
        1,
    )
    // two copies, one paid in February, one in March: one row in each month
    .invoice_total(
        "XD",
        "ca1",
        "USD",
        "2025-02-01",
        "paid",
        Some("2025-02-11"),
        0,
    )
    .invoice_total(
        "XD",
        "ca1",
        "USD",
        "2025-02-01",
        "paid",
        Some("2025-03-11"),
        0,
    );
    let feb = close(&fx.inputs(), &PayoutHistory::empty(), "2025-02");
    let kinds: Vec<_> = strs(&feb.exceptions, "kind")
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(
        kinds,
        [
            "paid_without_date",
            "total_mismatch",
            "unknown_customer",
            "duplicate_invoice"
        ]
    );
    let mar = close(&fx.inputs(), &PayoutHistory::empty(), "2025-03");
    let kinds: Vec<_> = strs(&mar.exceptions, "kind")
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(kinds, ["duplicate_invoice"]);
}

#[test]
fn r1_10_control_totals_pass_and_a_doctored_close_fails() {
    let mut fx = fixture_fx();
    fx.refund("R2", "I2", 1, "2025-03-31", 1_001);
    let c = close(&fx.inputs(), &PayoutHistory::empty(), "2025-03");
    check_control_totals(&c).unwrap();
    let ctl = &c.control;
    assert_eq!(names(ctl), CONTROL_COLUMNS);
    // EUR: 2000 collected; USD: 10000 + 5000 − 1005 = 13995 collected, 1001 refunded
    assert_eq!(ints(ctl, "collected_cents"), [2_000, 13_995]);
    assert_eq!(ints(ctl, "refunds_cents"), [0, 1_001]);
    assert_eq!(ints(ctl, "statements_total_cents"), [2_000, 12_994]);
    assert_eq!(ints(ctl, "lines_total_cents"), [2_000, 12_994]);

    // a statement that pays the operator one cent more
    let doctored = c
        .statements
        .clone()
        .lazy()
        .with_column(
            when(col("operator_id").eq(lit("a")))
                .then(col("operator_share_cents") + lit(1i64))
                .otherwise(col("operator_share_cents"))
                .alias("operator_share_cents"),
        )
        .collect()
        .unwrap();
    let bad = PayoutClose {
        statements: doctored,
        ..c
    };
    let err = check_control_totals(&bad).unwrap_err();
    match &err {
        PayoutError::ControlTotals { currency, detail } => {
            assert_eq!(currency, "USD");
            assert!(
                detail.contains("12995") && detail.contains("12994"),
                "{detail}"
            );
        }
        other => panic!("unexpected {other}"),
    }

    // a line that does not split exactly
    let c = close(&fx.inputs(), &PayoutHistory::empty(), "2025-03");
    let mut lines = c.lines.clone();
    let cf: Vec<i64> = ints(&lines, "candlefish_cents")
        .iter()
        .map(|v| v + 1)
        .collect();
    lines
        .with_column(Column::new("candlefish_cents".into(), cf))
        .unwrap();
    let bad = PayoutClose { lines, ..c };
    assert!(matches!(
        check_control_totals(&bad),
        Err(PayoutError::ControlTotals { .. })
    ));

    // a control frame that does not match the lines
    let c = close(&fx.inputs(), &PayoutHistory::empty(), "2025-03");
    let control = c
        .control
        .clone()
        .lazy()
        .with_column(col("refunds_cents") * lit(2i64))
        .collect()
        .unwrap();
    let bad = PayoutClose { control, ..c };
    assert!(matches!(
        check_control_totals(&bad),
        Err(PayoutError::ControlTotals { .. })
    ));
}

#[test]
fn outputs_are_deterministic() {
    let mut fx = fixture_fx();
    fx.refund("R2", "I2", 1, "2025-03-31", 1_001)
        .refund("R9", "NOPE", 2, "2025-03-30", 5);
    let a = close(&fx.inputs(), &PayoutHistory::empty(), "2025-03");
    let b = close(&fx.inputs(), &PayoutHistory::empty(), "2025-03");
    for (x, y) in [
        (&a.lines, &b.lines),
        (&a.statements, &b.statements),
        (&a.exceptions, &b.exceptions),
        (&a.tiers, &b.tiers),
        (&a.control, &b.control),
    ] {
        assert!(x.equals_missing(y));
    }
}

#[test]
fn r1_1_re_run_ignores_history_lines_of_the_same_period() {
    // a history that already holds March's own lines (a re-run) must not turn a
    // March refund into a clawback at a stale bp or double anything
    let mut fx = fixture_fx();
    fx.refund("R2", "I2", 1, "2025-03-31", 1_000);
    let history = history_with(&[("2025-03", "b", "USD", "I2", 1, "implementation", 5_000, 1)]);
    let c = close(&fx.inputs(), &history, "2025-03");
    assert!(lines_of(&c).contains(&line(
        "b",
        "USD",
        "I2",
        1,
        Some("R2"),
        "implementation",
        "clawback",
        -1_000,
        9_000,
        -900,
        -100,
        "2025-03"
    )));
}

fn arb_amount() -> impl Strategy<Value = i64> {
    prop_oneof![1 => -50_000i64..0, 4 => 0i64..2_000_000]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn r0_4_r1_10_lines_split_exactly_and_statements_sum_to_lines(
        ops in proptest::collection::vec((0i32..40, 0usize..35, any::<bool>()), 1..4),
        invoices in proptest::collection::vec((0usize..4, any::<bool>(), proptest::collection::vec((0usize..3, arb_amount()), 1..4)), 0..8),
        prior in proptest::collection::vec((0usize..4, any::<bool>(), 1i64..1_000_000, 0i64..=10_000, 0u32..=100), 0..6),
    ) {
        let m = per("2025-06");
        let types = ["software", "implementation", "support"];
        let curs = ["USD", "EUR"];
        let mut fx = Fx::default();
        for (k, (age, n, terminated)) in ops.iter().enumerate() {
            let id = format!("o{k}");
            let joined = m.add_months(-age).first_day().to_string();
            fx.op(&id, &joined, terminated.then_some("2025-06-15")).customers_of(&id, *n);
        }
        for (k, (o, eur, lines)) in invoices.iter().enumerate() {
            let op = format!("o{}", o % ops.len());
            let lines: Vec<(&str, i64)> = lines.iter().map(|(t, a)| (types[*t], *a)).collect();
            fx.customer(&format!("c{k}"), Some(&op), "2020-01-01", None);
            fx.invoice(&format!("I{k}"), &format!("c{k}"), curs[*eur as usize], "2025-06-01", "paid", Some("2025-06-09"), &lines);
        }
        let mut hist = Vec::new();
        for (k, (o, eur, amount, bp, pct)) in prior.iter().enumerate() {
            let inv = format!("P{k}");
            hist.push(("2025-04".to_string(), format!("o{}", o % ops.len()), curs[*eur as usize], inv.clone(), *amount, *bp));
            fx.refund(&format!("R{k}"), &inv, 1, "2025-06-20", amount * i64::from(*pct) / 100);
        }
        let rows: Vec<_> = hist.iter().map(|h| (h.0.as_str(), h.1.as_str(), h.2, h.3.as_str(), 1i64, "software", h.4, h.5)).collect();
        let c = close_payouts(&fx.inputs(), &history_with(&rows), m, &Plan::playbook()).unwrap();
        prop_assert!(c.exceptions.height() == 0);
        let (amt, opc, cfc) = (ints(&c.lines, "amount_cents"), ints(&c.lines, "operator_cents"), ints(&c.lines, "candlefish_cents"));
        for i in 0..amt.len() {
            prop_assert_eq!(opc[i] + cfc[i], amt[i]);
        }
        for cur in curs {
            let lines_total: i64 = (0..amt.len()).filter(|&i| strs(&c.lines, "currency")[i].as_deref() == Some(cur)).map(|i| amt[i]).sum();
            let s = &c.statements;
            let sc = strs(s, "currency");
            let (o, cl, cf) = (ints(s, "operator_share_cents"), ints(s, "clawback_cents"), ints(s, "candlefish_share_cents"));
            let stmt_total: i64 = (0..s.height()).filter(|&i| sc[i].as_deref() == Some(cur)).map(|i| o[i] + cl[i] + cf[i]).sum();
            prop_assert_eq!(stmt_total, lines_total);
        }
        prop_assert_eq!(c.lines.height(), invoices.iter().map(|i| i.2.len()).sum::<usize>() + prior.len());
    }

    #[test]
    fn r1_7_carry_forward_never_loses_a_cent(
        periods in proptest::collection::vec(proptest::collection::vec((1i64..50_000, proptest::option::of((1i32..3, 0i64..=100))), 0..3), 2..6),
    ) {
        let mut fx = Fx::default();
        fx.op("z", "2024-11-01", None).customer("cz", Some("z"), "2020-01-01", None);
        let start = per("2025-01");
        let names: Vec<String> = (0..periods.len()).map(|k| start.add_months(k as i32).to_string()).collect();
        for (k, lines) in periods.iter().enumerate() {
            let p = start.add_months(k as i32);
            let inv = format!("V{k}");
            let typed: Vec<(&str, i64)> = lines.iter().map(|l| ("software", l.0)).collect();
            fx.invoice(&inv, "cz", "USD", &p.first_day().to_string(), "paid", Some(&p.first_day().to_string()), &typed);
            for (n, (amount, refund)) in lines.iter().enumerate() {
                if let Some((delay, pct)) = refund {
                    let on = p.add_months(*delay).last_day().to_string();
                    fx.refund(&format!("R{k}-{n}"), &inv, n as i64 + 1, &on, amount * pct / 100);
                }
            }
        }
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let closes = chain(&fx.inputs(), &refs);
        let (mut earned, mut paid, mut last_out) = (0i64, 0i64, 0i64);
        for c in &closes {
            prop_assert!(c.exceptions.height() == 0);
            let s = &c.statements;
            let (o, cl, pay, out) = (ints(s, "operator_share_cents"), ints(s, "clawback_cents"), ints(s, "payable_cents"), ints(s, "carried_out_cents"));
            earned += o.iter().sum::<i64>() + cl.iter().sum::<i64>();
            paid += pay.iter().sum::<i64>();
            prop_assert!(pay.iter().all(|v| *v >= 0) && out.iter().all(|v| *v <= 0));
            last_out = out.iter().sum();
        }
        prop_assert_eq!(paid + last_out, earned);
    }
}
