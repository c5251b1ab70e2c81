//! The operator directory: who each operator is and where its mail goes, from
//! crm/operators — the one lookup every email of every job uses, built from the same
//! rows the rules read.
//!
//! Ingest keeps one row per `operator_id` (identical repeats collapse, conflicting
//! ones are quarantined), so normally every id has one entry. Should a snapshot hold
//! an id twice with different names or addresses anyway (an older snapshot, a test),
//! the id gets no entry at all: which address is right is never decided by file order,
//! and a mail without an address fails visibly instead of reaching someone else.

use crate::Inputs;
use polars::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// One operator's name and address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    pub name: String,
    pub email: String,
}

/// `operator_id` → [`Contact`] for every operator with exactly one name and address.
pub fn operator_directory(inputs: &Inputs) -> PolarsResult<BTreeMap<String, Contact>> {
    let df = inputs
        .operators
        .clone()
        .select([col("operator_id"), col("name"), col("email")])
        .collect()?;
    let ids = df.column("operator_id")?.str()?.clone();
    let names = df.column("name")?.str()?.clone();
    let emails = df.column("email")?.str()?.clone();
    let mut out: BTreeMap<String, Contact> = BTreeMap::new();
    let mut ambiguous = BTreeSet::new();
    for i in 0..df.height() {
        let (Some(id), Some(name), Some(email)) = (ids.get(i), names.get(i), emails.get(i)) else {
            continue;
        };
        let contact = Contact {
            name: name.to_string(),
            email: email.to_string(),
        };
        match out.get(id) {
            Some(known) if *known != contact => {
                ambiguous.insert(id.to_string());
            }
            Some(_) => {}
            None => {
                out.insert(id.to_string(), contact);
            }
        }
    }
    for id in ambiguous {
        out.remove(&id);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_conflicting_duplicate_has_no_address_and_file_order_decides_nothing() {
        let mut inputs = Inputs::empty();
        inputs.operators = df!(
            "operator_id" => ["OP-1", "OP-2", "OP-1", "OP-3", "OP-3"],
            "name" => ["One", "Two", "One", "Three", "Three"],
            "email" => ["one@x.example", "two@x.example", "two@x.example", "3@x.example", "3@x.example"],
        )
        .unwrap()
        .lazy();
        let d = operator_directory(&inputs).unwrap();
        assert_eq!(d.get("OP-1"), None, "two addresses: no entry");
        assert_eq!(d["OP-2"].email, "two@x.example");
        assert_eq!(
            d["OP-3"].email, "3@x.example",
            "identical repeats are one entry"
        );
    }
}
