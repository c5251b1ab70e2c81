//! The CRM side of the simulation (`crm/*`): operators joining and leaving,
//! territories and their exclusive holders, customers signing, going live and
//! churning, leads, and training.

use chrono::{Duration, NaiveDate, NaiveTime};
use opnet_pipelines::Period;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::network::*;
use super::vocab::{
    CUSTOMER_WORDS, LEAD_SOURCES, METROS, OPERATOR_SUFFIXES, OPERATOR_WORDS,
    OPTIONAL_MODULES_TAKEN, TRAINING_MODULES, VERTICALS,
};

impl Network {
    /// Operators join over time; ids follow the joining order, as a CRM's would.
    pub(super) fn simulate_operators(&mut self, rng: &mut ChaCha8Rng, n: usize) {
        let history_start = self.first.add_months(-PRE_WINDOW_MONTHS).first_day();
        let window_start = self.first.first_day();
        let pre_window = ((n as f64 * PRE_WINDOW_SHARE).ceil() as usize).max(1);
        let mut joined: Vec<NaiveDate> = (0..n)
            .map(|i| {
                if i < pre_window {
                    day_in(rng, history_start, window_start - days(1))
                } else {
                    day_in(rng, window_start, self.as_of)
                }
            })
            .collect();
        joined.sort();
        for joined_on in joined {
            let metro = pick_weighted(rng, METROS.iter().map(|m| m.weight));
            let n_verticals = rng.random_range(1..=3usize);
            let mut verticals: Vec<usize> = Vec::with_capacity(n_verticals);
            while verticals.len() < n_verticals {
                let v = rng.random_range(0..VERTICALS.len());
                if !verticals.contains(&v) {
                    verticals.push(v);
                }
            }
            verticals.sort_unstable();
            let name = format!(
                "{} {}",
                pick(rng, OPERATOR_WORDS),
                pick(rng, OPERATOR_SUFFIXES)
            );
            let class: f64 = rng.random();
            // Strong, normal and weak operators, so that tiers spread from none to
            // Platinum and quality alerts (R4) fire for some and not others.
            let (signing_rate, quality) = if class < 0.2 {
                (2.0, rng.random_range(0.7..1.0))
            } else if class < 0.75 {
                (0.9, rng.random_range(0.4..0.9))
            } else {
                (0.3, rng.random_range(0.0..0.6))
            };
            let terminated_on = if rng.random_bool(TERMINATION_CHANCE) {
                let d = joined_on + days(rng.random_range(120..=720));
                (d <= self.as_of).then_some(d)
            } else {
                None
            };
            self.operators.push(Operator {
                name,
                metro,
                verticals,
                joined_on,
                terminated_on,
                signing_rate,
                quality,
            });
        }
    }

    /// Operators leave the network over the window: each month of the window, an
    /// operator past its onboarding months that has not left yet leaves with the
    /// chance of its class ([`CHURN_PER_MONTH`]), on a day of that month. Its own
    /// stream, so the network's other draws stay as they were.
    pub(super) fn simulate_churn(&mut self) {
        let mut rng = rng_for(self.seed, STREAM_CHURN);
        let (first, last) = (self.first, self.last);
        for op in &mut self.operators {
            if op.terminated_on.is_some() {
                continue;
            }
            let class = if op.signing_rate >= 2.0 {
                0
            } else if op.signing_rate >= 0.9 {
                1
            } else {
                2
            };
            let from = Period::of_date(op.joined_on).add_months(CHURN_GRACE_MONTHS);
            for p in from.max(first).through(last) {
                if rng.random_bool(CHURN_PER_MONTH[class]) {
                    op.terminated_on = Some(day_in(&mut rng, p.first_day(), p.last_day()));
                    break;
                }
            }
        }
    }

    /// One territory per metro; about half are held exclusively by the strongest
    /// operator of the metro that is still in the network.
    pub(super) fn simulate_territories(&mut self, rng: &mut ChaCha8Rng) {
        for (metro, _) in METROS.iter().enumerate() {
            let holder = self
                .operators
                .iter()
                .enumerate()
                .filter(|(_, o)| o.metro == metro && o.terminated_on.is_none())
                // The strongest class wins, and within it the earliest joiner (ids
                // follow joining order), as exclusivity rewards a track record.
                .max_by(|(ia, a), (ib, b)| {
                    a.signing_rate.total_cmp(&b.signing_rate).then(ib.cmp(ia))
                })
                .map(|(i, _)| i);
            let exclusive = match holder {
                Some(op) if rng.random_bool(EXCLUSIVE_CHANCE) => {
                    let joined = self.operators[op].joined_on;
                    let mut since = joined + days(rng.random_range(0..=365));
                    if since > self.as_of {
                        since = day_in(rng, joined, self.as_of);
                    }
                    Some((op, since))
                }
                _ => None,
            };
            self.territories.push(Territory { metro, exclusive });
        }
    }

