//! Configuration: every problem named with its file and key, the order flag >
//! environment > file > default, the `OPNET__SECTION__KEY` mechanism, masked secrets.

use super::*;

fn load(text: &str, over: Overrides) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("opnet.toml");
    std::fs::write(&p, text).unwrap();
    Config::load(&Overrides {
        config: Some(p),
        ..over
    })
}

#[test]
fn defaults_are_the_embedded_ones() {
    let c = load("", Overrides::default()).unwrap();
    assert_eq!(c.database, DEFAULT_DATABASE);
    assert_eq!(c.mail, DEFAULT_MAIL);
    assert_eq!(c.plan.versions[0].version, "playbook");
}

#[test]
fn flag_beats_file() {
    let c = load(
        "database = \"sqlite://a.db\"\n",
        Overrides {
            database: Some("sqlite://b.db".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(c.database, "sqlite://b.db");
    let c = load("database = \"sqlite://a.db\"\n", Overrides::default()).unwrap();
    assert_eq!(c.database, "sqlite://a.db");
}

#[test]
fn unknown_key_is_named() {
    let e = load("databse = \"x\"\n", Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("databse"), "{e}");
    assert!(e.contains("opnet.toml"), "{e}");
}

#[test]
fn every_bad_value_is_reported_with_its_key() {
    let e = load(
        "database = \"mysql://x\"\nmail = \"smtp://host:notaport\"\n[email]\nfinance = [\"not an address\"]\n",
        Overrides::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("key database"), "{e}");
    assert!(e.contains("key mail"), "{e}");
    assert!(e.contains("key email.finance"), "{e}");
}

#[test]
fn smtp_settings_resolve_relative_to_the_file_and_env_beats_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("opnet.toml");
    std::fs::write(
        &p,
        "mail = \"smtp+starttls://mail.example.com\"\n[smtp]\nusername = \"opnet\"\n\
         password_file = \"secrets/smtp\"\nca_file = \"ca.pem\"\n",
    )
    .unwrap();
    let c = Config::load(&Overrides {
        config: Some(p.clone()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(c.smtp.username.as_deref(), Some("opnet"));
    assert_eq!(
        c.smtp.password,
        Some(Password::File(dir.path().join("secrets/smtp")))
    );
    assert_eq!(c.smtp.ca_file, Some(dir.path().join("ca.pem")));
    let c = Config::load(&Overrides {
        config: Some(p),
        smtp_username: Some("other".into()),
        smtp_password: Some("hunter2".into()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(c.smtp.username.as_deref(), Some("other"));
    assert_eq!(
        c.smtp.password,
        Some(Password::Value(Secret::new("hunter2")))
    );
    assert!(
        !format!("{c:?}").contains("hunter2"),
        "Debug must hide the password"
    );
}

#[test]
fn smtp_credentials_need_tls_and_both_halves() {
    let e = load(
        "mail = \"smtp://relay.internal:25\"\n[smtp]\nusername = \"u\"\npassword_file = \"p\"\n",
        Overrides::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("key smtp") && e.contains("smtp+starttls://"),
        "{e}"
    );
    let e = load(
        "mail = \"smtps://relay.internal\"\n[smtp]\nusername = \"u\"\n",
        Overrides::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("no password"), "{e}");
    // The password has no key in the file: it would sit beside the config in clear.
    let e = load("[smtp]\npassword = \"x\"\n", Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("password"), "{e}");
    let e = load(
        "mail = \"smtp://u:hunter2@relay.internal\"\n",
        Overrides::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("key mail") && !e.contains("hunter2"), "{e}");
}

#[test]
fn plan_file_errors_name_the_plan_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("plan.toml"),
        "[[version]]\nversion = \"a\"\neffective_from = \"2025-13\"\n",
    )
    .unwrap();
    let p = dir.path().join("opnet.toml");
    std::fs::write(&p, "plan_file = \"plan.toml\"\n").unwrap();
    let e = Config::load(&Overrides {
        config: Some(p),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("plan.toml"), "{e}");
    assert!(e.contains("2025-13"), "{e}");
}

#[test]
fn schedule_errors_name_their_keys() {
    let e = load(
        "[schedule]\ntimezone = \"Mars/Olympus\"\n[[schedule.jobs]]\nname = \"close\"\ncron = \"0 0 6 1 * *\"\n\
         [[schedule.jobs]]\nname = \"ingest\"\ncron = \"every day\"\n[[schedule.jobs]]\nname = \"payday\"\ncron = \"0 0 1 * * *\"\n",
        Overrides::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("key schedule.timezone"), "{e}");
    assert!(e.contains("Mars/Olympus"), "{e}");
    assert!(e.contains("key schedule.jobs[1].cron"), "{e}");
    assert!(e.contains("key schedule.jobs[2].name"), "{e}");
    assert!(!e.contains("schedule.jobs[0]"), "{e}");
    let e = load("[schedule]\ntimezon = \"UTC\"\n", Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("timezon"), "{e}");
}

#[test]
fn schedule_defaults_and_values() {
    let c = load("", Overrides::default()).unwrap();
    assert_eq!(c.schedule.timezone, chrono_tz::Tz::UTC);
    let names: Vec<_> = c.schedule.jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["ingest", "close", "leads"]);
    let c = load(
        "[schedule]\ntimezone = \"Europe/Berlin\"\nlease_ttl_secs = 60\n[[schedule.jobs]]\nname = \"close\"\ncron = \"0 30 7 2 * *\"\n",
        Overrides::default(),
    )
    .unwrap();
    assert_eq!(c.schedule.timezone, chrono_tz::Europe::Berlin);
    assert_eq!(c.schedule.lease_ttl.as_secs(), 60);
    assert_eq!(c.schedule.jobs.len(), 1);
    assert_eq!(c.schedule.jobs[0].cron.as_str(), "0 30 7 2 * *");
}

#[test]
fn sql_sources_are_read_and_validated() {
    let c = load(
        "[sources.\"billing/invoices\"]\nurl = \"env:BILLING_DATABASE_URL\"\nquery = \"SELECT * FROM invoices\"\n\
         [sources.\"crm/operators\"]\nurl = \"postgres://u:pw@h/crm\"\nquery = \"SELECT 1\"\n",
        Overrides::default(),
    )
    .unwrap();
    assert_eq!(c.sources.len(), 2);
    assert_eq!(
        c.sources["billing/invoices"].url,
        "env:BILLING_DATABASE_URL"
    );
    assert_eq!(
        c.sources["billing/invoices"].display_url(),
        "env:BILLING_DATABASE_URL"
    );
    assert_eq!(
        c.sources["crm/operators"].display_url(),
        "postgres://u:*****@h/crm"
    );

    let e = load(
        "[sources.\"billing/invoicez\"]\nurl = \"sqlite:x.db\"\nquery = \"SELECT 1\"\n\
         [sources.\"crm/leads\"]\nurl = \"mysql://u:secret@h/x\"\nquery = \" ; \"\n\
         [sources.\"crm/training\"]\nurl = \"env:\"\nquery = \"SELECT 1\"\n",
        Overrides::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("key sources.\"billing/invoicez\": not a contract dataset"),
        "{e}"
    );
    assert!(
        e.contains("key sources.\"crm/leads\".url: expected postgres://"),
        "{e}"
    );
    assert!(!e.contains("secret"), "{e}");
    assert!(
        e.contains("key sources.\"crm/leads\".query: must not be empty"),
        "{e}"
    );
    assert!(
        e.contains("key sources.\"crm/training\".url: env: needs"),
        "{e}"
    );
    assert!(e.contains("opnet.toml"), "{e}");

    // A bare dataset name is not a path; a missing or unknown key is named.
    let e = load(
        "[sources.operators]\nurl = \"sqlite:x.db\"\nquery = \"SELECT 1\"\n",
        Overrides::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("key sources.\"operators\": not a contract dataset"),
        "{e}"
    );
    let e = load(
        "[sources.\"crm/operators\"]\nurl = \"sqlite:x.db\"\nsql = \"SELECT 1\"\n",
        Overrides::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("sql"), "{e}");
}

#[test]
fn sql_source_env_url_is_resolved_at_use() {
    let s = SqlSource {
        url: "env:OPNET_TEST_SURELY_UNSET_URL".into(),
        query: "SELECT 1".into(),
    };
    let e = s.resolve_url().unwrap_err();
    assert!(e.contains("OPNET_TEST_SURELY_UNSET_URL"), "{e}");
    let s = SqlSource {
        url: "sqlite:x.db".into(),
        query: "SELECT 1".into(),
    };
    assert_eq!(s.resolve_url().unwrap(), "sqlite:x.db");
}

#[test]
fn s3_table_overrides_and_validation() {
    let c = load(
        "lake = \"s3://opnet-lake/prod\"\n[s3]\nendpoint = \"http://127.0.0.1:9000\"\nregion = \"us-east-1\"\nforce_path_style = true\n",
        Overrides::default(),
    )
    .unwrap();
    assert_eq!(c.lake, "s3://opnet-lake/prod");
    assert_eq!(
        c.s3,
        S3Config {
            endpoint: Some("http://127.0.0.1:9000".into()),
            region: Some("us-east-1".into()),
            force_path_style: Some(true),
        }
    );
    // Flags and OPNET_S3_* (through clap) beat the file.
    let c = load(
        "[s3]\nregion = \"us-east-1\"\nforce_path_style = true\n",
        Overrides {
            s3_region: Some("eu-west-1".into()),
            s3_endpoint: Some("https://s3.example:8443/".into()),
            s3_force_path_style: Some(false),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(c.s3.region.as_deref(), Some("eu-west-1"));
    assert_eq!(c.s3.endpoint.as_deref(), Some("https://s3.example:8443/"));
    assert_eq!(c.s3.force_path_style, Some(false));
    // Nothing set: the SDK's chain decides.
    assert_eq!(
        load("", Overrides::default()).unwrap().s3,
        S3Config::default()
    );

    let e = load(
        "source = \"s3://Bad_Bucket/x\"\nlake = \"s3://ok-bucket/a//b\"\n[s3]\nendpoint = \"http://key:secret@minio:9000\"\nregion = \"EU West\"\n",
        Overrides::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("key source: s3://Bad_Bucket/x: bucket name"),
        "{e}"
    );
    assert!(e.contains("key lake: s3://ok-bucket/a//b: prefix"), "{e}");
    assert!(
        e.contains("key s3.endpoint: credentials do not belong"),
        "{e}"
    );
    assert!(!e.contains("secret"), "{e}");
    assert!(e.contains("key s3.region: expected a region name"), "{e}");
    for bad in ["minio:9000", "ftp://x", "http://", "http://host:port"] {
        let e = load(
            &format!("[s3]\nendpoint = \"{bad}\"\n"),
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("key s3.endpoint"), "{bad}: {e}");
    }
    for good in [
        "http://127.0.0.1:9000",
        "https://s3.eu-west-1.amazonaws.com",
        "http://[::1]:9000",
    ] {
        assert!(check_endpoint(good).is_ok(), "{good}");
    }
    let e = load("[s3]\nendpont = \"x\"\n", Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("endpont"), "{e}");
    let e = load("[s3]\nforce_path_style = \"yes\"\n", Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("force_path_style") || e.contains("bool"), "{e}");
}

#[test]
fn ingest_keys_default_parse_and_validate() {
    let c = load("", Overrides::default()).unwrap();
    assert_eq!(c.ingest, IngestConfig::default());
    assert_eq!(c.ingest.max_quarantine_share, 0.01);
    assert_eq!(c.ingest.earliest_date.to_string(), "1990-01-01");
    assert_eq!(c.ingest.max_months_ahead, 12);
    let c = load(
        "[ingest]\nmax_quarantine_share = 0.05\nearliest_date = \"2000-01-01\"\nmax_months_ahead = 3\n",
        Overrides::default(),
    )
    .unwrap();
    assert_eq!(c.ingest.max_quarantine_share, 0.05);
    assert_eq!(c.ingest.earliest_date.to_string(), "2000-01-01");
    assert_eq!(c.ingest.max_months_ahead, 3);
    let e = load(
        "[ingest]\nmax_quarantine_share = 5.0\nmax_months_ahead = 100000\n",
        Overrides::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("key ingest.max_quarantine_share"), "{e}");
    assert!(e.contains("key ingest.max_months_ahead"), "{e}");
    let e = load(
        "[ingest]\nearliest_date = \"1990-13-01\"\n",
        Overrides::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("earliest_date"), "{e}");
    let e = load("[ingest]\nmax_share = 0.1\n", Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("max_share"), "{e}");
}

/// Issue 9 item 12: a URL that fails validation is quoted with its credentials
/// masked, whatever the form.
#[test]
fn invalid_urls_are_reported_without_credentials() {
    for text in [
        "mail = \"smtp://relay:25?password=S3cret\"\n",
        "mail = \"smtp://u:S3cret@relay:25\"\n",
        "source = \"s3://u:S3cret@bucket/x\"\n",
        "lake = \"s3://u:S3cret@bucket/x\"\n",
        "database = \"host=h password=S3cret\"\n",
        "database = \"mysql://u@h/db?password=S3cret\"\n",
    ] {
        let e = load(text, Overrides::default()).unwrap_err().to_string();
        assert!(e.contains("key "), "{e}");
        assert!(!e.contains("S3cret"), "{text}: {e}");
    }
}

/// Issue 9 item 12: `Debug` of every config type masks credentials.
#[test]
fn debug_never_prints_a_secret() {
    let over = Overrides {
        database: Some("postgres://u:S3cret1@h/db?password=S3cret2".into()),
        mail: Some("smtp://u:S3cret3@relay".into()),
        smtp_password: Some("S3cret4".into()),
        s3_endpoint: Some("http://k:S3cret5@minio:9000".into()),
        ..Default::default()
    };
    let text = format!("{over:?}");
    let file = Config::parse_file(
        "database = \"postgres://u@h/db?sslpassword=S3cret6\"\n\
         [sources.\"crm/operators\"]\nurl = \"postgres://u:S3cret7@h/crm\"\nquery = \"SELECT 1\"\n",
        Path::new("x.toml"),
    )
    .unwrap();
    let file_text = format!("{file:?}");
    let c = load(
        "database = \"postgres://u@h/db?password=S3cret8\"\n\
         [sources.\"crm/operators\"]\nurl = \"postgres://u@h/crm?password=S3cret9\"\nquery = \"SELECT 1\"\n",
        Overrides {
            smtp_password: Some("S3cret4".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let config_text = format!("{c:?}");
    for t in [&text, &file_text, &config_text] {
        assert!(!t.contains("S3cret"), "{t}");
        assert!(t.contains("*****"), "{t}");
    }
    assert!(
        config_text.contains("postgres://u@h/db?password=*****"),
        "{config_text}"
    );
}

#[test]
fn example_config_parses_and_validates() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/opnet.example.toml");
    let c = Config::load(&Overrides {
        config: Some(p),
        ..Default::default()
    })
    .unwrap();
    assert!(
        c.plan.versions.len() >= 2,
        "the example ships a plan with two versions"
    );
}

/// Issue 11: every key of the file can come from the environment by one rule.
#[test]
fn every_file_key_can_be_set_from_the_environment() {
    let env = env_overrides(
        [
            (
                "OPNET__EMAIL__FINANCE",
                r#"["cfo@x.example", "ap@x.example"]"#,
            ),
            ("OPNET__CLOSE__MAX_BACKFILL_MONTHS", "48"),
            ("OPNET__DATABASE", "sqlite://./env.db"),
            ("OPNET__SCHEDULE__TIMEZONE", "Europe/Berlin"),
            ("OPNET__INGEST__MAX_QUARANTINE_SHARE", "0.05"),
            ("NOT_OPNET", "ignored"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    assert_eq!(env.len(), 5);
    let file = Config::parse_layered(
        "database = \"sqlite://./file.db\"\n[close]\nmax_backfill_months = 12\n",
        Some(Path::new("opnet.toml")),
        &env,
    )
    .unwrap();
    assert_eq!(file.email.finance, ["cfo@x.example", "ap@x.example"]);
    assert_eq!(
        file.close.max_backfill_months, 48,
        "the environment wins over the file"
    );
    assert_eq!(file.database.as_deref(), Some("sqlite://./env.db"));
    assert_eq!(file.ingest.max_quarantine_share, 0.05);
    assert_eq!(
        file.schedule.and_then(|s| s.timezone).as_deref(),
        Some("Europe/Berlin")
    );

    // A misspelt key or a wrong type fails like the file would, naming the variable.
    for (name, value, key) in [
        ("OPNET__EMAIL__FINANC", r#"["x@y"]"#, "financ"),
        (
            "OPNET__CLOSE__MAX_BACKFILL_MONTHS",
            "many",
            "max_backfill_months",
        ),
    ] {
        let env = vec![(name.to_string(), value.to_string())];
        let err = Config::parse_layered("", None, &env)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(name), "{err}");
        assert!(err.contains(key) || err.contains("invalid"), "{err}");
    }
    let err = Config::parse_layered("", None, &[("OPNET__EMAIL____X".into(), "1".into())])
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("double underscores"), "{err}");
    // Flags (and their own variables) still rank above it.
    let over = Overrides {
        database: Some("sqlite://./flag.db".into()),
        env: vec![("OPNET__DATABASE".into(), "sqlite://./env.db".into())],
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("opnet.toml");
    std::fs::write(&cfg_path, "").unwrap();
    let c = Config::load(&Overrides {
        config: Some(cfg_path),
        ..over
    })
    .unwrap();
    assert_eq!(c.database, "sqlite://./flag.db");
}
