//! R8.3 — automated lead distribution: every unassigned lead of crm/leads created by
//! the run's time T goes, once, to one operator — the exclusive operator of its metro,
//! else the best-scoring vertical specialist with capacity left, else the candidate
//! with the best selection score — or stays unassigned (`no_capacity`).
//!
//! The run is sequential by nature: a lead's assignment uses up capacity that the next
//! lead of the same month sees ("including earlier assignments of the same run"). So
//! the frames are collected once and the leads are walked in (`created_at`,
//! `lead_id`) order in plain Rust; everything that does not change during the run
//! (candidates, their tier, R8.1 total, selection score, the month counts) is computed
//! first. Nothing here reads a clock or a database: T, the latest closed period's tiers
//! and scores and opnet's earlier assignments are parameters.

use crate::Inputs;
use crate::period::{Period, date_to_millis};
use crate::plan::Plan;
use chrono::{DateTime, NaiveDate};
use polars::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};

/// `lead_assignments.rule` values.
pub mod rule {
    pub const EXCLUSIVE: &str = "exclusive";
    pub const SPECIALIST: &str = "specialist";
    pub const SCORE: &str = "score";
    pub const NO_CAPACITY: &str = "no_capacity";
}

const MS_PER_HOUR: f64 = 3_600_000.0;

/// What a lead run knows besides the snapshot.
pub struct LeadRun<'a> {
    /// T, the run's time (UTC), as milliseconds since the epoch.
    pub at_ms: i64,
    /// The latest closed period's standing: `operator_id`, `tier` (str), `total_score`
    /// (f64, the R8.1 total; null ranks last). Operators missing here have tier `none`
    /// and a null score.
    pub standing: &'a DataFrame,
    /// opnet's earlier assignments: `lead_id`, `operator_id` (null for a lead that
    /// stayed `no_capacity`, which is tried again).
    pub assigned: &'a DataFrame,
}

/// One candidate operator of the run.
struct Candidate {
    id: String,
    capacity: i64,
    total: Option<f64>,
    selection: f64,
    verticals: HashSet<String>,
}

fn strs(df: &DataFrame, c: &str) -> PolarsResult<Vec<Option<String>>> {
    Ok(df
        .column(c)?
        .cast(&DataType::String)?
        .str()?
        .iter()
        .map(|v| v.map(str::to_string))
        .collect())
}

fn ints(df: &DataFrame, c: &str) -> PolarsResult<Vec<Option<i64>>> {
    Ok(df
        .column(c)?
        .cast(&DataType::Int64)?
        .i64()?
        .iter()
        .collect())
}

fn floats(df: &DataFrame, c: &str) -> PolarsResult<Vec<Option<f64>>> {
    Ok(df
        .column(c)?
        .cast(&DataType::Float64)?
        .f64()?
        .iter()
        .collect())
}

/// Months since year 0 (R1.1 `months`) of a UTC timestamp in milliseconds.
fn months_of_ms(ms: i64) -> Option<i32> {
    DateTime::from_timestamp_millis(ms).map(|t| Period::of_date(t.date_naive()).months())
}

/// Scores compare exactly to 9 decimals (R8.3): closer scores are a tie.
fn score_key(score: Option<f64>) -> Option<i64> {
    score.map(|s| (s * 1e9).round() as i64)
}

