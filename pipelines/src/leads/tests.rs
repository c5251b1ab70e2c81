//! R8.3 rule by rule: exclusive territories (capacity not applied), specialists by
//! R8.1 total (null last), the selection score with renormalised weights, capacity
//! counted over upstream, earlier and same-run assignments, ties, no capacity.

use super::*;
use chrono::{NaiveDate, NaiveDateTime};

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn ts(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
}

fn ms(s: &str) -> i64 {
    ts(s).and_utc().timestamp_millis()
}

/// T of most tests.
const T: &str = "2025-06-15 12:00";

/// (lead, source, vertical, metro, created, assigned, first contact, converted)
type LeadRow = (
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

#[derive(Default, Clone)]
struct Net {
    /// (id, verticals, joined, terminated)
    ops: Vec<(String, String, String, Option<String>)>,
    /// (territory, metro, exclusive operator, since)
    territories: Vec<(String, String, Option<String>, Option<String>)>,
    leads: Vec<LeadRow>,
    /// (operator, submitted, csat)
    csat: Vec<(String, String, i64)>,
    /// (operator, tier, total)
    standing: Vec<(String, String, Option<f64>)>,
    /// (lead, operator)
    assigned: Vec<(String, Option<String>)>,
}

impl Net {
    fn op(mut self, id: &str, verticals: &str, joined: &str) -> Self {
        self.ops
            .push((id.into(), verticals.into(), joined.into(), None));
        self
    }
    fn terminated(mut self, id: &str, on: &str) -> Self {
        for o in &mut self.ops {
            if o.0 == id {
                o.3 = Some(on.into());
            }
        }
        self
    }
    fn territory(mut self, id: &str, metro: &str, op: Option<&str>, since: Option<&str>) -> Self {
        self.territories.push((
            id.into(),
            metro.into(),
            op.map(Into::into),
            since.map(Into::into),
        ));
        self
    }
    /// An unassigned lead.
    fn lead(self, id: &str, vertical: &str, metro: &str, created: &str) -> Self {
        self.lead_full(id, vertical, metro, created, None, None, None)
    }
    #[allow(clippy::too_many_arguments)]
    fn lead_full(
        mut self,
        id: &str,
        vertical: &str,
        metro: &str,
        created: &str,
        assigned: Option<&str>,
        contact: Option<&str>,
        converted: Option<&str>,
    ) -> Self {
        self.leads.push((
            id.into(),
            "web".into(),
            vertical.into(),
            metro.into(),
            created.into(),
            assigned.map(Into::into),
            contact.map(Into::into),
            converted.map(Into::into),
        ));
        self
    }
    fn standing(mut self, op: &str, tier: &str, total: Option<f64>) -> Self {
        self.standing.push((op.into(), tier.into(), total));
        self
    }
    fn prior(mut self, lead: &str, op: Option<&str>) -> Self {
        self.assigned.push((lead.into(), op.map(Into::into)));
        self
    }
    fn csat(mut self, op: &str, on: &str, scores: &[i64]) -> Self {
        for s in scores {
            self.csat.push((op.into(), on.into(), *s));
        }
        self
    }

    fn inputs(&self) -> Inputs {
        let mut i = Inputs::empty();
        i.operators = df!(
            "operator_id" => self.ops.iter().map(|o| o.0.clone()).collect::<Vec<_>>(),
            "verticals" => self.ops.iter().map(|o| o.1.clone()).collect::<Vec<_>>(),
            "joined_on" => self.ops.iter().map(|o| d(&o.2)).collect::<Vec<_>>(),
            "terminated_on" => self.ops.iter().map(|o| o.3.as_deref().map(d)).collect::<Vec<_>>(),
        )
        .unwrap()
        .lazy();
        i.territories = df!(
            "territory_id" => self.territories.iter().map(|t| t.0.clone()).collect::<Vec<_>>(),
            "metro" => self.territories.iter().map(|t| t.1.clone()).collect::<Vec<_>>(),
            "currency" => self.territories.iter().map(|_| "USD").collect::<Vec<_>>(),
            "exclusive_operator_id" => self.territories.iter().map(|t| t.2.clone()).collect::<Vec<_>>(),
            "exclusive_since" => self.territories.iter().map(|t| t.3.as_deref().map(d)).collect::<Vec<_>>(),
        )
        .unwrap()
        .lazy();
        let l = &self.leads;
        i.leads = df!(
            "lead_id" => l.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
            "source" => l.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
            "vertical" => l.iter().map(|r| r.2.clone()).collect::<Vec<_>>(),
            "metro" => l.iter().map(|r| r.3.clone()).collect::<Vec<_>>(),
            "created_at" => l.iter().map(|r| ts(&r.4)).collect::<Vec<_>>(),
            "assigned_operator_id" => l.iter().map(|r| r.5.clone()).collect::<Vec<_>>(),
            "first_contact_at" => l.iter().map(|r| r.6.as_deref().map(ts)).collect::<Vec<_>>(),
            "converted_customer_id" => l.iter().map(|r| r.7.clone()).collect::<Vec<_>>(),
        )
        .unwrap()
        .lazy();
        let c = &self.csat;
        i.survey_responses = df!(
            "response_id" => (0..c.len()).map(|k| format!("s{k}")).collect::<Vec<_>>(),
            "customer_id" => c.iter().map(|_| "c").collect::<Vec<_>>(),
            "operator_id" => c.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
            "submitted_on" => c.iter().map(|r| d(&r.1)).collect::<Vec<_>>(),
            "nps_score" => c.iter().map(|_| None::<i64>).collect::<Vec<_>>(),
            "csat_score" => c.iter().map(|r| Some(r.2)).collect::<Vec<_>>(),
        )
        .unwrap()
        .lazy();
        i
    }

    /// (lead, operator, rule, score) of a run at `at`.
    fn run_at(&self, at: &str) -> Vec<(String, Option<String>, String, Option<f64>)> {
        let standing = df!(
            "operator_id" => self.standing.iter().map(|s| s.0.clone()).collect::<Vec<_>>(),
            "tier" => self.standing.iter().map(|s| s.1.clone()).collect::<Vec<_>>(),
            "total_score" => self.standing.iter().map(|s| s.2).collect::<Vec<_>>(),
        )
        .unwrap();
        let assigned = df!(
            "lead_id" => self.assigned.iter().map(|a| a.0.clone()).collect::<Vec<_>>(),
            "operator_id" => self.assigned.iter().map(|a| a.1.clone()).collect::<Vec<_>>(),
        )
        .unwrap();
        let out = assign_leads(
            &self.inputs(),
            &LeadRun {
                at_ms: ms(at),
                standing: &standing,
                assigned: &assigned,
            },
            &Plan::playbook(),
        )
        .unwrap();
        let s = |c: &str| strs(&out, c).unwrap();
        let (l, o, r) = (s("lead_id"), s("operator_id"), s("rule"));
        let sc = floats(&out, "score").unwrap();
        let at_col = ints(&out, "assigned_at").unwrap();
        assert!(at_col.iter().all(|a| *a == Some(ms(at))), "assigned_at = T");
        (0..out.height())
            .map(|k| {
                (
                    l[k].clone().unwrap(),
                    o[k].clone(),
                    r[k].clone().unwrap(),
                    sc[k],
                )
            })
            .collect()
    }

    fn run(&self) -> Vec<(String, Option<String>, String, Option<f64>)> {
        self.run_at(T)
    }
}

fn ops_of(
    rows: &[(String, Option<String>, String, Option<f64>)],
) -> Vec<(&str, Option<&str>, &str)> {
    rows.iter()
        .map(|r| (r.0.as_str(), r.1.as_deref(), r.2.as_str()))
        .collect()
}

/// Two operators long in the network: `a` (dental), `b` (legal), both bronze.
fn two() -> Net {
    Net::default()
        .op("a", "dental;vet", "2020-01-01")
        .op("b", "legal", "2020-01-01")
        .standing("a", "bronze", Some(60.0))
        .standing("b", "bronze", Some(80.0))
}

#[test]
fn r8_3_exclusive_territory_wins_without_capacity() {
    // a holds m1 exclusively; a is already at capacity (5 bronze leads in June,
    // assigned upstream) and still gets the m1 lead; no score.
    let mut n = two().territory("T1", "m1", Some("a"), Some("2025-01-01"));
    for k in 0..5 {
        n = n.lead_full(
            &format!("up{k}"),
            "legal",
            "m9",
            "2025-06-01 10:00",
            Some("a"),
            None,
            None,
        );
    }
    let n = n.lead("L1", "legal", "m1", "2025-06-10 09:00");
    assert_eq!(ops_of(&n.run()), [("L1", Some("a"), "exclusive")]);
    assert_eq!(n.run()[0].3, None);
}

#[test]
fn r8_3_exclusivity_needs_since_on_or_before_t_and_an_active_holder() {
    // since after T's date: not exclusive yet → specialist rule (legal → b)
    let n = two()
        .territory("T1", "m1", Some("a"), Some("2025-06-16"))
        .lead("L1", "legal", "m1", "2025-06-10 09:00");
    assert_eq!(ops_of(&n.run()), [("L1", Some("b"), "specialist")]);
    // since on T's date: exclusive
    let n = two()
        .territory("T1", "m1", Some("a"), Some("2025-06-15"))
        .lead("L1", "legal", "m1", "2025-06-10 09:00");
    assert_eq!(ops_of(&n.run()), [("L1", Some("a"), "exclusive")]);
    // holder terminated on T's date: not a candidate → falls through
    let n = two()
        .terminated("a", "2025-06-15")
        .territory("T1", "m1", Some("a"), Some("2025-01-01"))
        .lead("L1", "dental", "m1", "2025-06-10 09:00");
    assert_eq!(ops_of(&n.run()), [("L1", Some("b"), "score")]);
}

#[test]
fn r8_3_several_exclusive_territories_of_a_metro_lowest_territory_id() {
    let n = two()
        .territory("T2", "m1", Some("a"), Some("2025-01-01"))
        .territory("T1", "m1", Some("b"), Some("2025-01-01"))
        .lead("L1", "dental", "m1", "2025-06-10 09:00");
    assert_eq!(ops_of(&n.run()), [("L1", Some("b"), "exclusive")]);
}

#[test]
fn r8_3_specialist_is_the_highest_total_and_null_ranks_last() {
    let n = Net::default()
        .op("a", "dental", "2020-01-01")
        .op("b", "dental", "2020-01-01")
        .op("c", "dental", "2020-01-01")
        .standing("a", "gold", None)
        .standing("b", "gold", Some(40.0))
        .standing("c", "gold", Some(70.5))
        .lead("L1", "dental", "m1", "2025-06-10 09:00");
    assert_eq!(
        n.run(),
        [(
            "L1".into(),
            Some("c".into()),
            "specialist".into(),
            Some(70.5)
        )]
    );
    // all null: still a specialist (by count, then id), score null
    let n = Net::default()
        .op("b", "dental", "2020-01-01")
        .op("a", "dental", "2020-01-01")
        .lead("L1", "dental", "m1", "2025-06-10 09:00");
    assert_eq!(
        n.run(),
        [("L1".into(), Some("a".into()), "specialist".into(), None)]
    );
}

#[test]
fn r8_3_specialist_ties_go_to_fewer_leads_this_month_then_operator_id() {
    // a and b both score 50 (equal to 9 decimals); a already has a June lead.
    let n = Net::default()
        .op("a", "dental", "2020-01-01")
        .op("b", "dental", "2020-01-01")
        .standing("a", "silver", Some(50.0))
        .standing("b", "silver", Some(50.000_000_000_1))
        .lead_full("up", "x", "m9", "2025-06-01 08:00", Some("a"), None, None)
        .lead("L1", "dental", "m1", "2025-06-10 09:00")
        .lead("L2", "dental", "m1", "2025-06-10 10:00");
    // L1 → b (fewer leads); then a and b both have 1 → L2 → a (operator_id)
    assert_eq!(
        ops_of(&n.run()),
        [
            ("L1", Some("b"), "specialist"),
            ("L2", Some("a"), "specialist")
        ]
    );
}

#[test]
fn r8_3_capacity_counts_upstream_earlier_and_same_run_assignments_of_the_lead_month() {
    // a (none tier: capacity 3) is the only dental specialist. June: 1 upstream, 1 by
    // an earlier opnet run; this run gives it L1 (the 3rd) and then L2 falls to score.
    // A May lead does not count for June.
    let n = Net::default()
        .op("a", "dental", "2020-01-01")
        .op("b", "legal", "2020-01-01")
        .lead_full("may", "x", "m9", "2025-05-31 23:59", Some("a"), None, None)
        .lead_full("up", "x", "m9", "2025-06-01 00:00", Some("a"), None, None)
        .lead("old", "x", "m9", "2025-06-02 00:00")
        .prior("old", Some("a"))
        .lead("L1", "dental", "m1", "2025-06-10 09:00")
        .lead("L2", "dental", "m1", "2025-06-10 10:00");
    let got = n.run();
    assert_eq!(
        ops_of(&got),
        [("L1", Some("a"), "specialist"), ("L2", Some("b"), "score")]
    );
}

#[test]
fn r8_3_exclusive_assignments_use_up_capacity_for_later_leads() {
    // a: capacity 3 (tier none); two exclusive m1 leads, then two dental leads:
    // the first dental lead is a's 3rd, the second goes elsewhere.
    let n = Net::default()
        .op("a", "dental", "2020-01-01")
        .op("b", "legal", "2020-01-01")
        .territory("T1", "m1", Some("a"), Some("2025-01-01"))
        .lead("E1", "legal", "m1", "2025-06-01 09:00")
        .lead("E2", "legal", "m1", "2025-06-01 10:00")
        .lead("D1", "dental", "m2", "2025-06-02 09:00")
        .lead("D2", "dental", "m2", "2025-06-02 10:00");
    assert_eq!(
        ops_of(&n.run()),
        [
            ("E1", Some("a"), "exclusive"),
            ("E2", Some("a"), "exclusive"),
            ("D1", Some("a"), "specialist"),
            ("D2", Some("b"), "score"),
        ]
    );
}

#[test]
fn r8_3_capacity_is_by_the_month_of_the_lead_not_of_t() {
    // a has 3 May leads (full for May, tier none) but none in June: a May lead goes
    // elsewhere, a June lead to a.
    let mut n = Net::default()
        .op("a", "dental", "2020-01-01")
        .op("b", "legal", "2020-01-01");
    for k in 0..3 {
        n = n.lead_full(
            &format!("m{k}"),
            "x",
            "m9",
            "2025-05-05 10:00",
            Some("a"),
            None,
            None,
        );
    }
    let n = n.lead("MAY", "dental", "m1", "2025-05-20 10:00").lead(
        "JUN",
        "dental",
        "m1",
        "2025-06-01 10:00",
    );
    assert_eq!(
        ops_of(&n.run()),
        [
            ("MAY", Some("b"), "score"),
            ("JUN", Some("a"), "specialist")
        ]
    );
}

#[test]
fn r8_3_capacity_by_tier_of_the_latest_closed_period() {
    // bronze: 5 per month. a has 4 June leads: one more fits, then full.
    let mut n = Net::default()
        .op("a", "dental", "2020-01-01")
        .standing("a", "bronze", Some(10.0));
    for k in 0..4 {
        n = n.lead_full(
            &format!("u{k}"),
            "x",
            "m9",
            "2025-06-01 10:00",
            Some("a"),
            None,
            None,
        );
    }
    let n = n.lead("L1", "dental", "m1", "2025-06-02 10:00").lead(
        "L2",
        "dental",
        "m1",
        "2025-06-02 11:00",
    );
    assert_eq!(
        ops_of(&n.run()),
        [("L1", Some("a"), "specialist"), ("L2", None, "no_capacity")]
    );
}

#[test]
fn r8_3_selection_score_with_renormalised_weights() {
    // T in June: history window Dec..May, satisfaction window Mar..May.
    // a: 4 leads assigned in the window (h1–h3 upstream, h4 by an earlier opnet run),
    //    2 converted → close rate 50; contacted h1 after 4 h and h2 after 14 h → mean
    //    9 h → response 75; 5 CSAT responses in the window, 4 satisfied → 80; joined
    //    2024-07 → tenure 12 months in June 2025 → 50.
    //    score = 0.4·50 + 0.3·80 + 0.2·75 + 0.1·50 = 20 + 24 + 15 + 5 = 64
    // b: no history, no surveys → tenure only: joined 2025-06-01 → 1 month → 100/24.
    let n = Net::default()
        .op("a", "", "2024-07-01")
        .op("b", "", "2025-06-01")
        .lead_full(
            "h1",
            "x",
            "m9",
            "2024-12-01 00:00",
            Some("a"),
            Some("2024-12-01 04:00"),
            Some("c1"),
        )
        .lead_full(
            "h2",
            "x",
            "m9",
            "2025-05-31 10:00",
            Some("a"),
            Some("2025-06-01 00:00"),
            None,
        )
        .lead_full("h3", "x", "m9", "2025-03-01 00:00", Some("a"), None, None)
        .lead_full("h4", "x", "m9", "2025-04-01 00:00", None, None, Some("c2"))
        .prior("h4", Some("a"))
        // outside the window: November and June
        .lead_full(
            "h5",
            "x",
            "m9",
            "2024-11-30 23:59",
            Some("a"),
            Some("2024-12-30 00:00"),
            None,
        )
        .csat("a", "2025-03-01", &[5, 4, 4, 4, 2])
        .csat("a", "2025-02-28", &[1, 1, 1])
        .lead("L1", "dental", "m1", "2025-06-10 09:00");
    let got = n.run();
    assert_eq!(ops_of(&got), [("L1", Some("a"), "score")]);
    let s = got[0].3.unwrap();
    assert!((s - 64.0).abs() < 1e-9, "{s}");
}

#[test]
fn r8_3_a_candidate_without_data_scores_on_tenure_alone() {
    // b joined 2024-06 (13 months at June 2025 → 54.17) beats a joined 2025-01 (6 → 25)
    let n = Net::default()
        .op("a", "", "2025-01-01")
        .op("b", "", "2024-06-01")
        .lead("L1", "dental", "m1", "2025-06-10 09:00");
    let got = n.run();
    assert_eq!(ops_of(&got), [("L1", Some("b"), "score")]);
    assert!((got[0].3.unwrap() - 100.0 * 13.0 / 24.0).abs() < 1e-9);
    // tenure caps at 100 from 24 months on: equal scores → fewer leads → id
    let n = Net::default()
        .op("b", "", "2020-01-01")
        .op("a", "", "2021-01-01")
        .lead("L1", "dental", "m1", "2025-06-10 09:00");
    assert_eq!(
        n.run(),
        [("L1".into(), Some("a".into()), "score".into(), Some(100.0))]
    );
}

#[test]
fn r8_3_which_leads_are_eligible_and_in_what_order() {
    // created after T: not yet; created exactly at T: yes; assigned upstream or by an
    // earlier run: never again; a no_capacity row is tried again. Order is
    // (created_at, lead_id).
    let n = Net::default()
        .op("a", "", "2020-01-01")
        .lead("late", "x", "m1", "2025-06-15 12:01")
        .lead("at_t", "x", "m1", "2025-06-15 12:00")
        .lead_full("up", "x", "m1", "2025-06-01 00:00", Some("zz"), None, None)
        .lead("done", "x", "m1", "2025-06-01 00:00")
        .prior("done", Some("a"))
        .lead("retry", "x", "m1", "2025-06-01 00:00")
        .prior("retry", None)
        .lead("B", "x", "m1", "2025-06-02 00:00")
        .lead("A", "x", "m1", "2025-06-02 00:00");
    // a (tier none: 3 a month) already has `done` in June: retry and A fill it.
    assert_eq!(
        ops_of(&n.run()),
        [
            ("retry", Some("a"), "score"),
            ("A", Some("a"), "score"),
            ("B", None, "no_capacity"),
            ("at_t", None, "no_capacity"),
        ]
    );
}

#[test]
fn r8_3_no_candidate_leaves_the_lead_unassigned() {
    // nobody active at T
    let n = Net::default().op("a", "dental", "2025-07-01").lead(
        "L1",
        "dental",
        "m1",
        "2025-06-10 09:00",
    );
    assert_eq!(n.run(), [("L1".into(), None, "no_capacity".into(), None)]);
}
