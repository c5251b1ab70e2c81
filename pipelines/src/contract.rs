//! The input side of the data contract (data-contract.md, "Inputs"): every dataset,
//! its columns, their types and allowed values.
//!
//! A dataset's [`Dataset::columns`] are in every source; its
//! [`Dataset::optional_columns`] (the contract's "optional column", e.g. crm/leads'
//! `referred_by_operator_id`, R8.1) may be left out by a source. When a source has
//! one it is validated and kept like any other column; when it does not, the snapshot
//! has no such column either, so that a rule can tell "not provided" from "empty".
//!
//! Ingest validates against these definitions, the generator writes them, and the
//! pipelines read the lake in exactly these column names and Polars types. The
//! sanity bounds ingest applies beyond the contract's types (a dataset's key, money
//! magnitude, the date window, email addresses) are defined here too, so there is one
//! definition of each.

use polars::prelude::{DataType, TimeUnit};

/// A column type of the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColType {
    /// `str`
    Str,
    /// `int` (64-bit)
    Int,
    /// `date` `YYYY-MM-DD`
    Date,
    /// `ts` RFC 3339, UTC
    Ts,
    /// `bool` `true`/`false`
    Bool,
}

impl ColType {
    /// The Polars type a column has in the lake.
    pub fn dtype(self) -> DataType {
        match self {
            ColType::Str => DataType::String,
            ColType::Int => DataType::Int64,
            ColType::Date => DataType::Date,
            ColType::Ts => DataType::Datetime(TimeUnit::Milliseconds, None),
            ColType::Bool => DataType::Boolean,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ColType::Str => "str",
            ColType::Int => "int",
            ColType::Date => "date",
            ColType::Ts => "ts",
            ColType::Bool => "bool",
        }
    }
}

/// An allowed-values rule beyond the type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    None,
    /// One of these exact strings.
    OneOf(&'static [&'static str]),
    /// An ISO 4217 currency code of [`ISO_4217`].
    Currency,
    /// An integer in `lo..=hi`.
    Range(i64, i64),
    /// Money in cents (R0.2): at most [`MAX_ABS_CENTS`] in magnitude, and not negative
    /// when `nonnegative` (an amount given back).
    Cents {
        nonnegative: bool,
    },
    /// One bare email address (`name@domain`): no list, no display name, no line
    /// break. A bad address is reported as a warning and the row is kept: the
    /// operator's money must still be computed; only its mail cannot go out.
    Email,
}

/// The largest magnitude of a money value ingest accepts: 10^14 cents (one trillion
/// in major units, far beyond any real invoice). A value at the bound times a share
/// in basis points (at most 10 000) is 10^18, below `i64::MAX` (about 9.22 * 10^18),
/// so no `amount * bp` product of an accepted value can overflow `i64`, and nine such
/// products still sum without overflow. (10^15 would not do: 10^15 * 10^4 = 10^19.)
pub const MAX_ABS_CENTS: i64 = 100_000_000_000_000;

/// The default earliest date ingest accepts in any `date` or `ts` column, as
/// (year, month, day); earlier dates are quarantined. Config key
/// `ingest.earliest_date`.
pub const EARLIEST_DATE: (i32, u32, u32) = (1990, 1, 1);

/// The default window ahead of the ingest day: a date later than the ingest day plus
/// this many calendar months is quarantined. Config key `ingest.max_months_ahead`.
pub const MAX_MONTHS_AHEAD: u32 = 12;

/// One column of a dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColType,
    /// `?` in the contract: may be empty.
    pub nullable: bool,
    pub check: Check,
}

const fn c(name: &'static str, ty: ColType) -> Column {
    Column {
        name,
        ty,
        nullable: false,
        check: Check::None,
    }
}
const fn opt(name: &'static str, ty: ColType) -> Column {
    Column {
        name,
        ty,
        nullable: true,
        check: Check::None,
    }
}
const fn chk(name: &'static str, ty: ColType, nullable: bool, check: Check) -> Column {
    Column {
        name,
        ty,
        nullable,
        check,
    }
}

/// One input dataset, e.g. `billing/invoices`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dataset {
    /// The upstream system: `billing`, `crm` or `survey`.
    pub system: &'static str,
    pub name: &'static str,
    /// The columns every source has (a missing one fails the ingest), in the
    /// contract's order.
    pub columns: &'static [Column],
    /// The columns a source may leave out entirely. When present they are validated
    /// like [`Dataset::columns`] and kept; when absent the snapshot lacks them too
    /// (not a column of nulls: the rules treat "not provided" and "empty" apart).
    pub optional_columns: &'static [Column],
    /// The columns that identify a row: at most one row per key. Ingest collapses
    /// identical repeats and quarantines every row of a key whose copies differ, so
    /// file order never decides which copy counts. Empty when ingest enforces no key:
    /// `billing/invoices` and `billing/invoice_lines`, whose repeated ids are
    /// reconciliation exceptions (R7 `duplicate_invoice`, `duplicate_line`) that must
    /// reach the pipelines as they are.
    pub key: &'static [&'static str],
}