    /// Each operator signs 0–3 customers a month, more as its tenure grows; customers
    /// go live 5–60 days after signing and churn ~1–3 % a month.
    pub(super) fn simulate_customers(&mut self) {
        let mut customers = Vec::new();
        for (op_idx, op) in self.operators.iter().enumerate() {
            let mut rng = operator_rng(self.seed, op_idx, OP_CUSTOMERS);
            let joined_p = Period::of_date(op.joined_on);
            let churn_base = if op.signing_rate >= 2.0 {
                0.008
            } else if op.signing_rate >= 0.9 {
                0.015
            } else {
                0.03
            };
            for p in joined_p.through(self.last) {
                let lo = p.first_day().max(op.joined_on);
                let mut hi = p.last_day();
                if let Some(t) = op.terminated_on {
                    if t <= lo {
                        break;
                    }
                    hi = hi.min(t - days(1));
                }
                let tenure = (p.months() - joined_p.months() + 1) as f64;
                let ramp = 0.4 + 0.6 * tenure.min(12.0) / 12.0;
                let chance = (op.signing_rate * ramp / 3.0).min(0.95);
                let signings = (0..3).filter(|_| rng.random_bool(chance)).count();
                for _ in 0..signings {
                    let signed_on = day_in(&mut rng, lo, hi);
                    let slowest = 25 + (35.0 * (1.0 - op.quality)).round() as i64;
                    let go_live_plan = signed_on + days(rng.random_range(5..=slowest));
                    let mut churned_on = None;
                    for q in Period::of_date(signed_on).next().through(self.last) {
                        let after_termination =
                            op.terminated_on.is_some_and(|t| t <= q.first_day());
                        let chance = if after_termination { 0.04 } else { churn_base };
                        if rng.random_bool(chance) {
                            churned_on = Some(day_in(&mut rng, q.first_day(), q.last_day()));
                            break;
                        }
                    }
                    let vertical = pick(&mut rng, &op.verticals);
                    let name = format!(
                        "{} {}",
                        pick(&mut rng, CUSTOMER_WORDS),
                        VERTICALS[vertical].1
                    );
                    let annual = rng.random_bool(ANNUAL_BILLING_CHANCE);
                    let software_cents = rng.random_range(299..=1199i64) * 100;
                    let implementation_cents = rng.random_range(30..=100i64) * 5_000;
                    let support_cents = rng
                        .random_bool(SUPPORT_PLAN_CHANCE)
                        .then(|| rng.random_range(100..=400i64) * 100);
                    let has_operator = !rng.random_bool(ORPHAN_CUSTOMER_CHANCE);
                    customers.push(Customer {
                        operator: op_idx,
                        has_operator,
                        name,
                        vertical,
                        signed_on,
                        go_live_plan,
                        churned_on,
                        annual,
                        software_cents,
                        implementation_cents,
                        support_cents,
                    });
                }
            }
        }
        // Customer ids follow the signing order, as a CRM's would (stable sort: ties
        // keep the generation order, which is fixed).
        customers.sort_by_key(|c| (c.signed_on, c.operator));
        let mut by_operator = vec![Vec::new(); self.operators.len()];
        for (i, c) in customers.iter().enumerate() {
            by_operator[c.operator].push(i);
        }
        self.customers = customers;
        self.customers_by_operator = by_operator;
    }

    /// Several leads a month per active operator, in its metro; most assigned to it
    /// and contacted within 1–48 hours (slower for weaker operators), plus a lead that
    /// converted for most customers signed in the window. The newest leads (the last
    /// [`NEWEST_UNASSIGNED_DAYS`] days) are not assigned, contacted or converted yet:
    /// they wait for lead distribution (R8.3).
    pub(super) fn simulate_leads(&mut self) {
        let as_of_ts = (self.as_of + days(1)).and_time(NaiveTime::MIN);
        let window_start = self.first.first_day();
        let mut leads = Vec::new();
        for (op_idx, op) in self.operators.iter().enumerate() {
            let mut rng = operator_rng(self.seed, op_idx, OP_LEADS);
            let slowest_minutes = (12.0 + 36.0 * (1.0 - op.quality)) as i64 * 60;
            let never_contacted = 0.03 + 0.1 * (1.0 - op.quality);
            for p in self.window() {
                let lo = p.first_day().max(op.joined_on);
                let hi = match op.terminated_on {
                    Some(t) => p.last_day().min(t - days(1)),
                    None => p.last_day(),
                };
                if lo > hi {
                    continue;
                }
                for _ in 0..rng.random_range(2..=6) {
                    let day = day_in(&mut rng, lo, hi);
                    let created_at = day.and_time(NaiveTime::MIN)
                        + Duration::minutes(rng.random_range(8 * 60..18 * 60));
                    let vertical = if rng.random_bool(0.8) {
                        pick(&mut rng, &op.verticals)
                    } else {
                        rng.random_range(0..VERTICALS.len())
                    };
                    let source = pick(&mut rng, LEAD_SOURCES);
                    let assigned = (!rng.random_bool(UNASSIGNED_LEAD_CHANCE)).then_some(op_idx);
                    let first_contact_at =
                        if assigned.is_some() && !rng.random_bool(never_contacted) {
                            let at = created_at
                                + Duration::minutes(rng.random_range(60..=slowest_minutes));
                            (at < as_of_ts).then_some(at)
                        } else {
                            None
                        };
                    leads.push(Lead {
                        source,
                        vertical,
                        metro: op.metro,
                        created_at,
                        assigned,
                        first_contact_at,
                        converted_customer_no: None,
                        referred_by: None,
                    });
                }
            }
            for &ci in &self.customers_by_operator[op_idx] {
                let c = &self.customers[ci];
                if !rng.random_bool(CONVERTED_LEAD_CHANCE) {
                    continue;
                }
                let created_at = (c.signed_on - days(rng.random_range(3..=30)))
                    .and_time(NaiveTime::MIN)
                    + Duration::minutes(rng.random_range(8 * 60..18 * 60));
                if created_at.date() < window_start {
                    continue;
                }
                let first_contact_at =
                    Some(created_at + Duration::minutes(rng.random_range(30..=24 * 60)));
                leads.push(Lead {
                    source: pick(&mut rng, LEAD_SOURCES),
                    vertical: c.vertical,
                    metro: op.metro,
                    created_at,
                    assigned: Some(op_idx),
                    first_contact_at,
                    converted_customer_no: Some(ci as u32 + 1),
                    referred_by: None,
                });
            }
        }
        // Lead ids follow creation time (stable sort keeps ties in generation order).
        leads.sort_by_key(|l| l.created_at);
        // After every draw, so that the draws (and the older leads) stay as they were.
        let newest = (self.as_of - days(NEWEST_UNASSIGNED_DAYS - 1)).and_time(NaiveTime::MIN);
        for l in leads.iter_mut().filter(|l| l.created_at >= newest) {
            l.assigned = None;
            l.first_contact_at = None;
            l.converted_customer_no = None;
        }
        self.leads = leads;
    }

