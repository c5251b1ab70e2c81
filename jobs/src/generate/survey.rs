//! The survey side of the simulation (`survey/*`): live customers answering NPS and
//! CSAT questions, their scores following their operator's quality.

use rand::Rng;

use super::network::*;

impl Network {
    /// Live customers answer now and then; scores follow the operator's quality so
    /// that R3.4 and R4.4 pass for some operators and fail for others.
    pub(super) fn simulate_surveys(&mut self) {
        let mut surveys = Vec::new();
        for (op_idx, op) in self.operators.iter().enumerate() {
            let mut rng = operator_rng(self.seed, op_idx, OP_SURVEYS);
            for p in self.window() {
                for &ci in &self.customers_by_operator[op_idx] {
                    let c = &self.customers[ci];
                    if c.signed_on > p.last_day() {
                        break; // sorted by signing date
                    }
                    let live = c.go_live_plan <= p.last_day() && c.go_live_plan <= self.as_of;
                    let gone = c.churned_on.is_some_and(|d| d <= p.first_day());
                    if !c.has_operator || !live || gone || !rng.random_bool(SURVEY_CHANCE) {
                        continue;
                    }
                    let hi = match c.churned_on {
                        Some(d) => p.last_day().min(d - days(1)),
                        None => p.last_day(),
                    };
                    let submitted_on = day_in(&mut rng, p.first_day().max(c.go_live_plan), hi);
                    // One mood drives both scores, so a promoter rarely gives a bad
                    // CSAT; ~70 % answer both questions, the rest only one.
                    let q = op.quality;
                    let mood: f64 = rng.random();
                    let (nps, csat) = if mood < 0.3 + 0.55 * q {
                        (rng.random_range(9..=10), rng.random_range(4..=5))
                    } else if mood < 0.5 + 0.55 * q {
                        let csat = if rng.random_bool(0.7) {
                            rng.random_range(4..=5)
                        } else {
                            3
                        };
                        (rng.random_range(7..=8), csat)
                    } else {
                        let csat = if rng.random_bool(0.8) {
                            rng.random_range(1..=3)
                        } else {
                            4
                        };
                        (rng.random_range(0..=6), csat)
                    };
                    let asked: f64 = rng.random();
                    let nps = (asked < 0.85).then_some(nps);
                    let csat = (asked >= 0.15).then_some(csat);
                    surveys.push(Survey {
                        customer_no: ci as u32 + 1,
                        operator: op_idx,
                        submitted_on,
                        nps,
                        csat,
                    });
                }
            }
        }
        surveys.sort_by_key(|s| s.submitted_on);
        self.surveys = surveys;
    }
}
