//! The fixed vocabularies the generator draws names and categories from: metros
//! (with their currency and how many operators they attract), verticals, words for
//! operator and customer names, lead sources and training modules.

pub(super) struct Metro {
    pub(super) name: &'static str,
    /// Used in territory ids.
    pub(super) code: &'static str,
    pub(super) currency: &'static str,
    /// Relative share of operators based there: big US metros attract more.
    pub(super) weight: u32,
}

pub(super) const METROS: &[Metro] = &[
    metro("New York", "NYC", "USD", 12),
    metro("Los Angeles", "LAX", "USD", 10),
    metro("Chicago", "CHI", "USD", 9),
    metro("Houston", "HOU", "USD", 7),
    metro("Dallas", "DAL", "USD", 7),
    metro("Phoenix", "PHX", "USD", 6),
    metro("Philadelphia", "PHL", "USD", 6),
    metro("Seattle", "SEA", "USD", 6),
    metro("San Antonio", "SAT", "USD", 5),
    metro("San Diego", "SAN", "USD", 5),
    metro("Austin", "AUS", "USD", 5),
    metro("Denver", "DEN", "USD", 5),
    metro("Berlin", "BER", "EUR", 5),
    metro("Paris", "PAR", "EUR", 5),
    metro("Toronto", "YTO", "CAD", 5),
];

const fn metro(
    name: &'static str,
    code: &'static str,
    currency: &'static str,
    weight: u32,
) -> Metro {
    Metro {
        name,
        code,
        currency,
        weight,
    }
}

/// (vertical id, the word a practice of that vertical puts in its name).
pub(super) const VERTICALS: &[(&str, &str)] = &[
    ("dental", "Dental"),
    ("veterinary", "Animal Hospital"),
    ("chiropractic", "Chiropractic"),
    ("physical_therapy", "Physical Therapy"),
    ("optometry", "Eye Care"),
    ("dermatology", "Dermatology"),
    ("med_spa", "Med Spa"),
    ("behavioral_health", "Counseling"),
];

pub(super) const OPERATOR_WORDS: &[&str] = &[
    "Summit",
    "Harbor",
    "Cedar",
    "Northstar",
    "Bluebird",
    "Keystone",
    "Pioneer",
    "Lakeside",
    "Ironwood",
    "Silver Oak",
    "Granite",
    "Riverbend",
    "Beacon",
    "Evergreen",
    "Copper",
    "Meridian",
    "Redwood",
    "Atlas",
    "Sterling",
    "Willow",
];
pub(super) const OPERATOR_SUFFIXES: &[&str] = &[
    "Practice Partners",
    "Health Systems",
    "Clinic Solutions",
    "Digital",
    "Consulting",
    "Group",
    "Advisors",
    "Tech Services",
];
pub(super) const CUSTOMER_WORDS: &[&str] = &[
    "Maple",
    "Oak Street",
    "Sunrise",
    "Hillside",
    "Brookside",
    "Main Street",
    "Parkview",
    "Lakeview",
    "Westside",
    "Eastgate",
    "Riverside",
    "Cornerstone",
    "Greenway",
    "Bayside",
    "Highland",
    "Valley",
    "Elm Grove",
    "Pinecrest",
    "Union Square",
    "Midtown",
    "Northside",
    "Harmony",
    "Bright",
    "Gentle",
    "Family",
    "Premier",
    "Village",
    "Heritage",
    "Crossroads",
    "Meadow",
];
pub(super) const LEAD_SOURCES: &[&str] =
    &["website", "referral", "partner", "event", "paid_search"];

/// (module id, required).
pub(super) const TRAINING_MODULES: &[(&str, bool)] = &[
    ("TRN-ONBOARDING", true),
    ("TRN-PRODUCT", true),
    ("TRN-BILLING", true),
    ("TRN-COMPLIANCE", true),
    ("TRN-SALES", false),
    ("TRN-IMPLEMENTATION", false),
    ("TRN-SUPPORT", false),
    ("TRN-MARKETING", false),
];
/// Optional modules each operator takes on top of the required ones (≈6 in all).
pub(super) const OPTIONAL_MODULES_TAKEN: usize = 2;
