//! The deliberately broken rows (R7 exceptions and quarantine): a small, fixed set
//! applied to the simulated rows, each on its own invoice or survey response so that
//! every exception has a single cause.

use std::collections::BTreeSet;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::network::*;

/// The deliberately broken rows (R7 exceptions and quarantine).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AnomalyKind {
    /// `total_cents` ≠ Σ lines.
    TotalMismatch,
    /// `status = paid` without `paid_on`.
    PaidWithoutDate,
    /// `paid_on` before `issued_on`.
    PaidBeforeIssued,
    /// The invoice row appears twice.
    DuplicateInvoice,
    /// An (invoice, line) appears twice.
    DuplicateLine,
    /// The invoice's customer is not in the CRM.
    UnknownCustomer,
    /// A second refund takes the line past its amount.
    RefundExceedsLine,
    /// A refund of a line of a void invoice.
    RefundOfUncollectedLine,
    /// Quarantine: currency `US$`.
    BadCurrency,
    /// Quarantine: revenue type `hardware`.
    BadRevenueType,
    /// Quarantine: `csat_score` 7.
    BadCsat,
    /// Quarantine: `nps_score` 11.
    BadNps,
}

#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(test), allow(dead_code))] // what was broken where: read by the tests
pub(super) struct Anomaly {
    pub(super) kind: AnomalyKind,
    pub(super) invoice_no: Option<u32>,
    pub(super) line_no: Option<i64>,
    /// Index in `Network::surveys` for survey anomalies.
    pub(super) survey: Option<usize>,
}

impl Network {
    /// A small, fixed set of broken rows: one of each kind per [`ANOMALY_EVERY`]
    /// invoices (at least one), each on a different invoice so every exception has a
    /// single cause.
    pub(super) fn sprinkle_anomalies(&mut self) {
        let mut rng = rng_for(self.seed, STREAM_ANOMALIES);
        if self.invoices.len() >= MIN_ROWS_FOR_ANOMALIES {
            self.break_invoices(&mut rng);
        }
        // Two broken rows (one per kind) need 200 responses to stay within 1 %, the
        // default `ingest.max_quarantine_share`, so the demo's data never leans on the
        // allowance of `ingest.quarantine_allowance_rows`.
        if self.surveys.len() >= 2 * MIN_ROWS_FOR_ANOMALIES {
            self.break_surveys(&mut rng);
        }
    }

    /// The invoice kinds, in a fixed order: for each, `per_kind` invoices that fit it
    /// and no other anomaly has touched.
    fn break_invoices(&mut self, rng: &mut ChaCha8Rng) {
        use AnomalyKind::*;
        let n_invoices = self.invoices.len();
        let per_kind = (n_invoices / ANOMALY_EVERY).max(1);
        let mut touched = vec![false; n_invoices];
        let refunded: BTreeSet<(u32, i64)> = self
            .refunds
            .iter()
            .map(|r| (r.invoice_no, r.line_no))
            .collect();
        let as_of = self.as_of;
        let paid = |inv: &Invoice| inv.status == Status::Paid;
        for kind in [
            TotalMismatch,
            PaidWithoutDate,
            PaidBeforeIssued,
            DuplicateInvoice,
            DuplicateLine,
            UnknownCustomer,
            RefundExceedsLine,
            RefundOfUncollectedLine,
            BadCurrency,
            BadRevenueType,
        ] {
            for k in 0..per_kind {
                let lines = &self.lines;
                // The first positive line that has no refund yet.
                let clean_line = |inv: &Invoice| {
                    inv.lines.clone().find(|&l| {
                        lines[l].amount_cents > 0 && !refunded.contains(&(inv.no, lines[l].line_no))
                    })
                };
                let found = match kind {
                    RefundExceedsLine => pick_invoice(rng, &self.invoices, &mut touched, |inv| {
                        paid(inv)
                            && inv.paid_on.is_some_and(|d| d + days(2) <= as_of)
                            && clean_line(inv).is_some()
                    }),
                    RefundOfUncollectedLine => {
                        pick_invoice(rng, &self.invoices, &mut touched, |inv| {
                            inv.status == Status::Void
                                && inv.issued_on + days(10) <= as_of
                                && clean_line(inv).is_some()
                        })
                    }
                    _ => pick_invoice(rng, &self.invoices, &mut touched, paid),
                };
                let Some(i) = found else { continue };
                let chosen_line = clean_line(&self.invoices[i]);
                if let Some(anomaly) = self.break_invoice(rng, kind, i, k, chosen_line) {
                    self.anomalies.push(anomaly);
                }
            }
        }
    }

