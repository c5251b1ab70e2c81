//! The input side of the data contract (data-contract.md, "Inputs"): every dataset,
//! its columns, their types and allowed values.
//!
//! Ingest validates against these definitions, the generator writes them, and the
//! pipelines read the lake in exactly these column names and Polars types.

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
}

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
    pub columns: &'static [Column],
}

impl Dataset {
    /// `billing/invoices`: the path below a source folder and the lake's `raw/`.
    pub fn path(&self) -> String {
        format!("{}/{}", self.system, self.name)
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
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
        c("total_cents", Int),
    ],
};

pub static INVOICE_LINES: Dataset = Dataset {
    system: "billing",
    name: "invoice_lines",
    columns: &[
        c("invoice_id", Str),
        c("line_no", Int),
        chk("revenue_type", Str, false, Check::OneOf(REVENUE_TYPES)),
        c("amount_cents", Int),
        c("service_start", Date),
        c("service_end", Date),
    ],
};

pub static REFUNDS: Dataset = Dataset {
    system: "billing",
    name: "refunds",
    columns: &[
        c("refund_id", Str),
        c("invoice_id", Str),
        c("line_no", Int),
        c("refunded_on", Date),
        chk("amount_cents", Int, false, Check::Range(0, i64::MAX)),
    ],
};

pub static OPERATORS: Dataset = Dataset {
    system: "crm",
    name: "operators",
    columns: &[
        c("operator_id", Str),
        c("name", Str),
        c("email", Str),
        c("metro", Str),
        c("verticals", Str),
        c("joined_on", Date),
        opt("terminated_on", Date),
    ],
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
}
