//! `[leads]`: what lead distribution (R8.3) needs beyond the plan — where its
//! assignments are written back for the CRM (`[leads.writeback]`). The plan's lead
//! values (capacities, selection weights) stay in the plan file (R0.5).

use serde::Deserialize;

/// `[leads]` as written in the config file (every key optional).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LeadsConfig {
    /// `[leads.writeback]`: upsert every assigned lead into a table of the CRM's
    /// database after each run; none by default (the CRM imports the CSV instead).
    pub writeback: Option<Writeback>,
    /// When ops is mailed about leads without capacity (R8.3: "ops gets one email per
    /// run listing them").
    #[serde(default)]
    pub ops_mail: OpsMail,
}

/// `leads.ops_mail`: which runs mail ops about leads left without capacity.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OpsMail {
    /// The spec's reading (default): every run that ends with leads it could not place
    /// mails ops once, listing all of them — the ones first left now and the ones still
    /// waiting from earlier runs.
    #[default]
    EveryRun,
    /// Only a run that leaves a lead without capacity for the first time (or assigns a
    /// lead to an operator without an address); its mail still lists the older ones.
    /// For a frequent schedule, where the same list every 15 minutes would bury ops.
    WhenNew,
}

/// `[leads.writeback]`: a table in the CRM's database that opnet keeps filled with
/// its assignments (`lead_id` → `operator_id`, `rule`, `assigned_at`), one row per
/// assigned lead, upserted on `lead_id`.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Writeback {
    /// `postgres://…`, `sqlite:FILE`, or `env:NAME` (the URL is read from that
    /// environment variable when the write-back runs, so it stays out of the file).
    pub url: String,
    /// The table, `name` or `schema.name` (letters, digits and `_`): it must exist,
    /// with a unique key on `lead_id` (docs/operations.md, "Lead distribution").
    pub table: String,
}

impl Writeback {
    /// The database URL, with `env:NAME` looked up; `Err` names the variable.
    pub fn resolve_url(&self) -> Result<String, String> {
        match self.url.strip_prefix("env:") {
            Some(name) => std::env::var(name).map_err(|_| {
                format!(
                    "environment variable {name} (leads.writeback.url = \"env:{name}\") is not set"
                )
            }),
            None => Ok(self.url.clone()),
        }
    }

    /// The URL safe to show: `env:NAME` as written, otherwise without its password.
    pub fn display_url(&self) -> String {
        if self.url.starts_with("env:") {
            self.url.clone()
        } else {
            crate::db::redact(&self.url)
        }
    }
}

impl std::fmt::Debug for Writeback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writeback")
            .field("url", &self.display_url())
            .field("table", &self.table)
            .finish()
    }
}

/// A table name opnet may splice into SQL: `name` or `schema.name`, each part a
/// letter or `_` then letters, digits or `_` (at most 63 characters, PostgreSQL's
/// limit). Anything else — quotes, spaces, semicolons — is refused, so the name can
/// never carry SQL of its own.
pub fn is_table_name(name: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.len() <= 63
            && p.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let parts: Vec<&str> = name.split('.').collect();
    (1..=2).contains(&parts.len()) && parts.iter().all(|p| part(p))
}

impl LeadsConfig {
    /// Every problem of `[leads]`, each naming its key (prefixed by `at`, the file).
    pub fn problems(&self, at: &str) -> Vec<String> {
        let mut p = Vec::new();
        let Some(w) = &self.writeback else {
            return p;
        };
        match w.url.strip_prefix("env:") {
            Some(var) => {
                if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    p.push(format!(
                        "{at}: key leads.writeback.url: env: needs an environment variable name, got {:?}",
                        w.url
                    ));
                }
            }
            None => {
                if !(w.url.starts_with("sqlite:")
                    || w.url.starts_with("postgres://")
                    || w.url.starts_with("postgresql://"))
                {
                    p.push(format!(
                        "{at}: key leads.writeback.url: expected postgres://…, sqlite:FILE or env:NAME, got {:?}",
                        crate::db::redact(&w.url)
                    ));
                }
            }
        }
        if !is_table_name(&w.table) {
            p.push(format!(
                "{at}: key leads.writeback.table: expected a table name such as crm_lead_assignments \
                 or crm.lead_assignments (letters, digits, _), got {:?}",
                w.table
            ));
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wb(url: &str, table: &str) -> LeadsConfig {
        LeadsConfig {
            writeback: Some(Writeback {
                url: url.into(),
                table: table.into(),
            }),
            ops_mail: OpsMail::EveryRun,
        }
    }

    #[test]
    fn table_names_are_plain_identifiers() {
        for ok in ["crm_lead_assignments", "crm.lead_assignments", "_t1", "T"] {
            assert!(is_table_name(ok), "{ok}");
        }
        for bad in [
            "",
            "a.b.c",
            "1table",
            "t; DROP TABLE leads",
            "\"t\"",
            "t x",
            "a.",
            ".a",
            "tä",
            &"x".repeat(64),
        ] {
            assert!(!is_table_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn writeback_problems_name_their_key_and_hide_passwords() {
        assert!(LeadsConfig::default().problems("f").is_empty());
        assert!(
            wb("postgres://crm@db/crm", "crm_leads")
                .problems("f")
                .is_empty()
        );
        assert!(wb("env:CRM_URL", "crm.leads").problems("f").is_empty());
        let p = wb("mysql://u:secret@db/crm", "leads; --").problems("f.toml");
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("f.toml: key leads.writeback.url"), "{p:?}");
        assert!(!p[0].contains("secret"), "{p:?}");
        assert!(p[1].contains("key leads.writeback.table"), "{p:?}");
        let p = wb("env:", "t").problems("f");
        assert!(
            p[0].contains("env: needs an environment variable name"),
            "{p:?}"
        );
        let shown = format!("{:?}", wb("postgres://u:secret@db/crm", "t").writeback);
        assert!(!shown.contains("secret"), "{shown}");
    }
}