/// The `lead_assignments` rows of one run (R8.3): `lead_id`, `operator_id` (null for
/// `no_capacity`), `rule`, `score` (f64?, the deciding score: the R8.1 total for
/// `specialist`, the selection score for `score`, null for `exclusive` and
/// `no_capacity`), `assigned_at` (Datetime ms, = T) — one row per lead assigned or
/// tried in this run, in assignment order.
pub fn assign_leads(inputs: &Inputs, run: &LeadRun<'_>, plan: &Plan) -> PolarsResult<DataFrame> {
    let at_ms = run.at_ms;
    let Some(t) = DateTime::from_timestamp_millis(at_ms) else {
        return Err(PolarsError::ComputeError(
            format!("lead run time {at_ms} ms is out of range").into(),
        ));
    };
    let t_date = t.date_naive();
    let t_month = Period::of_date(t_date);

    let leads = Leads::in_order(inputs)?;
    let by_opnet = earlier_assignments(run)?;
    let mut counted = counted_per_month(&leads, &by_opnet);
    let history = lead_history(&leads, &by_opnet, t_month, plan);
    let satisfaction = satisfaction_shares(inputs, t_month, plan)?;
    let standing = standing_of(run)?;
    let candidates = candidates(inputs, t_date, plan, &standing, &history, &satisfaction)?;
    let index: HashMap<&str, usize> = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id.as_str(), i))
        .collect();

    // Rule 1: a metro's exclusive candidate (lowest territory_id first).
    let exclusive = exclusive_by_metro(inputs, t_date, &index)?;

    let mut out_lead = Vec::new();
    let mut out_op: Vec<Option<String>> = Vec::new();
    let mut out_rule = Vec::new();
    let mut out_score: Vec<Option<f64>> = Vec::new();
    for i in 0..leads.len() {
        let (Some(id), Some(c)) = (leads.lead_id[i].as_deref(), leads.created[i]) else {
            continue;
        };
        if leads.upstream[i].is_some() || by_opnet.contains_key(id) || c > at_ms {
            continue;
        }
        let Some(month) = months_of_ms(c) else {
            continue;
        };
        let choice = choose(
            &candidates,
            &exclusive,
            &counted,
            month,
            leads.metro[i].as_deref(),
            leads.vertical[i].as_deref(),
        );
        out_lead.push(id.to_string());
        match choice {
            Some((k, r, score)) => {
                let op = candidates[k].id.clone();
                *counted.entry((op.clone(), month)).or_default() += 1;
                out_op.push(Some(op));
                out_rule.push(r);
                out_score.push(score);
            }
            None => {
                out_op.push(None);
                out_rule.push(rule::NO_CAPACITY);
                out_score.push(None);
            }
        }
    }
    assignment_frame(at_ms, out_lead, out_op, out_rule, out_score)
}

/// The leads of crm/leads in R8.3's order (`created_at`, `lead_id`), one vector per
/// column read (timestamps as milliseconds).
struct Leads {
    lead_id: Vec<Option<String>>,
    vertical: Vec<Option<String>>,
    metro: Vec<Option<String>>,
    created: Vec<Option<i64>>,
    upstream: Vec<Option<String>>,
    contacted: Vec<Option<i64>>,
    converted: Vec<Option<String>>,
}

impl Leads {
    /// R8.3: every lead of crm/leads, sorted by (`created_at`, `lead_id`).
    fn in_order(inputs: &Inputs) -> PolarsResult<Leads> {
        let leads = inputs
            .leads
            .clone()
            .select([
                col("lead_id").cast(DataType::String),
                col("vertical").cast(DataType::String),
                col("metro").cast(DataType::String),
                col("created_at").cast(DataType::Int64),
                col("assigned_operator_id").cast(DataType::String),
                col("first_contact_at").cast(DataType::Int64),
                col("converted_customer_id").cast(DataType::String),
            ])
            .sort(["created_at", "lead_id"], SortMultipleOptions::default())
            .collect()?;
        Ok(Leads {
            lead_id: strs(&leads, "lead_id")?,
            vertical: strs(&leads, "vertical")?,
            metro: strs(&leads, "metro")?,
            created: ints(&leads, "created_at")?,
            upstream: strs(&leads, "assigned_operator_id")?,
            contacted: ints(&leads, "first_contact_at")?,
            converted: strs(&leads, "converted_customer_id")?,
        })
    }

    /// R8.3: how many leads crm/leads has.
    fn len(&self) -> usize {
        self.lead_id.len()
    }

    /// R8.3 capacity counting: who lead `i` is assigned to, upstream or by opnet (both
    /// count, once each).
    fn assignees<'a>(&'a self, i: usize, by_opnet: &'a HashMap<String, String>) -> Vec<&'a str> {
        let mut v: Vec<&str> = Vec::with_capacity(2);
        if let Some(op) = self.upstream[i].as_deref() {
            v.push(op);
        }
        if let Some(id) = self.lead_id[i].as_deref()
            && let Some(op) = by_opnet.get(id)
            && !v.contains(&op.as_str())
        {
            v.push(op.as_str());
        }
        v
    }
}

