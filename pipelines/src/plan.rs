//! R0.5 — the compensation plan: shares, tiers, thresholds and targets, versioned by
//! `effective_from`.
//!
//! Every number of rules.md is a default of the plan, never a constant in a pipeline:
//! pipelines receive a [`Plan`] as a parameter. A plan file holds one or more
//! `[[version]]` tables; any key a version leaves out takes the Playbook's value, so
//! finance writes only what changes. Loading the file is the binary's job (IO); this
//! module only parses, validates and selects.

use crate::period::Period;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Operator share in basis points per revenue type (R1.3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypeShares {
    pub software: i64,
    pub implementation: i64,
    pub support: i64,
}

/// R1.2–R1.3: phases by tenure month and the base operator share in each.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RevenueShare {
    /// Last tenure month of the `initial` phase (R1.2: 12).
    pub initial_through_month: i64,
    /// Last tenure month of the `growth` phase (R1.2: 24); `mature` after it.
    pub growth_through_month: i64,
    pub initial: TypeShares,
    pub growth: TypeShares,
    pub mature: TypeShares,
}

impl Default for RevenueShare {
    fn default() -> Self {
        Self {
            initial_through_month: 12,
            growth_through_month: 24,
            initial: TypeShares {
                software: 7000,
                implementation: 9000,
                support: 10000,
            },
            growth: TypeShares {
                software: 6000,
                implementation: 8500,
                support: 10000,
            },
            mature: TypeShares {
                software: 5000,
                implementation: 8000,
                support: 10000,
            },
        }
    }
}

/// Per-tier values (R1.4 bonus points, R2.3 benefits).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerTier<T> {
    pub bronze: T,
    pub silver: T,
    pub gold: T,
    pub platinum: T,
}

/// R1.4 and R2.2–R2.3: tier thresholds (minimum active customers), software bonus and
/// benefits named in promotion/demotion emails.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tiers {
    /// Minimum active customers at end of M for each tier (R2.2: 1, 6, 16, 31).
    pub min_active_customers: PerTier<i64>,
    /// Points added to the software share (R1.4: 0, 500, 1000, 1500).
    pub software_bonus_bp: PerTier<i64>,
    /// The benefits named in a tier-change email (R2.3).
    pub benefits: PerTier<String>,
}

impl Default for Tiers {
    fn default() -> Self {
        Self {
            min_active_customers: PerTier {
                bronze: 1,
                silver: 6,
                gold: 16,
                platinum: 31,
            },
            software_bonus_bp: PerTier {
                bronze: 0,
                silver: 500,
                gold: 1000,
                platinum: 1500,
            },
            benefits: PerTier {
                bronze: "standard support".into(),
                silver: "priority support and lead sharing".into(),
                gold: "territory protection and co-marketing".into(),
                platinum: "equity participation and advisory role".into(),
            },
        }
    }
}

/// R3 — territory exclusivity criteria.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Exclusivity {
    /// R3.1 minimum MRR in minor units of the territory's currency (default $10,000).
    pub min_mrr_cents: i64,
    /// R3.1 per-currency overrides of `min_mrr_cents`, e.g. `{ EUR = 900000 }`.
    pub min_mrr_cents_by_currency: BTreeMap<String, i64>,
    /// R3.2 minimum active customers at end of M.
    pub min_active_customers: i64,
    /// R3.3 minimum quarter-over-quarter growth in basis points (2000 = 20 %).
    pub min_qoq_growth_bp: i64,
    /// R3.3 growth is checked only in the first N months of exclusivity.
    pub growth_check_months: i64,
    /// R3.4 the CSAT share must be above this (basis points; 9000 = 0.90).
    pub min_csat_share_bp: i64,
    /// R3.4 a response counts as satisfied at this CSAT score or above.
    pub satisfied_csat_score: i64,
    /// R3.5 escalate when consecutive breaches reach this.
    pub escalate_after: i64,
}