    /// R8.1 `community_contribution`: [`REFERRED_BY_OPERATOR_CHANCE`] of the
    /// `referral` leads name the operator that referred them — one in the network on
    /// the lead's day (joined, not yet terminated) other than the lead's own assignee,
    /// drawn by a propensity of its own (u², u uniform), so that a few operators
    /// refer a lot and many rarely or never. Its own stream, after the leads: every
    /// other dataset, and every other column of crm/leads, is unchanged by it.
    pub(super) fn simulate_referrals(&mut self) {
        let mut rng = rng_for(self.seed, STREAM_REFERRALS);
        let propensity: Vec<f64> = self
            .operators
            .iter()
            .map(|_| {
                let u: f64 = rng.random();
                u * u
            })
            .collect();
        let operators = &self.operators;
        for lead in self.leads.iter_mut().filter(|l| l.source == "referral") {
            if !rng.random_bool(REFERRED_BY_OPERATOR_CHANCE) {
                continue;
            }
            let day = lead.created_at.date();
            let weights: Vec<f64> = operators
                .iter()
                .enumerate()
                .map(|(i, op)| {
                    let in_network =
                        op.joined_on <= day && op.terminated_on.is_none_or(|t| t > day);
                    if in_network && lead.assigned != Some(i) {
                        propensity[i]
                    } else {
                        0.0
                    }
                })
                .collect();
            let total: f64 = weights.iter().sum();
            if total <= 0.0 {
                continue;
            }
            let mut x = rng.random_range(0.0..total);
            // The last operator with a weight takes what rounding leaves over.
            for (i, &w) in weights.iter().enumerate().filter(|(_, w)| **w > 0.0) {
                lead.referred_by = Some(i);
                if x < w {
                    break;
                }
                x -= w;
            }
        }
    }

    /// The required modules and a couple of optional ones per operator; most done
    /// within a few months of joining, weaker operators leave more undone.
    pub(super) fn simulate_training(&mut self) {
        for (op_idx, op) in self.operators.iter().enumerate() {
            let mut rng = operator_rng(self.seed, op_idx, OP_TRAINING);
            let optional: Vec<usize> = (0..TRAINING_MODULES.len())
                .filter(|&m| !TRAINING_MODULES[m].1)
                .collect();
            let mut taken: Vec<usize> = (0..TRAINING_MODULES.len())
                .filter(|&m| TRAINING_MODULES[m].1)
                .collect();
            while taken.len() < TRAINING_MODULES.len() - optional.len() + OPTIONAL_MODULES_TAKEN {
                let m = pick(&mut rng, &optional);
                if !taken.contains(&m) {
                    taken.push(m);
                }
            }
            taken.sort_unstable();
            for module in taken {
                let required = TRAINING_MODULES[module].1;
                let (chance, latest) = if required {
                    (0.75 + 0.22 * op.quality, 90)
                } else {
                    (0.5, 300)
                };
                let completed_on = rng
                    .random_bool(chance)
                    .then(|| op.joined_on + days(rng.random_range(3..=latest)))
                    .filter(|d| *d <= self.as_of);
                self.training.push(TrainingRow {
                    operator: op_idx,
                    module,
                    completed_on,
                });
            }
        }
    }
}