/// R8.3: opnet's earlier assignments, lead → operator; a `no_capacity` row names no
/// operator and its lead is tried again, so it is left out.
fn earlier_assignments(run: &LeadRun<'_>) -> PolarsResult<HashMap<String, String>> {
    Ok(strs(run.assigned, "lead_id")?
        .into_iter()
        .zip(strs(run.assigned, "operator_id")?)
        .filter_map(|(id, op)| Some((id?, op?)))
        .collect())
}

/// R8.3 capacity: leads counted per (operator, month of `created_at`), whoever
/// assigned them.
fn counted_per_month(
    leads: &Leads,
    by_opnet: &HashMap<String, String>,
) -> HashMap<(String, i32), i64> {
    let mut counted: HashMap<(String, i32), i64> = HashMap::new();
    for i in 0..leads.len() {
        let Some(c) = leads.created[i] else { continue };
        let Some(m) = months_of_ms(c) else { continue };
        for op in leads.assignees(i, by_opnet) {
            *counted.entry((op.to_string(), m)).or_default() += 1;
        }
    }
    counted
}

/// R8.3 rule 3 history: per operator, over the leads assigned to it and created in
/// the `history_months` complete months before T's month — (leads, converted, sum
/// of hours to first contact, contacted leads).
fn lead_history<'a>(
    leads: &'a Leads,
    by_opnet: &'a HashMap<String, String>,
    t_month: Period,
    plan: &Plan,
) -> HashMap<&'a str, (i64, i64, f64, i64)> {
    let window = (
        date_to_millis(
            t_month
                .add_months(-(plan.leads.history_months as i32))
                .first_day(),
        ),
        date_to_millis(t_month.first_day()),
    );
    let mut history: HashMap<&str, (i64, i64, f64, i64)> = HashMap::new();
    for i in 0..leads.len() {
        let Some(c) = leads.created[i] else { continue };
        if !(window.0 <= c && c < window.1) {
            continue;
        }
        for op in leads.assignees(i, by_opnet) {
            let h = history.entry(op).or_default();
            h.0 += 1;
            h.1 += i64::from(leads.converted[i].is_some());
            if let Some(first) = leads.contacted[i] {
                h.2 += (first - c) as f64 / MS_PER_HOUR;
                h.3 += 1;
            }
        }
    }
    history
}

/// R8.3: the latest closed period's standing, operator → (tier, R8.1 total); a
/// missing tier is `none`.
fn standing_of(run: &LeadRun<'_>) -> PolarsResult<HashMap<String, (String, Option<f64>)>> {
    let ids = strs(run.standing, "operator_id")?;
    let tiers = strs(run.standing, "tier")?;
    let totals = floats(run.standing, "total_score")?;
    Ok(ids
        .into_iter()
        .zip(tiers)
        .zip(totals)
        .filter_map(|((id, tier), total)| {
            Some((id?, (tier.unwrap_or_else(|| "none".into()), total)))
        })
        .collect())
}

/// R8.3 candidates: the operators active at T's date (R6.2), each once, sorted by
/// `operator_id`, with their monthly capacity (by tier), R8.1 total, selection score
/// and verticals.
fn candidates(
    inputs: &Inputs,
    t_date: NaiveDate,
    plan: &Plan,
    standing: &HashMap<String, (String, Option<f64>)>,
    history: &HashMap<&str, (i64, i64, f64, i64)>,
    satisfaction: &BTreeMap<String, f64>,
) -> PolarsResult<Vec<Candidate>> {
    let t_month = Period::of_date(t_date);
    let ops = inputs
        .operators
        .clone()
        .select([
            col("operator_id").cast(DataType::String),
            col("verticals").cast(DataType::String),
            col("joined_on").cast(DataType::Date),
            col("terminated_on").cast(DataType::Date),
        ])
        .filter(
            col("joined_on").lt_eq(lit(t_date)).and(
                col("terminated_on")
                    .is_null()
                    .or(col("terminated_on").gt(lit(t_date))),
            ),
        )
        .unique_stable(Some(cols(["operator_id"])), UniqueKeepStrategy::First)
        .sort(["operator_id"], SortMultipleOptions::default())
        .collect()?;
    let joined: Vec<Option<NaiveDate>> = ops
        .column("joined_on")?
        .cast(&DataType::Int32)?
        .i32()?
        .iter()
        .map(|d| d.map(crate::period::days_to_date))
        .collect();
    let mut candidates: Vec<Candidate> = Vec::new();
    for ((id, verticals), joined) in strs(&ops, "operator_id")?
        .into_iter()
        .zip(strs(&ops, "verticals")?)
        .zip(joined)
    {
        let Some(id) = id else { continue };
        let (tier, total) = standing
            .get(&id)
            .cloned()
            .unwrap_or_else(|| ("none".into(), None));
        let selection = selection_score(
            history.get(id.as_str()).copied().unwrap_or_default(),
            satisfaction.get(&id).copied(),
            joined,
            t_month,
            plan,
        );
        candidates.push(Candidate {
            capacity: plan.leads.capacity_of(&tier),
            total,
            selection,
            verticals: verticals
                .unwrap_or_default()
                .split(';')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect(),
            id,
        });
    }
    Ok(candidates)
}