impl Default for Exclusivity {
    fn default() -> Self {
        Self {
            min_mrr_cents: 1_000_000,
            min_mrr_cents_by_currency: BTreeMap::new(),
            min_active_customers: 15,
            min_qoq_growth_bp: 2000,
            growth_check_months: 12,
            min_csat_share_bp: 9000,
            satisfied_csat_score: 4,
            escalate_after: 3,
        }
    }
}

impl Exclusivity {
    /// R3.1 threshold in the territory's currency.
    pub fn min_mrr_for(&self, currency: &str) -> i64 {
        *self
            .min_mrr_cents_by_currency
            .get(currency)
            .unwrap_or(&self.min_mrr_cents)
    }
}

/// R4 — action thresholds of the Playbook's quality table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// R4.1 alert when acquisitions are below this in both M and M−1.
    pub customer_acquisition_min: f64,
    /// R4.2 alert above this many days.
    pub implementation_days_max: f64,
    /// R4.3 alert below this share.
    pub customer_retention_min: f64,
    /// R4.4 alert below this NPS.
    pub nps_min: f64,
    /// R4.5 alert above this many hours.
    pub response_hours_max: f64,
    /// R4.6 alert below this share.
    pub training_completion_min: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            customer_acquisition_min: 1.0,
            implementation_days_max: 28.0,
            customer_retention_min: 0.80,
            nps_min: 30.0,
            response_hours_max: 24.0,
            training_completion_min: 0.80,
        }
    }
}

/// R5 — network-health targets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkTargets {
    pub active_operators_min: i64,
    pub active_operators_max: i64,
    /// Currency the money targets apply to (R5: USD).
    pub target_currency: String,
    pub mrr_per_operator_min_cents: i64,
    pub operator_retention_min: f64,
    pub vertical_specialists_min: i64,
    /// R5.2 target metros; empty means "the metros of crm/territories".
    pub target_metros: Vec<String>,
}

impl Default for NetworkTargets {
    fn default() -> Self {
        Self {
            active_operators_min: 50,
            active_operators_max: 100,
            target_currency: "USD".into(),
            mrr_per_operator_min_cents: 1_500_000,
            operator_retention_min: 0.85,
            vertical_specialists_min: 2,
            target_metros: Vec::new(),
        }
    }
}

/// R8.1 — one scorecard component: its weight in the total and the value that
/// scores 100 (the score is `100 × value / target`, clamped to 0–100).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    pub weight: f64,
    pub target: f64,
}

/// R8.1 — the operator scorecard ("Measuring Success").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scorecard {
    /// Currency of `revenue_generation` (the plan's reporting currency, USD).
    pub reporting_currency: String,
    /// MRR (cents of the reporting currency) that scores 100: 1,500,000.
    pub revenue_generation: Component,
    /// New customers per month that score 100: 2.
    pub customer_acquisition: Component,
    /// Months of the acquisition average, M−(n−1)..M: 3.
    pub acquisition_months: i64,
    /// R4.3 retention that scores 100: 0.90.
    pub customer_retention: Component,
    /// R4.2 days: `target` scores 100 (14) and `zero_at_days` scores 0 (28).
    pub implementation_speed: Component,
    pub implementation_zero_at_days: f64,
    /// R4.4 NPS that scores 100: 50.
    pub customer_satisfaction: Component,
    /// R4.6 completion that scores 100: 1.0.
    pub training_compliance: Component,
    /// Referral leads in the window that score 100: 4.
    pub community_contribution: Component,
    /// Months of the referral window, M−(n−1)..M: 12.
    pub referral_months: i64,
}

impl Default for Scorecard {
    fn default() -> Self {
        let c = |weight: f64, target: f64| Component { weight, target };
        Self {
            reporting_currency: "USD".into(),
            revenue_generation: c(0.25, 1_500_000.0),
            customer_acquisition: c(0.20, 2.0),
            acquisition_months: 3,
            customer_retention: c(0.20, 0.90),
            implementation_speed: c(0.15, 14.0),
            implementation_zero_at_days: 28.0,
            customer_satisfaction: c(0.10, 50.0),
            training_compliance: c(0.05, 1.0),
            community_contribution: c(0.05, 4.0),
            referral_months: 12,
        }
    }
}

