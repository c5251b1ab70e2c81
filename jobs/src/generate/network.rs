//! The simulated network: its shape parameters, the random streams every draw comes
//! from, the compact in-memory rows (ids are numbers, formatted only when written)
//! and the order in which the phases fill them. The phases themselves are in
//! [`super::crm`], [`super::billing`], [`super::survey`] and [`super::anomalies`].

use std::ops::Range;

use anyhow::{Result, ensure};
use chrono::{Duration, NaiveDate, NaiveDateTime};
use opnet_pipelines::Period;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::GenerateOptions;
use super::anomalies::Anomaly;

// ---------------------------------------------------------------------------------
// Shape parameters (why these numbers: see the brief in each comment)
// ---------------------------------------------------------------------------------

/// Operators that were already in the network before the window joined up to this
/// many months before it, so tenure phases and R4.3/R5.5 cohorts have history.
pub(super) const PRE_WINDOW_MONTHS: i32 = 24;
/// Share of operators that joined before the window.
pub(super) const PRE_WINDOW_SHARE: f64 = 0.3;
/// Chance an operator is terminated at some point (only those dated by the end of the
/// window show up, which leaves ~5–10 % terminated).
pub(super) const TERMINATION_CHANCE: f64 = 0.1;
/// Monthly chance that an operator still in the network leaves it during the window,
/// once past [`CHURN_GRACE_MONTHS`] of tenure, by class (strong, normal, weak): a few
/// operators leave in any run of a year or more, so retention (R5.5) and "operators
/// lost" move, and the weak leave more often than the strong.
pub(super) const CHURN_PER_MONTH: [f64; 3] = [0.002, 0.005, 0.012];
/// Months after joining during which an operator does not leave (onboarding).
pub(super) const CHURN_GRACE_MONTHS: i32 = 6;
/// Share of territories that have an exclusive operator.
pub(super) const EXCLUSIVE_CHANCE: f64 = 0.5;
/// Customers whose CRM record lost its operator (R7 `customer_without_operator`).
pub(super) const ORPHAN_CUSTOMER_CHANCE: f64 = 0.005;
pub(super) const ANNUAL_BILLING_CHANCE: f64 = 0.15;
pub(super) const SUPPORT_PLAN_CHANCE: f64 = 0.35;
pub(super) const DISCOUNT_CHANCE: f64 = 0.04;
pub(super) const VOID_CHANCE: f64 = 0.008;
/// Invoices never paid: uncollectible once older than 60 days, open before.
pub(super) const UNPAID_CHANCE: f64 = 0.022;
pub(super) const REFUND_CHANCE: f64 = 0.01;
pub(super) const UNASSIGNED_LEAD_CHANCE: f64 = 0.15;
pub(super) const CONVERTED_LEAD_CHANCE: f64 = 0.7;
/// Leads created in the last this many days of the data (the second half of its last
/// month) are not assigned upstream: they wait for opnet's lead distribution (R8.3),
/// so the demo and the benchmarks have fresh leads to assign.
pub(super) const NEWEST_UNASSIGNED_DAYS: i64 = 14;
/// Share of `source = referral` leads referred by an operator of the network (R8.1
/// `community_contribution`); the others came from customers or acquaintances and
/// name nobody. 0.4 spreads an operator's referrals over a year around the plan's
/// target of 4, rather than clamping nearly everyone at 100.
pub(super) const REFERRED_BY_OPERATOR_CHANCE: f64 = 0.4;
pub(super) const SURVEY_CHANCE: f64 = 0.15;
/// Bad rows per kind: one per this many invoices (≈0.05 % of all rows), at least one
/// when there are at least [`MIN_ROWS_FOR_ANOMALIES`] invoices.
pub(super) const ANOMALY_EVERY: usize = 10_000;
pub(super) const MIN_ROWS_FOR_ANOMALIES: usize = 100;