/// R8.3 rule 3: the selection score of one operator from its lead `history` (see
/// [`lead_history`]), its R3.4 satisfaction share and its `joined_on` — the weighted
/// mean of close rate, satisfaction, response and tenure (each 0–100) over the
/// components it has, 0 when it has none.
fn selection_score(
    history: (i64, i64, f64, i64),
    satisfaction: Option<f64>,
    joined: Option<NaiveDate>,
    t_month: Period,
    plan: &Plan,
) -> f64 {
    let w = &plan.leads.selection_weights;
    let (assigned, conv, hours, n_contacted) = history;
    let close_rate = (assigned > 0).then(|| 100.0 * conv as f64 / assigned as f64);
    let response = (n_contacted > 0).then(|| {
        let h = hours / n_contacted as f64;
        (100.0 * (plan.leads.response_target_hours - h) / plan.leads.response_span_hours)
            .clamp(0.0, 100.0)
    });
    let tenure = joined.map(|j| {
        let months = t_month.months() - Period::of_date(j).months() + 1;
        (100.0 * months as f64 / plan.leads.tenure_full_months as f64).min(100.0)
    });
    let parts = [
        (w.close_rate, close_rate),
        (w.satisfaction, satisfaction.map(|s| 100.0 * s)),
        (w.response, response),
        (w.tenure, tenure),
    ];
    let weight: f64 = parts.iter().filter(|p| p.1.is_some()).map(|p| p.0).sum();
    let weighted: f64 = parts.iter().filter_map(|p| p.1.map(|v| p.0 * v)).sum();
    if weight > 0.0 { weighted / weight } else { 0.0 }
}

/// R8.3 rules 1–3 for one lead created in `month` (months since year 0): the chosen
/// candidate's index, the rule and the deciding score, given the leads already
/// `counted` this run; `None` when no candidate has capacity left.
fn choose(
    candidates: &[Candidate],
    exclusive: &HashMap<String, usize>,
    counted: &HashMap<(String, i32), i64>,
    month: i32,
    metro: Option<&str>,
    vertical: Option<&str>,
) -> Option<(usize, &'static str, Option<f64>)> {
    let count = |op: &str| counted.get(&(op.to_string(), month)).copied().unwrap_or(0);
    let open = |k: usize| count(&candidates[k].id) < candidates[k].capacity;
    // Best by (score desc, null last), then fewer leads this month, then id.
    let best = |pool: &mut dyn Iterator<Item = usize>,
                score: &dyn Fn(&Candidate) -> Option<f64>| {
        pool.min_by_key(|&k| {
            let s = score_key(score(&candidates[k]));
            (
                s.is_none(),
                std::cmp::Reverse(s.unwrap_or(0)),
                count(&candidates[k].id),
                candidates[k].id.clone(),
            )
        })
    };
    if let Some(&k) = metro.and_then(|m| exclusive.get(m)) {
        Some((k, rule::EXCLUSIVE, None))
    } else if let Some(k) = best(
        &mut (0..candidates.len()).filter(|&k| {
            open(k) && vertical.is_some_and(|v| candidates[k].verticals.contains(v.trim()))
        }),
        &|c: &Candidate| c.total,
    ) {
        Some((k, rule::SPECIALIST, candidates[k].total))
    } else {
        best(
            &mut (0..candidates.len()).filter(|&k| open(k)),
            &|c: &Candidate| Some(c.selection),
        )
        .map(|k| (k, rule::SCORE, Some(candidates[k].selection)))
    }
}