/// R8.2 — the Operator Equity Program: eligibility thresholds and the program terms
/// named in the email to an operator that becomes eligible.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Equity {
    /// Minimum tenure month (R1.1): 12.
    pub min_tenure_months: i64,
    /// The tier required: `platinum`.
    pub tier: String,
    /// Minimum MRR in cents of the reporting currency (R6.1): 5,000,000.
    pub min_mrr_cents: i64,
    /// Retention (R4.3) must be above this: 0.95.
    pub min_retention: f64,
    /// Program terms for the email (words, as finance writes them).
    pub pool: String,
    pub vesting: String,
    pub cliff: String,
    pub valuation_cadence: String,
}

impl Default for Equity {
    fn default() -> Self {
        Self {
            min_tenure_months: 12,
            tier: "platinum".into(),
            min_mrr_cents: 5_000_000,
            min_retention: 0.95,
            pool: "a 10 % equity pool shared among eligible operators".into(),
            vesting: "four years, vesting monthly".into(),
            cliff: "one year".into(),
            valuation_cadence: "valued once a year by an independent appraiser".into(),
        }
    }
}

/// R8.3 — the selection-score weights (renormalised over the components with data).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectionWeights {
    pub close_rate: f64,
    pub satisfaction: f64,
    pub response: f64,
    pub tenure: f64,
}

/// R8.3 — automated lead distribution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Leads {
    /// Leads an operator may receive per calendar month, by the tier of the latest
    /// closed period (`none` 3, bronze 5, silver 10, gold 20, platinum 40).
    pub capacity_none: i64,
    pub capacity: PerTier<i64>,
    pub selection_weights: SelectionWeights,
    /// Complete months before T's month for the close rate and response time: 6.
    pub history_months: i64,
    /// Complete months before T's month for satisfaction: 3.
    pub satisfaction_months: i64,
    /// Response score `100 × (target − h) / span`, clamped: 0 at 24 hours, 100 at 4.
    pub response_target_hours: f64,
    pub response_span_hours: f64,
    /// Tenure months that score 100: 24.
    pub tenure_full_months: i64,
}

impl Default for Leads {
    fn default() -> Self {
        Self {
            capacity_none: 3,
            capacity: PerTier {
                bronze: 5,
                silver: 10,
                gold: 20,
                platinum: 40,
            },
            selection_weights: SelectionWeights {
                close_rate: 0.4,
                satisfaction: 0.3,
                response: 0.2,
                tenure: 0.1,
            },
            history_months: 6,
            satisfaction_months: 3,
            response_target_hours: 24.0,
            response_span_hours: 20.0,
            tenure_full_months: 24,
        }
    }
}

impl Leads {
    /// R8.3 capacity of a tier (`none` or unknown: `capacity_none`).
    pub fn capacity_of(&self, tier: &str) -> i64 {
        match tier {
            "bronze" => self.capacity.bronze,
            "silver" => self.capacity.silver,
            "gold" => self.capacity.gold,
            "platinum" => self.capacity.platinum,
            _ => self.capacity_none,
        }
    }
}

/// One version of the compensation plan (R0.5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Name recorded in `job_runs.plan_version`, e.g. `"2025.1"`.
    pub version: String,
    /// First period this version applies to.
    pub effective_from: Period,
    /// R1.8 days from statement date to `due_on` (NET 30).
    #[serde(default = "default_terms")]
    pub payment_terms_days: i64,
    /// R3.4 / R4.4 fewer responses than this is `insufficient_data` / `null`.
    #[serde(default = "default_min_responses")]
    pub min_survey_responses: i64,
    #[serde(default)]
    pub revenue_share: RevenueShare,
    #[serde(default)]
    pub tiers: Tiers,
    #[serde(default)]
    pub exclusivity: Exclusivity,
    #[serde(default)]
    pub thresholds: Thresholds,
    #[serde(default)]
    pub network: NetworkTargets,
    #[serde(default)]
    pub scorecard: Scorecard,
    #[serde(default)]
    pub equity: Equity,
    #[serde(default)]
    pub leads: Leads,
}

fn default_terms() -> i64 {
    30
}