impl Dataset {
    /// `billing/invoices`: the path below a source folder and the lake's `raw/`.
    pub fn path(&self) -> String {
        format!("{}/{}", self.system, self.name)
    }

    /// A column by name, required or optional.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.all_columns().find(|c| c.name == name)
    }

    /// The required columns, then the optional ones, in the contract's order.
    pub fn all_columns(&self) -> impl Iterator<Item = &'static Column> + use<> {
        self.columns.iter().chain(self.optional_columns.iter())
    }

    /// Look a dataset up by its path (`billing/invoices`) or bare name (`invoices`).
    pub fn by_name(name: &str) -> Option<&'static Dataset> {
        ALL.iter()
            .copied()
            .find(|d| d.path() == name || d.name == name)
    }
}

use ColType::*;

pub const INVOICE_STATUSES: &[&str] = &["open", "paid", "void", "uncollectible"];
pub const REVENUE_TYPES: &[&str] = &["software", "implementation", "support"];

pub static INVOICES: Dataset = Dataset {
    system: "billing",
    name: "invoices",
    columns: &[
        c("invoice_id", Str),
        c("customer_id", Str),
        chk("currency", Str, false, Check::Currency),
        c("issued_on", Date),
        chk("status", Str, false, Check::OneOf(INVOICE_STATUSES)),
        opt("paid_on", Date),
        chk(
            "total_cents",
            Int,
            false,
            Check::Cents { nonnegative: false },
        ),
    ],
    optional_columns: &[],
    key: &[],
};

pub static INVOICE_LINES: Dataset = Dataset {
    system: "billing",
    name: "invoice_lines",
    columns: &[
        c("invoice_id", Str),
        c("line_no", Int),
        chk("revenue_type", Str, false, Check::OneOf(REVENUE_TYPES)),
        chk(
            "amount_cents",
            Int,
            false,
            Check::Cents { nonnegative: false },
        ),
        c("service_start", Date),
        c("service_end", Date),
    ],
    optional_columns: &[],
    key: &[],
};

pub static REFUNDS: Dataset = Dataset {
    system: "billing",
    name: "refunds",
    columns: &[
        c("refund_id", Str),
        c("invoice_id", Str),
        c("line_no", Int),
        c("refunded_on", Date),
        chk(
            "amount_cents",
            Int,
            false,
            Check::Cents { nonnegative: true },
        ),
    ],
    optional_columns: &[],
    key: &["refund_id"],
};

pub static OPERATORS: Dataset = Dataset {
    system: "crm",
    name: "operators",
    columns: &[
        c("operator_id", Str),
        c("name", Str),
        chk("email", Str, false, Check::Email),
        c("metro", Str),
        c("verticals", Str),
        c("joined_on", Date),
        opt("terminated_on", Date),
    ],
    optional_columns: &[],
    key: &["operator_id"],
};

pub static TERRITORIES: Dataset = Dataset {
    system: "crm",
    name: "territories",
    columns: &[
        c("territory_id", Str),
        c("metro", Str),
        chk("currency", Str, false, Check::Currency),
        opt("exclusive_operator_id", Str),
        opt("exclusive_since", Date),
    ],
    optional_columns: &[],
    key: &["territory_id"],
};

pub static CUSTOMERS: Dataset = Dataset {
    system: "crm",
    name: "customers",
    columns: &[
        c("customer_id", Str),
        opt("operator_id", Str),
        c("name", Str),
        c("vertical", Str),
        c("metro", Str),
        c("contract_signed_on", Date),
        opt("go_live_on", Date),
        opt("churned_on", Date),
    ],
    optional_columns: &[],
    key: &["customer_id"],
};

pub static LEADS: Dataset = Dataset {
    system: "crm",
    name: "leads",
    columns: &[
        c("lead_id", Str),
        c("source", Str),
        c("vertical", Str),
        c("metro", Str),
        c("created_at", Ts),
        opt("assigned_operator_id", Str),
        opt("first_contact_at", Ts),
        opt("converted_customer_id", Str),
    ],
    // R8.1 `community_contribution`: the operator that referred a `source = referral`
    // lead. A CRM without referral tracking leaves the column out; the scorecard then
    // has no such component value (null), rather than zero referrals for everyone.
    optional_columns: &[opt("referred_by_operator_id", Str)],
    key: &["lead_id"],
};

