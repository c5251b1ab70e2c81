//! The datasets of one lake snapshot, as lazy frames in the contract's column names
//! and types ([`crate::contract`]). The binary builds this from the lake; tests build
//! it from small literal frames.

use crate::period::Period;
use polars::prelude::*;

/// One snapshot's datasets. Cloning is cheap (lazy plans).
#[derive(Clone)]
pub struct Inputs {
    pub invoices: LazyFrame,
    pub invoice_lines: LazyFrame,
    pub refunds: LazyFrame,
    pub operators: LazyFrame,
    pub territories: LazyFrame,
    pub customers: LazyFrame,
    pub leads: LazyFrame,
    pub training: LazyFrame,
    pub survey_responses: LazyFrame,
}

impl Inputs {
    /// Empty frames with the contract's schema; tests replace what they need.
    pub fn empty() -> Self {
        use crate::contract as c;
        let e = |d: &c::Dataset| {
            let cols: Vec<Column> = d
                .columns
                .iter()
                .map(|col| Column::new_empty(col.name.into(), &col.ty.dtype()))
                .collect();
            DataFrame::new_infer_height(cols)
                .expect("unique names")
                .lazy()
        };
        Self {
            invoices: e(&c::INVOICES),
            invoice_lines: e(&c::INVOICE_LINES),
            refunds: e(&c::REFUNDS),
            operators: e(&c::OPERATORS),
            territories: e(&c::TERRITORIES),
            customers: e(&c::CUSTOMERS),
            leads: e(&c::LEADS),
            training: e(&c::TRAINING),
            survey_responses: e(&c::SURVEY_RESPONSES),
        }
    }

    /// The first billing period of the data (R3.5): the month of the earliest
    /// `issued_on`, `paid_on` or `refunded_on`; `None` without any billing date. A month
    /// before it was never closed, so no rule counts it (e.g. as a breach).
    pub fn first_billing_period(&self) -> PolarsResult<Option<Period>> {
        let days = |lf: &LazyFrame, c: &str| -> PolarsResult<Option<i32>> {
            let df = lf
                .clone()
                .select([col(c).cast(DataType::Date).min().alias("d")])
                .collect()?;
            Ok(df.column("d")?.cast(&DataType::Int32)?.i32()?.get(0))
        };
        let first = [
            days(&self.invoices, "issued_on")?,
            days(&self.invoices, "paid_on")?,
            days(&self.refunds, "refunded_on")?,
        ]
        .into_iter()
        .flatten()
        .min();
        Ok(first.map(|d| Period::of_date(crate::period::days_to_date(d))))
    }

    /// Set a dataset by its contract path (`billing/invoices`) or name.
    pub fn set(&mut self, dataset: &str, frame: LazyFrame) -> Result<(), String> {
        let slot = match dataset.rsplit('/').next().unwrap_or(dataset) {
            "invoices" => &mut self.invoices,
            "invoice_lines" => &mut self.invoice_lines,
            "refunds" => &mut self.refunds,
            "operators" => &mut self.operators,
            "territories" => &mut self.territories,
            "customers" => &mut self.customers,
            "leads" => &mut self.leads,
            "training" => &mut self.training,
            "survey_responses" => &mut self.survey_responses,
            other => return Err(format!("unknown dataset {other}")),
        };
        *slot = frame;
        Ok(())
    }
}