fn default_min_responses() -> i64 {
    5
}

impl Plan {
    /// The Candlefish Operator Network Playbook's values, in force since the beginning.
    pub fn playbook() -> Self {
        Self {
            version: "playbook".into(),
            effective_from: Period::new(2000, 1).expect("valid"),
            payment_terms_days: default_terms(),
            min_survey_responses: default_min_responses(),
            revenue_share: RevenueShare::default(),
            tiers: Tiers::default(),
            exclusivity: Exclusivity::default(),
            thresholds: Thresholds::default(),
            network: NetworkTargets::default(),
            scorecard: Scorecard::default(),
            equity: Equity::default(),
            leads: Leads::default(),
        }
    }

    /// Every problem of this version, each naming its key (prefixed by `at`).
    pub fn problems(&self, at: &str) -> Vec<String> {
        let mut out = Vec::new();
        self.basis_point_problems(at, &mut out);
        self.close_problems(at, &mut out);
        self.scorecard_problems(at, &mut out);
        self.equity_problems(at, &mut out);
        self.lead_problems(at, &mut out);
        if self.network.target_currency.len() != 3 {
            out.push(format!(
                "{at}.network.target_currency must be an ISO 4217 code"
            ));
        }
        out
    }

    /// R0.3: every basis-point figure (R1.3 shares, R1.4 bonuses, R3.4 CSAT share)
    /// lies in 0–10000.
    fn basis_point_problems(&self, at: &str, out: &mut Vec<String>) {
        let mut bp = |key: &str, v: i64| {
            if !(0..=10_000).contains(&v) {
                out.push(format!(
                    "{at}.{key} = {v}: basis points must be between 0 and 10000"
                ));
            }
        };
        let rs = &self.revenue_share;
        for (phase, s) in [
            ("initial", &rs.initial),
            ("growth", &rs.growth),
            ("mature", &rs.mature),
        ] {
            bp(&format!("revenue_share.{phase}.software"), s.software);
            bp(
                &format!("revenue_share.{phase}.implementation"),
                s.implementation,
            );
            bp(&format!("revenue_share.{phase}.support"), s.support);
        }
        let t = &self.tiers.software_bonus_bp;
        for (tier, v) in [
            ("bronze", t.bronze),
            ("silver", t.silver),
            ("gold", t.gold),
            ("platinum", t.platinum),
        ] {
            bp(&format!("tiers.software_bonus_bp.{tier}"), v);
        }
        bp(
            "exclusivity.min_csat_share_bp",
            self.exclusivity.min_csat_share_bp,
        );
    }

    /// R0.5 version, R1.2 phase bounds, R2.2 tier bounds, R1.8 terms, R3.4/R4 minimum
    /// responses, R3.3/R3.5 exclusivity windows and the R5.1 target band: the figures
    /// of the monthly close that must be ordered or positive.
    fn close_problems(&self, at: &str, out: &mut Vec<String>) {
        let rs = &self.revenue_share;
        if self.version.trim().is_empty() {
            out.push(format!("{at}.version must not be empty"));
        }
        if !(1 <= rs.initial_through_month && rs.initial_through_month < rs.growth_through_month) {
            out.push(format!(
                "{at}.revenue_share: need 1 <= initial_through_month ({}) < growth_through_month ({})",
                rs.initial_through_month, rs.growth_through_month
            ));
        }
        let m = &self.tiers.min_active_customers;
        if !(1 <= m.bronze && m.bronze < m.silver && m.silver < m.gold && m.gold < m.platinum) {
            out.push(format!(
                "{at}.tiers.min_active_customers must increase strictly from bronze >= 1 (got {}, {}, {}, {})",
                m.bronze, m.silver, m.gold, m.platinum
            ));
        }
        if self.payment_terms_days < 0 {
            out.push(format!("{at}.payment_terms_days must not be negative"));
        }
        if self.min_survey_responses < 1 {
            out.push(format!("{at}.min_survey_responses must be at least 1"));
        }
        if self.exclusivity.escalate_after < 1 {
            out.push(format!(
                "{at}.exclusivity.escalate_after must be at least 1"
            ));
        }
        if self.exclusivity.growth_check_months < 0 {
            out.push(format!(
                "{at}.exclusivity.growth_check_months must not be negative"
            ));
        }
        let n = &self.network;
        if n.active_operators_min > n.active_operators_max {
            out.push(format!(
                "{at}.network.active_operators_min exceeds active_operators_max"
            ));
        }
    }

