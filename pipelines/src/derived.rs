//! Period-independent frames derived from a snapshot, computed once and shared by
//! every period of a close (issue 13).
//!
//! A close recomputed, for each of its periods, joins over the whole history that do
//! not depend on the period at all: every software line with its invoice and owner
//! (MRR, R6.1), which exclusivity, the scorecard, equity and the network-health
//! report all read. [`memo`] keeps such a frame for the datasets it was derived from
//! and hands it out again while those very datasets are in use. (R7 reads only the
//! month's invoices and their lines, narrowed before any join, so it needs no memo.)
//!
//! Identity, not equality: a dataset counts as "the same" only when it is the same
//! in-memory frame (the `Arc` that [`crate::Inputs`] holds from the lake), so a
//! changed dataset — a test's literal frame, a filtered copy — can never be served an
//! old result. Datasets that are not in-memory frames (a lazy scan, a filtered plan)
//! are never memoized: the plan is returned as it is, as before. One entry per key is
//! kept (the latest datasets), so memory is bounded by one snapshot's derived frames.

use polars::prelude::*;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

struct Entry {
    /// The datasets the frame was derived from; held, so that their addresses
    /// cannot be reused by other frames while the entry exists.
    sources: Vec<Arc<DataFrame>>,
    frame: DataFrame,
}

static MEMO: Mutex<BTreeMap<&'static str, Entry>> = Mutex::new(BTreeMap::new());

/// The in-memory frame behind a lazy frame that is nothing but a scan of it.
pub(crate) fn in_memory(lf: &LazyFrame) -> Option<Arc<DataFrame>> {
    match &lf.logical_plan {
        DslPlan::DataFrameScan { df, .. } => Some(df.clone()),
        _ => None,
    }
}

fn same(a: &[Arc<DataFrame>], b: &[Arc<DataFrame>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| Arc::ptr_eq(x, y))
}

/// `plan`, collected once per set of `sources` and served from memory after that.
///
/// `key` names what `plan` computes, and `plan` must be a function of `sources`
/// alone (no period, no plan parameters). When a source is not an in-memory frame,
/// `plan` is returned unevaluated. An error evaluating it is returned as the plan
/// itself, so it surfaces (with the caller's context) where the caller collects.
pub fn memo(key: &'static str, sources: &[&LazyFrame], plan: LazyFrame) -> LazyFrame {
    let Some(ids) = sources
        .iter()
        .map(|lf| in_memory(lf))
        .collect::<Option<Vec<_>>>()
    else {
        return plan;
    };
    if let Ok(held) = MEMO.lock()
        && let Some(e) = held.get(key)
        && same(&e.sources, &ids)
    {
        return e.frame.clone().lazy();
    }
    let Ok(frame) = plan.clone().collect() else {
        return plan;
    };
    if let Ok(mut held) = MEMO.lock() {
        held.insert(
            key,
            Entry {
                sources: ids,
                frame: frame.clone(),
            },
        );
    }
    frame.lazy()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(df: LazyFrame) -> i64 {
        let df = df.collect().unwrap();
        let c = df.column("n").unwrap().cast(&DataType::Int64).unwrap();
        c.i64().unwrap().get(0).unwrap()
    }

    fn count(lf: &LazyFrame) -> LazyFrame {
        lf.clone().select([len().cast(DataType::Int64).alias("n")])
    }

    fn other(lf: &LazyFrame) -> LazyFrame {
        lf.clone().select([lit(99i64).alias("n")]).limit(1)
    }

    #[test]
    fn the_same_frame_is_served_from_memory() {
        let a = df!("x" => [1i64, 2, 3]).unwrap().lazy();
        assert_eq!(n(memo("test/same", &[&a], count(&a))), 3);
        // The same in-memory frame (a clone shares it): the first result, even though
        // this plan would compute 99.
        let shared = a.clone();
        assert_eq!(n(memo("test/same", &[&shared], other(&shared))), 3);
    }

    #[test]
    fn another_frame_or_a_plan_is_never_served_an_old_result() {
        let a = df!("x" => [1i64, 2, 3]).unwrap().lazy();
        assert_eq!(n(memo("test/other", &[&a], count(&a))), 3);
        // Equal data in a new frame: computed afresh.
        let b = df!("x" => [1i64, 2, 3]).unwrap().lazy();
        assert_eq!(n(memo("test/other", &[&b], other(&b))), 99);
        // A plan over the frame (not the frame itself): never memoized.
        let filtered = b.clone().filter(col("x").gt(lit(1i64)));
        assert_eq!(n(memo("test/other", &[&filtered], count(&filtered))), 2);
        assert_eq!(n(memo("test/other", &[&filtered], other(&filtered))), 99);
    }
}