/// R8.3: the `lead_assignments` frame of the run's rows, `assigned_at` = T for all.
fn assignment_frame(
    at_ms: i64,
    out_lead: Vec<String>,
    out_op: Vec<Option<String>>,
    out_rule: Vec<&str>,
    out_score: Vec<Option<f64>>,
) -> PolarsResult<DataFrame> {
    let n = out_lead.len();
    let mut df = DataFrame::new(
        n,
        vec![
            Column::new("lead_id".into(), out_lead),
            Column::new("operator_id".into(), out_op),
            Column::new("rule".into(), out_rule),
            Column::new("score".into(), out_score),
            Column::new("assigned_at".into(), vec![at_ms; n]),
        ],
    )?;
    df.apply("assigned_at", |s| {
        s.cast(&DataType::Datetime(TimeUnit::Milliseconds, None))
            .unwrap_or_else(|_| s.clone())
    })?;
    Ok(df)
}

/// R8.3 rule 1: metro → index of the candidate holding its exclusive territory with
/// `exclusive_since` ≤ T's date; of several, the lowest `territory_id`'s.
fn exclusive_by_metro(
    inputs: &Inputs,
    t_date: NaiveDate,
    index: &HashMap<&str, usize>,
) -> PolarsResult<HashMap<String, usize>> {
    let t = inputs
        .territories
        .clone()
        .filter(
            col("exclusive_operator_id")
                .is_not_null()
                .and(col("exclusive_since").is_not_null())
                .and(col("exclusive_since").lt_eq(lit(t_date))),
        )
        .select([
            col("territory_id").cast(DataType::String),
            col("metro").cast(DataType::String),
            col("exclusive_operator_id").cast(DataType::String),
        ])
        .sort(["territory_id"], SortMultipleOptions::default())
        .collect()?;
    let mut out = HashMap::new();
    for (metro, op) in strs(&t, "metro")?
        .into_iter()
        .zip(strs(&t, "exclusive_operator_id")?)
    {
        if let (Some(metro), Some(op)) = (metro, op)
            && let Some(&k) = index.get(op.as_str())
        {
            out.entry(metro).or_insert(k);
        }
    }
    Ok(out)
}

/// R8.3 satisfaction: per operator, the R3.4 share (CSAT ≥ the satisfied score) of the
/// responses with a CSAT score submitted in the `satisfaction_months` complete months
/// before T's month; operators with fewer than `min_survey_responses` have none.
fn satisfaction_shares(
    inputs: &Inputs,
    t_month: Period,
    plan: &Plan,
) -> PolarsResult<BTreeMap<String, f64>> {
    let first = t_month
        .add_months(-(plan.leads.satisfaction_months as i32))
        .first_day();
    let last = t_month.prev().last_day();
    let df = inputs
        .survey_responses
        .clone()
        .filter(
            col("csat_score").is_not_null().and(
                col("submitted_on")
                    .gt_eq(lit(first))
                    .and(col("submitted_on").lt_eq(lit(last))),
            ),
        )
        .group_by([col("operator_id").cast(DataType::String)])
        .agg([
            len().cast(DataType::Int64).alias("n"),
            col("csat_score")
                .gt_eq(lit(plan.exclusivity.satisfied_csat_score))
                .cast(DataType::Int64)
                .sum()
                .alias("ok"),
        ])
        .collect()?;
    let mut out = BTreeMap::new();
    for ((op, n), ok) in strs(&df, "operator_id")?
        .into_iter()
        .zip(ints(&df, "n")?)
        .zip(ints(&df, "ok")?)
    {
        if let (Some(op), Some(n), Some(ok)) = (op, n, ok)
            && n >= plan.min_survey_responses
            && n > 0
        {
            out.insert(op, ok as f64 / n as f64);
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