    /// R8.1: component weights ≥ 0 and targets > 0, the implementation-speed range,
    /// the acquisition and referral windows and the reporting currency.
    fn scorecard_problems(&self, at: &str, out: &mut Vec<String>) {
        let sc = &self.scorecard;
        for (key, c) in [
            ("revenue_generation", &sc.revenue_generation),
            ("customer_acquisition", &sc.customer_acquisition),
            ("customer_retention", &sc.customer_retention),
            ("implementation_speed", &sc.implementation_speed),
            ("customer_satisfaction", &sc.customer_satisfaction),
            ("training_compliance", &sc.training_compliance),
            ("community_contribution", &sc.community_contribution),
        ] {
            if !(c.weight.is_finite() && c.weight >= 0.0) {
                out.push(format!("{at}.scorecard.{key}.weight must be a number >= 0"));
            }
            if !(c.target.is_finite() && c.target > 0.0) {
                out.push(format!("{at}.scorecard.{key}.target must be a number > 0"));
            }
        }
        if sc
            .implementation_zero_at_days
            .partial_cmp(&sc.implementation_speed.target)
            != Some(std::cmp::Ordering::Greater)
        {
            out.push(format!(
                "{at}.scorecard.implementation_zero_at_days must exceed implementation_speed.target"
            ));
        }
        if sc.acquisition_months < 1 || sc.referral_months < 1 {
            out.push(format!(
                "{at}.scorecard.acquisition_months and referral_months must be at least 1"
            ));
        }
        if sc.reporting_currency.len() != 3 {
            out.push(format!(
                "{at}.scorecard.reporting_currency must be an ISO 4217 code"
            ));
        }
    }

    /// R8.2: the equity tier is one of R2.2's tiers.
    fn equity_problems(&self, at: &str, out: &mut Vec<String>) {
        if !crate::tiers::TIER_ORDER.contains(&self.equity.tier.as_str()) {
            out.push(format!(
                "{at}.equity.tier = {:?}: must be one of {}",
                self.equity.tier,
                crate::tiers::TIER_ORDER.join(", ")
            ));
        }
    }

    /// R8.3: capacities ≥ 0, selection weights ≥ 0, windows of at least a month and
    /// a positive response span.
    fn lead_problems(&self, at: &str, out: &mut Vec<String>) {
        let l = &self.leads;
        for (key, v) in [
            ("capacity_none", l.capacity_none),
            ("capacity.bronze", l.capacity.bronze),
            ("capacity.silver", l.capacity.silver),
            ("capacity.gold", l.capacity.gold),
            ("capacity.platinum", l.capacity.platinum),
        ] {
            if v < 0 {
                out.push(format!("{at}.leads.{key} must not be negative"));
            }
        }
        let w = &l.selection_weights;
        if [w.close_rate, w.satisfaction, w.response, w.tenure]
            .iter()
            .any(|x| !(x.is_finite() && *x >= 0.0))
        {
            out.push(format!("{at}.leads.selection_weights must be numbers >= 0"));
        }
        if l.history_months < 1 || l.satisfaction_months < 1 || l.tenure_full_months < 1 {
            out.push(format!(
                "{at}.leads: history_months, satisfaction_months and tenure_full_months must be at least 1"
            ));
        }
        if l.response_span_hours.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            out.push(format!("{at}.leads.response_span_hours must be > 0"));
        }
    }
}

/// All versions of the plan, as read from the plan file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanBook {
    #[serde(rename = "version")]
    pub versions: Vec<Plan>,
}

/// No plan version is in force for a period, or the plan file is invalid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("plan: {}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error("plan: no version has effective_from <= {0}")]
    NoVersionFor(Period),
}