    /// Break invoice `i` (the `k`-th of its `kind`; `chosen_line` is its first
    /// positive line without a refund). `None` when a refund kind finds no such line.
    fn break_invoice(
        &mut self,
        rng: &mut ChaCha8Rng,
        kind: AnomalyKind,
        i: usize,
        k: usize,
        chosen_line: Option<usize>,
    ) -> Option<Anomaly> {
        use AnomalyKind::*;
        let as_of = self.as_of;
        let inv = &mut self.invoices[i];
        let mut anomaly = Anomaly {
            kind,
            invoice_no: Some(inv.no),
            line_no: None,
            survey: None,
        };
        match kind {
            TotalMismatch => {
                let sign = if rng.random_bool(0.5) { 1 } else { -1 };
                inv.total_cents += sign * rng.random_range(1..=50i64) * 100;
            }
            PaidWithoutDate => inv.paid_on = None,
            PaidBeforeIssued => {
                inv.paid_on = Some(inv.issued_on - days(rng.random_range(1..=10)));
            }
            DuplicateInvoice => inv.copies = 2,
            DuplicateLine => {
                let line = &mut self.lines[inv.lines.start];
                line.copies = 2;
                anomaly.line_no = Some(line.line_no);
            }
            UnknownCustomer => {
                inv.customer_no = (self.customers.len() + 1 + k) as u32;
            }
            RefundExceedsLine | RefundOfUncollectedLine => {
                // No line left to refund: nothing is broken, no anomaly recorded.
                let l = chosen_line?;
                let line = &self.lines[l];
                let (start, shares) = match (kind, inv.paid_on) {
                    // 60 % then another 60 %: the second exceeds what is left.
                    (RefundExceedsLine, Some(paid_on)) => (paid_on, &[60i64, 60][..]),
                    _ => (inv.issued_on + days(9), &[50i64][..]),
                };
                for (n, share) in shares.iter().enumerate() {
                    self.refunds.push(Refund {
                        invoice_no: inv.no,
                        line_no: line.line_no,
                        refunded_on: (start + days(n as i64 + 1)).min(as_of),
                        amount_cents: (line.amount_cents * share / 100).max(1),
                    });
                }
                anomaly.line_no = Some(line.line_no);
            }
            BadCurrency => inv.currency = "US$",
            BadRevenueType => {
                let line = &mut self.lines[inv.lines.start];
                line.revenue_type = "hardware";
                anomaly.line_no = Some(line.line_no);
            }
            BadCsat | BadNps => {}
        }
        Some(anomaly)
    }

    /// A CSAT of 7 and an NPS of 11, each on `per_kind` responses that answered that
    /// question and no other anomaly has touched.
    fn break_surveys(&mut self, rng: &mut ChaCha8Rng) {
        use AnomalyKind::*;
        let n_surveys = self.surveys.len();
        let per_kind = (n_surveys / ANOMALY_EVERY).max(1);
        let mut touched = vec![false; n_surveys];
        for kind in [BadCsat, BadNps] {
            for _ in 0..per_kind {
                let mut chosen = None;
                for _ in 0..10_000 {
                    let i = rng.random_range(0..n_surveys);
                    let s = &self.surveys[i];
                    let fits = match kind {
                        BadCsat => s.csat.is_some(),
                        _ => s.nps.is_some(),
                    };
                    if fits && !touched[i] {
                        chosen = Some(i);
                        break;
                    }
                }
                let Some(i) = chosen else { continue };
                touched[i] = true;
                match kind {
                    BadCsat => self.surveys[i].csat = Some(7),
                    _ => self.surveys[i].nps = Some(11),
                }
                self.anomalies.push(Anomaly {
                    kind,
                    invoice_no: None,
                    line_no: None,
                    survey: Some(i),
                });
            }
        }
    }
}

/// Pick a random invoice that satisfies `fits` and has no anomaly yet; falls back to
/// a scan so that a rare candidate is still found.
fn pick_invoice(
    rng: &mut ChaCha8Rng,
    invoices: &[Invoice],
    touched: &mut [bool],
    fits: impl Fn(&Invoice) -> bool,
) -> Option<usize> {
    let n = invoices.len();
    if n == 0 {
        return None;
    }
    let start = rng.random_range(0..n);
    let found = (0..200)
        .map(|_| rng.random_range(0..n))
        .chain((0..n).map(|k| (start + k) % n))
        .find(|&i| !touched[i] && fits(&invoices[i]))?;
    touched[found] = true;
    Some(found)
}