/// ChaCha stream ids: each phase and each operator draws from its own stream, so
/// the order in which phases run never shifts another phase's numbers.
pub(super) const STREAM_NETWORK: u64 = 0;
pub(super) const STREAM_BILLING: u64 = 1;
pub(super) const STREAM_ANOMALIES: u64 = 2;
pub(super) const STREAM_CHURN: u64 = 3;
pub(super) const STREAM_REFERRALS: u64 = 4;
pub(super) const STREAM_OPERATOR_BASE: u64 = 1 << 16;
pub(super) const OP_CUSTOMERS: u64 = 0;
pub(super) const OP_LEADS: u64 = 1;
pub(super) const OP_TRAINING: u64 = 2;
pub(super) const OP_SURVEYS: u64 = 3;

pub(super) fn rng_for(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

pub(super) fn operator_rng(seed: u64, operator: usize, phase: u64) -> ChaCha8Rng {
    rng_for(seed, STREAM_OPERATOR_BASE + operator as u64 * 8 + phase)
}

pub(super) struct Operator {
    pub(super) name: String,
    pub(super) metro: usize,
    pub(super) verticals: Vec<usize>,
    pub(super) joined_on: NaiveDate,
    pub(super) terminated_on: Option<NaiveDate>,
    /// Expected new customers a month once ramped up (strong ≈2, weak ≈0.3).
    pub(super) signing_rate: f64,
    /// 0..1: drives satisfaction, response time, implementation speed, training.
    pub(super) quality: f64,
}

pub(super) struct Territory {
    pub(super) metro: usize,
    pub(super) exclusive: Option<(usize, NaiveDate)>,
}

pub(super) struct Customer {
    pub(super) operator: usize,
    /// False for the few customers whose CRM record has lost its operator.
    pub(super) has_operator: bool,
    pub(super) name: String,
    pub(super) vertical: usize,
    pub(super) signed_on: NaiveDate,
    /// Planned go-live; published only once it is on or before the as-of date.
    pub(super) go_live_plan: NaiveDate,
    pub(super) churned_on: Option<NaiveDate>,
    pub(super) annual: bool,
    pub(super) software_cents: i64,
    pub(super) implementation_cents: i64,
    pub(super) support_cents: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Status {
    Open,
    Paid,
    Void,
    Uncollectible,
}

impl Status {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Paid => "paid",
            Status::Void => "void",
            Status::Uncollectible => "uncollectible",
        }
    }
}

pub(super) struct Invoice {
    pub(super) no: u32,
    /// 1-based customer number; above the customer count for an unknown customer.
    pub(super) customer_no: u32,
    pub(super) currency: &'static str,
    pub(super) issued_on: NaiveDate,
    pub(super) status: Status,
    pub(super) paid_on: Option<NaiveDate>,
    pub(super) total_cents: i64,
    /// Its lines in `Network::lines`.
    pub(super) lines: Range<usize>,
    /// How many times the row is written (2 for a duplicated invoice id).
    pub(super) copies: u8,
}

pub(super) struct Line {
    pub(super) invoice_no: u32,
    pub(super) line_no: i64,
    pub(super) revenue_type: &'static str,
    pub(super) amount_cents: i64,
    pub(super) service_start: NaiveDate,
    pub(super) service_end: NaiveDate,
    pub(super) copies: u8,
}

pub(super) struct Refund {
    pub(super) invoice_no: u32,
    pub(super) line_no: i64,
    pub(super) refunded_on: NaiveDate,
    pub(super) amount_cents: i64,
}

pub(super) struct Lead {
    pub(super) source: &'static str,
    pub(super) vertical: usize,
    pub(super) metro: usize,
    pub(super) created_at: NaiveDateTime,
    pub(super) assigned: Option<usize>,
    pub(super) first_contact_at: Option<NaiveDateTime>,
    pub(super) converted_customer_no: Option<u32>,
    /// The operator that referred a `referral` lead (R8.1), if one did.
    pub(super) referred_by: Option<usize>,
}