impl Default for PlanBook {
    fn default() -> Self {
        Self {
            versions: vec![Plan::playbook()],
        }
    }
}

impl PlanBook {
    /// Parse a plan file's text; errors name the key (`version[1].tiers…`).
    pub fn from_toml(text: &str) -> Result<Self, PlanError> {
        let book: PlanBook =
            toml::from_str(text).map_err(|e| PlanError::Invalid(vec![e.to_string()]))?;
        book.validate()?;
        Ok(book)
    }

    /// Collects every problem, not just the first.
    pub fn validate(&self) -> Result<(), PlanError> {
        let mut problems = Vec::new();
        if self.versions.is_empty() {
            problems.push("at least one [[version]] is required".to_string());
        }
        for (i, v) in self.versions.iter().enumerate() {
            problems.extend(v.problems(&format!("version[{i}]")));
            for (j, w) in self.versions.iter().enumerate().skip(i + 1) {
                if v.effective_from == w.effective_from {
                    problems.push(format!(
                        "version[{i}] and version[{j}] share effective_from = {}",
                        v.effective_from
                    ));
                }
                if v.version == w.version {
                    problems.push(format!(
                        "version[{i}] and version[{j}] share version = {:?}",
                        v.version
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(PlanError::Invalid(problems))
        }
    }

    /// R0.5: the newest version with `effective_from <= period`.
    pub fn for_period(&self, period: Period) -> Result<&Plan, PlanError> {
        self.versions
            .iter()
            .filter(|v| v.effective_from <= period)
            .max_by_key(|v| v.effective_from)
            .ok_or(PlanError::NoVersionFor(period))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r0_5_newest_version_in_force_is_selected() {
        let book = PlanBook::from_toml(
            r#"
            [[version]]
            version = "2024.1"
            effective_from = "2024-01"

            [[version]]
            version = "2025.1"
            effective_from = "2025-01"
            [version.revenue_share.initial]
            software = 7500
            implementation = 9000
            support = 10000
            "#,
        )
        .unwrap();
        let p = |s: &str| Period::parse(s).unwrap();
        assert_eq!(book.for_period(p("2024-12")).unwrap().version, "2024.1");
        assert_eq!(book.for_period(p("2025-01")).unwrap().version, "2025.1");
        assert_eq!(
            book.for_period(p("2025-01"))
                .unwrap()
                .revenue_share
                .initial
                .software,
            7500
        );
        // keys a version leaves out keep the Playbook's values
        assert_eq!(
            book.for_period(p("2025-01"))
                .unwrap()
                .revenue_share
                .growth
                .software,
            6000
        );
        assert!(matches!(
            book.for_period(p("2023-12")),
            Err(PlanError::NoVersionFor(_))
        ));
    }

    #[test]
    fn r0_5_validation_names_every_bad_key() {
        let err = PlanBook::from_toml(
            r#"
            [[version]]
            version = "x"
            effective_from = "2025-01"
            payment_terms_days = -1
            [version.tiers.software_bonus_bp]
            bronze = 0
            silver = 500
            gold = 1000
            platinum = 15000
            "#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("version[0].tiers.software_bonus_bp.platinum"),
            "{err}"
        );
        assert!(err.contains("version[0].payment_terms_days"), "{err}");
    }

    #[test]
    fn r0_5_unknown_keys_are_rejected() {
        let err =
            PlanBook::from_toml("[[version]]\nversion='a'\neffective_from='2025-01'\nshare=1\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("share"), "{err}");
    }

    /// deploy/plan.example.toml states every key of the Playbook in its first version:
    /// the example and the defaults in code cannot drift apart.
    #[test]
    fn r0_5_the_example_plan_states_the_playbook() {
        let book = PlanBook::from_toml(include_str!("../../deploy/plan.example.toml")).unwrap();
        let first = &book.versions[0];
        let playbook = Plan {
            version: first.version.clone(),
            effective_from: first.effective_from,
            ..Plan::playbook()
        };
        assert_eq!(*first, playbook);
    }

    #[test]
    fn playbook_is_valid() {
        PlanBook::default().validate().unwrap();
    }
}
