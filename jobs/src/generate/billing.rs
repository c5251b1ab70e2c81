//! The billing side of the simulation (`billing/*`): an invoice per customer and
//! period with its lines (software, implementation, support, discounts), how it is
//! settled, and refunds.

use chrono::NaiveDate;
use opnet_pipelines::Period;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::network::*;
use super::vocab::METROS;

impl Network {
    /// Invoices for every period of the window, in the currency of the customer's
    /// metro, with their lines and refunds.
    pub(super) fn simulate_billing(&mut self) {
        let mut rng = rng_for(self.seed, STREAM_BILLING);
        let mut invoice_no: u32 = 0;
        let periods: Vec<Period> = self.window().collect();
        for p in periods {
            let (p_first, p_last) = (p.first_day(), p.last_day());
            for (ci, c) in self.customers.iter().enumerate() {
                if c.signed_on > p_last {
                    break; // sorted by signing date
                }
                if c.churned_on.is_some_and(|d| d <= p_first) {
                    continue;
                }
                let signed_p = Period::of_date(c.signed_on);
                let line_start = self.lines.len();
                let next_no = invoice_no + 1;
                let push = |lines: &mut Vec<Line>, revenue_type, amount_cents, start, end| {
                    let line_no = (lines.len() - line_start + 1) as i64;
                    lines.push(Line {
                        invoice_no: next_no,
                        line_no,
                        revenue_type,
                        amount_cents,
                        service_start: start,
                        service_end: end,
                        copies: 1,
                    });
                };
                let software = if c.annual {
                    // Annual plans are billed once a year, in the signing month, for
                    // 12 months of service at a 10 % discount.
                    ((p.months() - signed_p.months()) % 12 == 0).then(|| {
                        let end = p.add_months(12).first_day() - days(1);
                        (c.software_cents * 12 * 9 / 10, end)
                    })
                } else {
                    Some((c.software_cents, p_last))
                };
                if let Some((amount, end)) = software {
                    push(&mut self.lines, "software", amount, p_first, end);
                    if rng.random_bool(DISCOUNT_CHANCE) {
                        let discount = amount * rng.random_range(10..=25i64) / 100;
                        push(&mut self.lines, "software", -discount, p_first, end);
                    }
                }
                if signed_p == p {
                    push(
                        &mut self.lines,
                        "implementation",
                        c.implementation_cents,
                        c.signed_on,
                        c.go_live_plan,
                    );
                }
                if let Some(amount) = c.support_cents {
                    push(&mut self.lines, "support", amount, p_first, p_last);
                }
                let line_end = self.lines.len();
                if line_end == line_start {
                    continue;
                }
                invoice_no = next_no;
                // The first invoice goes out on signing; the rest on the 1st.
                let issued_on = if signed_p == p { c.signed_on } else { p_first };
                let (status, paid_on) = self.settle(&mut rng, issued_on);
                let total_cents = self.lines[line_start..line_end]
                    .iter()
                    .map(|l| l.amount_cents)
                    .sum();
                if let Some(paid) = paid_on {
                    for line in &self.lines[line_start..line_end] {
                        if line.amount_cents > 0 && rng.random_bool(REFUND_CHANCE) {
                            let on = paid + days(rng.random_range(1..=60));
                            if on > self.as_of {
                                continue;
                            }
                            let amount_cents = if rng.random_bool(0.4) {
                                line.amount_cents
                            } else {
                                (line.amount_cents * rng.random_range(10..=90i64) / 100).max(1)
                            };
                            self.refunds.push(Refund {
                                invoice_no,
                                line_no: line.line_no,
                                refunded_on: on,
                                amount_cents,
                            });
                        }
                    }
                }
                self.invoices.push(Invoice {
                    no: invoice_no,
                    customer_no: ci as u32 + 1,
                    currency: METROS[self.operators[c.operator].metro].currency,
                    issued_on,
                    status,
                    paid_on,
                    total_cents,
                    lines: line_start..line_end,
                    copies: 1,
                });
            }
        }
    }

    /// Mostly paid within 0–45 days (so some in the next month), a few void or never
    /// paid; anything that would be paid after the extract date is still open.
    fn settle(&self, rng: &mut ChaCha8Rng, issued_on: NaiveDate) -> (Status, Option<NaiveDate>) {
        let r: f64 = rng.random();
        if r < VOID_CHANCE {
            (Status::Void, None)
        } else if r < VOID_CHANCE + UNPAID_CHANCE {
            if (self.as_of - issued_on).num_days() > 60 {
                (Status::Uncollectible, None)
            } else {
                (Status::Open, None)
            }
        } else {
            let delay = if rng.random_bool(0.75) {
                rng.random_range(0..=20)
            } else {
                rng.random_range(21..=45)
            };
            let paid = issued_on + days(delay);
            if paid > self.as_of {
                (Status::Open, None)
            } else {
                (Status::Paid, Some(paid))
            }
        }
    }
}