pub(super) struct TrainingRow {
    pub(super) operator: usize,
    pub(super) module: usize,
    pub(super) completed_on: Option<NaiveDate>,
}

pub(super) struct Survey {
    pub(super) customer_no: u32,
    pub(super) operator: usize,
    pub(super) submitted_on: NaiveDate,
    pub(super) nps: Option<i64>,
    pub(super) csat: Option<i64>,
}

pub(super) struct Network {
    pub(super) seed: u64,
    pub(super) first: Period,
    pub(super) last: Period,
    /// The extract date: the last day of the window. Nothing happens after it.
    pub(super) as_of: NaiveDate,
    pub(super) operators: Vec<Operator>,
    pub(super) territories: Vec<Territory>,
    /// Sorted by signing date: the customer number is the index + 1.
    pub(super) customers: Vec<Customer>,
    pub(super) customers_by_operator: Vec<Vec<usize>>,
    pub(super) invoices: Vec<Invoice>,
    pub(super) lines: Vec<Line>,
    pub(super) refunds: Vec<Refund>,
    pub(super) leads: Vec<Lead>,
    pub(super) training: Vec<TrainingRow>,
    pub(super) surveys: Vec<Survey>,
    pub(super) anomalies: Vec<Anomaly>,
}

pub(super) fn days(n: i64) -> Duration {
    Duration::days(n)
}

/// A uniformly random day in `lo..=hi` (`lo` when the range is empty).
pub(super) fn day_in(rng: &mut ChaCha8Rng, lo: NaiveDate, hi: NaiveDate) -> NaiveDate {
    let span = (hi - lo).num_days();
    if span <= 0 {
        lo
    } else {
        lo + days(rng.random_range(0..=span))
    }
}

pub(super) fn pick_weighted(
    rng: &mut ChaCha8Rng,
    weights: impl Iterator<Item = u32> + Clone,
) -> usize {
    let total: u32 = weights.clone().sum();
    let mut x = rng.random_range(0..total.max(1));
    for (i, w) in weights.enumerate() {
        if x < w {
            return i;
        }
        x -= w;
    }
    0
}

pub(super) fn pick<T: Copy>(rng: &mut ChaCha8Rng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

impl Network {
    pub(super) fn simulate(opts: &GenerateOptions) -> Result<Self> {
        ensure!(
            opts.operators > 0,
            "the network needs at least one operator"
        );
        ensure!(opts.operators < 100_000, "at most 99,999 operators");
        ensure!((1..=600).contains(&opts.months), "months must be 1..=600");
        let first = opts.end.add_months(1 - opts.months as i32);
        ensure!(
            first.add_months(-PRE_WINDOW_MONTHS).year() >= 1,
            "the window starts too early"
        );
        let mut net = Network {
            seed: opts.seed,
            first,
            last: opts.end,
            as_of: opts.end.last_day(),
            operators: Vec::new(),
            territories: Vec::new(),
            customers: Vec::new(),
            customers_by_operator: Vec::new(),
            invoices: Vec::new(),
            lines: Vec::new(),
            refunds: Vec::new(),
            leads: Vec::new(),
            training: Vec::new(),
            surveys: Vec::new(),
            anomalies: Vec::new(),
        };
        let mut rng = rng_for(opts.seed, STREAM_NETWORK);
        net.simulate_operators(&mut rng, opts.operators);
        net.simulate_churn();
        net.simulate_territories(&mut rng);
        net.simulate_customers();
        net.simulate_billing();
        net.simulate_leads();
        net.simulate_referrals();
        net.simulate_training();
        net.simulate_surveys();
        net.sprinkle_anomalies();
        Ok(net)
    }

    pub(super) fn window(&self) -> impl Iterator<Item = Period> {
        self.first.through(self.last)
    }
}
