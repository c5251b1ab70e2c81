//! The simulated rows as the contract's datasets: one [`Table`] per dataset, ids
//! formatted here (`OP-0001`, `CUS-000001`, `INV-000001`, …).

use anyhow::{Result, bail};
use opnet_pipelines::contract::Dataset;

use super::SourceShape;
use super::network::*;
use super::vocab::{METROS, TRAINING_MODULES, VERTICALS};
use super::write::{Cell, Table};

fn operator_id(i: usize) -> String {
    format!("OP-{:04}", i + 1)
}
fn customer_id(no: u32) -> String {
    format!("CUS-{no:06}")
}
fn invoice_id(no: u32) -> String {
    format!("INV-{no:06}")
}

impl Network {
    pub(super) fn table(&self, dataset: &'static Dataset, shape: SourceShape) -> Result<Table> {
        let path = dataset.path();
        match path.as_str() {
            "billing/invoices" => self.invoices_table(dataset),
            "billing/invoice_lines" => self.lines_table(dataset),
            "billing/refunds" => self.refunds_table(dataset),
            "crm/operators" => self.operators_table(dataset),
            "crm/territories" => self.territories_table(dataset),
            "crm/customers" => self.customers_table(dataset),
            "crm/leads" => self.leads_table(dataset, shape.referrals),
            "crm/training" => self.training_table(dataset),
            "survey/survey_responses" => self.surveys_table(dataset),
            other => bail!("the generator does not know the dataset {other}"),
        }
    }

    fn invoices_table(&self, ds: &'static Dataset) -> Result<Table> {
        let mut t = Table::new(ds, self.invoices.len() + 64);
        for inv in &self.invoices {
            let id = invoice_id(inv.no);
            let customer = customer_id(inv.customer_no);
            for _ in 0..inv.copies {
                t.push(&[
                    Cell::Str(&id),
                    Cell::Str(&customer),
                    Cell::Str(inv.currency),
                    Cell::Date(inv.issued_on),
                    Cell::Str(inv.status.as_str()),
                    inv.paid_on.into(),
                    Cell::Int(inv.total_cents),
                ])?;
            }
        }
        Ok(t)
    }

    fn lines_table(&self, ds: &'static Dataset) -> Result<Table> {
        let mut t = Table::new(ds, self.lines.len() + 64);
        for line in &self.lines {
            let id = invoice_id(line.invoice_no);
            for _ in 0..line.copies {
                t.push(&[
                    Cell::Str(&id),
                    Cell::Int(line.line_no),
                    Cell::Str(line.revenue_type),
                    Cell::Int(line.amount_cents),
                    Cell::Date(line.service_start),
                    Cell::Date(line.service_end),
                ])?;
            }
        }
        Ok(t)
    }

    fn refunds_table(&self, ds: &'static Dataset) -> Result<Table> {
        let mut t = Table::new(ds, self.refunds.len());
        for (i, r) in self.refunds.iter().enumerate() {
            t.push(&[
                Cell::Str(&format!("RF-{:06}", i + 1)),
                Cell::Str(&invoice_id(r.invoice_no)),
                Cell::Int(r.line_no),
                Cell::Date(r.refunded_on),
                Cell::Int(r.amount_cents),
            ])?;
        }
        Ok(t)
    }

    fn operators_table(&self, ds: &'static Dataset) -> Result<Table> {
        let mut t = Table::new(ds, self.operators.len());
        for (i, op) in self.operators.iter().enumerate() {
            let id = operator_id(i);
            let verticals: Vec<&str> = op.verticals.iter().map(|&v| VERTICALS[v].0).collect();
            t.push(&[
                Cell::Str(&id),
                Cell::Str(&op.name),
                Cell::Str(&format!("ops@{}.example.com", id.to_lowercase())),
                Cell::Str(METROS[op.metro].name),
                Cell::Str(&verticals.join(";")),
                Cell::Date(op.joined_on),
                op.terminated_on.into(),
            ])?;
        }
        Ok(t)
    }

    fn territories_table(&self, ds: &'static Dataset) -> Result<Table> {
        let mut t = Table::new(ds, self.territories.len());
        for ter in &self.territories {
            let metro = &METROS[ter.metro];
            let holder = ter.exclusive.map(|(op, _)| operator_id(op));
            t.push(&[
                Cell::Str(&format!("TER-{}", metro.code)),
                Cell::Str(metro.name),
                Cell::Str(metro.currency),
                holder.as_deref().into(),
                ter.exclusive.map(|(_, since)| since).into(),
            ])?;
        }
        Ok(t)
    }

    fn customers_table(&self, ds: &'static Dataset) -> Result<Table> {
        let mut t = Table::new(ds, self.customers.len());
        for (i, c) in self.customers.iter().enumerate() {
            let operator = c.has_operator.then(|| operator_id(c.operator));
            let go_live = Some(c.go_live_plan).filter(|d| *d <= self.as_of);
            t.push(&[
                Cell::Str(&customer_id(i as u32 + 1)),
                operator.as_deref().into(),
                Cell::Str(&c.name),
                Cell::Str(VERTICALS[c.vertical].0),
                Cell::Str(METROS[self.operators[c.operator].metro].name),
                Cell::Date(c.signed_on),
                go_live.into(),
                c.churned_on.into(),
            ])?;
        }
        Ok(t)
    }

    /// crm/leads, with the optional `referred_by_operator_id` column when
    /// `referrals` (R8.1), without it otherwise (a CRM without referral tracking).
    fn leads_table(&self, ds: &'static Dataset, referrals: bool) -> Result<Table> {
        let optional: &[&str] = if referrals {
            &["referred_by_operator_id"]
        } else {
            &[]
        };
        let mut t = Table::with_optional(ds, optional, self.leads.len());
        for (i, l) in self.leads.iter().enumerate() {
            let assigned = l.assigned.map(operator_id);
            let converted = l.converted_customer_no.map(customer_id);
            let referred_by = l.referred_by.map(operator_id);
            let row = [
                Cell::Str(&format!("LD-{:07}", i + 1)),
                Cell::Str(l.source),
                Cell::Str(VERTICALS[l.vertical].0),
                Cell::Str(METROS[l.metro].name),
                Cell::Ts(l.created_at),
                assigned.as_deref().into(),
                l.first_contact_at.into(),
                converted.as_deref().into(),
                referred_by.as_deref().into(),
            ];
            t.push(if referrals { &row } else { &row[..8] })?;
        }
        Ok(t)
    }

    fn training_table(&self, ds: &'static Dataset) -> Result<Table> {
        let mut t = Table::new(ds, self.training.len());
        for r in &self.training {
            let (module, required) = TRAINING_MODULES[r.module];
            t.push(&[
                Cell::Str(&operator_id(r.operator)),
                Cell::Str(module),
                Cell::Bool(required),
                r.completed_on.into(),
            ])?;
        }
        Ok(t)
    }

    fn surveys_table(&self, ds: &'static Dataset) -> Result<Table> {
        let mut t = Table::new(ds, self.surveys.len());
        for (i, s) in self.surveys.iter().enumerate() {
            t.push(&[
                Cell::Str(&format!("SR-{:07}", i + 1)),
                Cell::Str(&customer_id(s.customer_no)),
                Cell::Str(&operator_id(s.operator)),
                Cell::Date(s.submitted_on),
                s.nps.into(),
                s.csat.into(),
            ])?;
        }
        Ok(t)
    }
}
