//! End-to-end (issue 5, item 6): the real binary sends over SMTP with STARTTLS and
//! authentication to a capture server that requires both (tests/support/smtp_capture.py).
//!
//! The settings come the way production gives them — environment variables and a
//! password file — and the test shows the three ways a secured relay can refuse:
//! a wrong password (535, nothing delivered), an untrusted certificate (the handshake
//! fails, nothing delivered), and then, with the password file rotated and the CA
//! given, every queued mail delivered once, over TLS, as the configured user.

#![allow(clippy::unwrap_used)]

mod common;

use common::SmtpCapture;
use opnet::generate::{self, Format, GenerateOptions};
use opnet_pipelines::Period;
use std::path::Path;
use std::process::{Command, Output};

const USER: &str = "opnet-relay";

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs the binary with the settings of a deployment: everything from the environment.
fn opnet(dir: &Path, smtp: &SmtpCapture, ca: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_opnet"));
    cmd.current_dir(dir)
        .args(args)
        .env_remove("OPNET_CONFIG")
        .env_remove("OPNET_SMTP_PASSWORD")
        .env("OPNET_LOG", "warn")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.join("opnet.db").display()),
        )
        .env("OPNET_SOURCE", dir.join("source"))
        .env("OPNET_LAKE", dir.join("lake"))
        .env(
            "OPNET_MAIL",
            format!("smtp+starttls://127.0.0.1:{}", smtp.port),
        )
        .env("OPNET_SMTP_USERNAME", USER)
        .env("OPNET_SMTP_PASSWORD_FILE", dir.join("client-password"));
    match ca {
        Some(ca) => cmd.env("OPNET_SMTP_CA_FILE", ca),
        None => cmd.env_remove("OPNET_SMTP_CA_FILE"),
    };
    cmd.output().expect("run opnet")
}

async fn outbox(dir: &Path) -> Vec<(String, String, i64, Option<String>)> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&format!("sqlite://{}", dir.join("opnet.db").display()))
        .await
        .unwrap();
    sqlx::query_as(
        "SELECT message_id, status, attempts, last_error FROM email_outbox ORDER BY message_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn starttls_and_auth_with_a_rotated_password_and_a_private_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    // The relay's certificate, for 127.0.0.1, signed by nobody the system trusts.
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (cert_pem, key_pem) = (dir.join("relay-cert.pem"), dir.join("relay-key.pem"));
    std::fs::write(&cert_pem, cert.cert.pem()).unwrap();
    std::fs::write(&key_pem, cert.signing_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("relay-password"), "correct horse\n").unwrap();
    std::fs::write(dir.join("client-password"), "wrong\n").unwrap();

    let Some(smtp) =
        SmtpCapture::start_secure(dir, &cert_pem, &key_pem, USER, &dir.join("relay-password"))
    else {
        return;
    };
    generate::generate(&GenerateOptions {
        out: dir.join("source"),
        operators: 6,
        months: 2,
        end: Period::parse("2025-03").unwrap(),
        seed: 5,
        format: Format::Csv,
    })
    .unwrap();

    // 1. A wrong password: the close commits, its mails stay queued as failed (535),
    //    and the command says so with exit code 3 (mail left failed).
    let o = opnet(
        dir,
        &smtp,
        Some(&cert_pem),
        // every period's mail, not only the latest complete month's (2025 is history)
        &["close", "--through", "2025-03", "--send-mail", "all"],
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        !text(&o).contains("wrong"),
        "the password must not be logged: {}",
        text(&o)
    );
    let rows = outbox(dir).await;
    assert!(rows.len() >= 3, "the close queues mails: {rows:?}");
    for (id, status, attempts, err) in &rows {
        assert_eq!((status.as_str(), *attempts), ("failed", 1), "{id}");
        let err = err.as_deref().unwrap_or_default();
        assert!(
            err.contains("535") || err.contains("uthentication"),
            "{id}: {err}"
        );
    }
    assert!(
        smtp.received().is_empty(),
        "nothing delivered with a wrong password"
    );

    // 2. The right password but no CA for the relay's certificate: the handshake fails,
    //    nothing is sent in clear instead.
    std::fs::write(dir.join("client-password"), "correct horse\n").unwrap();
    let o = opnet(dir, &smtp, None, &["deliver"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let rows = outbox(dir).await;
    for (id, status, attempts, err) in &rows {
        assert_eq!(
            (status.as_str(), *attempts),
            ("failed", 2),
            "{id}: {}",
            text(&o)
        );
        let err = err.as_deref().unwrap_or_default().to_lowercase();
        assert!(
            err.contains("certificate") || err.contains("issuer"),
            "{id}: {err}"
        );
    }
    assert!(
        smtp.received().is_empty(),
        "nothing delivered to an untrusted relay"
    );

    // 3. The CA given: every mail delivered once, encrypted, as the configured user.
    let o = opnet(dir, &smtp, Some(&cert_pem), &["deliver"]);
    assert!(o.status.success(), "{}", text(&o));
    let rows = outbox(dir).await;
    assert!(
        rows.iter().all(|(_, s, _, _)| s == "sent"),
        "{rows:?}\n{}",
        text(&o)
    );
    let received = smtp.received();
    assert_eq!(received.len(), rows.len());
    let mut ids: Vec<String> = received
        .iter()
        .map(|m| {
            let m = mail_parser::MessageParser::default().parse(m).unwrap();
            format!("<{}>", m.message_id().unwrap())
        })
        .collect();
    ids.sort();
    let expected: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    assert_eq!(
        ids, expected,
        "each outbox row arrived once, under its Message-ID"
    );
    let sessions = smtp.sessions();
    assert_eq!(sessions.len(), rows.len());
    for s in &sessions {
        assert!(
            s.contains("\"tls\": true") && s.contains(&format!("\"user\": \"{USER}\"")),
            "{s}"
        );
    }

    // A delivery with nothing queued sends nothing.
    let o = opnet(dir, &smtp, Some(&cert_pem), &["deliver"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(smtp.received().len(), rows.len());
}