pub static TRAINING: Dataset = Dataset {
    system: "crm",
    name: "training",
    columns: &[
        c("operator_id", Str),
        c("module_id", Str),
        c("required", Bool),
        opt("completed_on", Date),
    ],
    optional_columns: &[],
    key: &["operator_id", "module_id"],
};

pub static SURVEY_RESPONSES: Dataset = Dataset {
    system: "survey",
    name: "survey_responses",
    columns: &[
        c("response_id", Str),
        c("customer_id", Str),
        c("operator_id", Str),
        c("submitted_on", Date),
        chk("nps_score", Int, true, Check::Range(0, 10)),
        chk("csat_score", Int, true, Check::Range(1, 5)),
    ],
    optional_columns: &[],
    key: &["response_id"],
};

/// Every input dataset, in ingest order.
pub static ALL: &[&Dataset] = &[
    &INVOICES,
    &INVOICE_LINES,
    &REFUNDS,
    &OPERATORS,
    &TERRITORIES,
    &CUSTOMERS,
    &LEADS,
    &TRAINING,
    &SURVEY_RESPONSES,
];

/// Active ISO 4217 currency codes (the list of the standard's table A.1, 2024).
pub static ISO_4217: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD",
    "CDF", "CHF", "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD",
    "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ",
    "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD",
    "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR",
    "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR",
    "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN",
    "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR",
    "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB",
    "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS",
    "VED", "VES", "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW",
    "ZWG",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datasets_are_unique_and_findable() {
        for d in ALL {
            assert_eq!(
                Dataset::by_name(&d.path()).map(|x| x.path()),
                Some(d.path())
            );
        }
        assert!(
            ISO_4217.windows(2).all(|w| w[0] < w[1]),
            "sorted for binary search"
        );
    }

    /// A key is made of required text columns of its own dataset; only the two
    /// billing datasets whose repeats are R7 exceptions have none.
    #[test]
    fn keys_are_required_text_columns() {
        for d in ALL {
            for k in d.key {
                // A key column is in every source: never an optional one.
                let c = d.columns.iter().find(|c| c.name == *k);
                assert!(
                    c.is_some_and(|c| !c.nullable && c.ty == ColType::Str),
                    "{}: key column {k}",
                    d.path()
                );
            }
            let unkeyed = [INVOICES.path(), INVOICE_LINES.path()].contains(&d.path());
            assert_eq!(d.key.is_empty(), unkeyed, "{}", d.path());
        }
    }

    /// R0.2: an accepted amount times a share in basis points cannot overflow i64.
    #[test]
    fn money_bound_leaves_room_for_basis_points() {
        assert!(MAX_ABS_CENTS.checked_mul(10_000).is_some());
        assert!((MAX_ABS_CENTS * 10_000).checked_mul(9).is_some());
        for d in ALL {
            for c in d.all_columns() {
                if c.name.ends_with("_cents") {
                    assert!(
                        matches!(c.check, Check::Cents { .. }),
                        "{}.{}",
                        d.path(),
                        c.name
                    );
                }
            }
        }
    }

    /// An optional column may be empty where present (`?` in the contract), has a
    /// name of its own in its dataset, and is never part of the key. crm/leads'
    /// `referred_by_operator_id` is one (R8.1), exactly as the scorecard names it.
    #[test]
    fn optional_columns_are_nullable_and_distinct() {
        for d in ALL {
            let names: Vec<&str> = d.all_columns().map(|c| c.name).collect();
            for (i, n) in names.iter().enumerate() {
                assert!(!names[..i].contains(n), "{}: {n} twice", d.path());
            }
            for c in d.optional_columns {
                assert!(c.nullable, "{}.{}", d.path(), c.name);
                assert!(!d.key.contains(&c.name), "{}.{}", d.path(), c.name);
            }
        }
        let referred = LEADS
            .optional_columns
            .iter()
            .find(|c| c.name == crate::scorecard::REFERRED_BY);
        assert_eq!(
            referred.map(|c| (c.ty, c.nullable, c.check)),
            Some((ColType::Str, true, Check::None))
        );
        assert!(
            LEADS
                .columns
                .iter()
                .all(|c| c.name != crate::scorecard::REFERRED_BY)
        );
        assert_eq!(
            LEADS.column(crate::scorecard::REFERRED_BY).map(|c| c.name),
            Some("referred_by_operator_id")
        );
    }
}
