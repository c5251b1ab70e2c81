//! URL parsing, key/prefix mapping and error classification of the S3 store; and
//! the retry behaviour against a port where nothing listens. Talking to a real
//! S3-compatible server is `tests/e2e_s3.rs`.

#![allow(clippy::unwrap_used)]

use super::*;
use aws_credential_types::provider::{ProvideCredentials, future};
use aws_sdk_s3::config::Credentials;
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::operation::head_object::HeadObjectError;
use aws_sdk_s3::primitives::SdkBody;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::error::ErrorMetadata;

fn url(s: &str) -> S3Url {
    S3Url::parse(s).unwrap()
}

#[test]
fn parses_bucket_and_prefix() {
    for (text, bucket, prefix) in [
        ("s3://lake", "lake", ""),
        ("s3://lake/", "lake", ""),
        ("s3://my.lake-01/prod", "my.lake-01", "prod/"),
        ("s3://lake/prod/", "lake", "prod/"),
        ("s3://lake/a/b/c", "lake", "a/b/c/"),
        ("s3://lake/a/b//", "lake", "a/b/"),
    ] {
        assert_eq!(
            S3Url::parse(text),
            Ok(S3Url {
                bucket: bucket.into(),
                prefix: prefix.into()
            }),
            "{text}"
        );
    }
    for (text, why) in [
        ("lake/prod", "expected s3://"),
        ("s3://", "no bucket"),
        ("s3:///prod", "no bucket"),
        ("s3://ab", "not valid"),
        ("s3://Lake", "not valid"),
        ("s3://lake_1", "not valid"),
        ("s3://-lake", "not valid"),
        ("s3://lake-", "not valid"),
        (&format!("s3://{}", "a".repeat(64)), "not valid"),
        ("s3://lake//prod", "empty segment"),
        ("s3://lake/a//b", "empty segment"),
        ("s3://lake/a/../b", "\"..\" segment"),
        ("s3://lake/./b", "\".\" segment"),
    ] {
        let e = S3Url::parse(text).unwrap_err();
        assert!(e.contains(why), "{text}: {e}");
    }
}

#[test]
fn keys_map_under_the_prefix_and_back() {
    let u = url("s3://lake/prod");
    assert_eq!(u.object_key("raw/x.parquet").unwrap(), "prod/raw/x.parquet");
    assert_eq!(url("s3://lake").object_key("raw/x").unwrap(), "raw/x");
    for bad in ["", "/etc/passwd", "../x", "a/../b", "a//b", "a/./b", "a/"] {
        assert!(
            matches!(u.object_key(bad), Err(StoreError::InvalidKey { .. })),
            "{bad:?}"
        );
    }
    assert!(
        u.object_key(&"k".repeat(1020)).is_err(),
        "1024 bytes with the prefix"
    );

    // A list prefix is a string prefix: `billing/invoices.` is fine.
    assert_eq!(
        u.list_prefix("billing/invoices.").unwrap(),
        "prod/billing/invoices."
    );
    assert_eq!(u.list_prefix("").unwrap(), "prod/");
    assert_eq!(
        u.list_prefix("raw/_snapshots/").unwrap(),
        "prod/raw/_snapshots/"
    );
    for bad in ["/raw", "../raw/", "a//b", "./x"] {
        assert!(u.list_prefix(bad).is_err(), "{bad:?}");
    }

    assert_eq!(u.store_key("prod/raw/x"), Some("raw/x"));
    assert_eq!(u.store_key("production/raw/x"), None, "not under prod/");
    assert_eq!(u.store_key("prod/raw/"), None, "a folder marker");
    assert_eq!(u.store_key("prod/"), None);
}

#[test]
fn locations_are_full_s3_urls() {
    let u = url("s3://lake/prod/");
    assert_eq!(u.location("raw/x"), "s3://lake/prod/raw/x");
    assert_eq!(u.location(""), "s3://lake/prod");
    let root = url("s3://lake");
    assert_eq!(root.location("raw/x"), "s3://lake/raw/x");
    assert_eq!(root.location(""), "s3://lake");
}

#[test]
fn responses_are_classified() {
    use Failure::*;
    for (status, code, expected) in [
        (404, Some("NoSuchKey"), NotFound),
        (404, None, NotFound),
        (404, Some("NotFound"), NotFound),
        (404, Some("NoSuchBucket"), Permanent),
        (403, Some("AccessDenied"), Permanent),
        (403, None, Permanent),
        (400, Some("InvalidAccessKeyId"), Permanent),
        (403, Some("SignatureDoesNotMatch"), Permanent),
        (400, Some("RequestTimeout"), Transient),
        (400, Some("InvalidBucketName"), Permanent),
        (503, Some("SlowDown"), Transient),
        (503, None, Transient),
        (500, Some("InternalError"), Transient),
        (502, None, Transient),
        (504, None, Transient),
        (429, None, Transient),
        (408, None, Transient),
        (501, Some("NotImplemented"), Permanent),
        (409, Some("OperationAborted"), Permanent),
    ] {
        assert_eq!(
            classify_response(status, code),
            expected,
            "{status} {code:?}"
        );
    }
}

fn response(status: u16) -> HttpResponse {
    HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::empty())
}

fn get_error(status: u16, code: &str, message: &str) -> SdkError<GetObjectError, HttpResponse> {
    SdkError::service_error(
        GetObjectError::generic(ErrorMetadata::builder().code(code).message(message).build()),
        response(status),
    )
}

#[test]
fn sdk_errors_are_classified_with_a_reason() {
    let (f, reason) = classify(&get_error(
        404,
        "NoSuchKey",
        "The specified key does not exist.",
    ));
    assert_eq!(f, Failure::NotFound);
    assert!(
        reason.contains("HTTP 404 NoSuchKey: The specified key"),
        "{reason}"
    );

    let (f, reason) = classify(&get_error(403, "AccessDenied", "Access Denied"));
    assert_eq!(f, Failure::Permanent);
    assert!(
        reason.contains("AccessDenied") && reason.contains("s3:GetObject"),
        "{reason}"
    );

    let (f, _) = classify(&get_error(404, "NoSuchBucket", "no bucket"));
    assert_eq!(f, Failure::Permanent);
    let (f, _) = classify(&get_error(
        503,
        "SlowDown",
        "Please reduce your request rate.",
    ));
    assert_eq!(f, Failure::Transient);

    // A HEAD's 404 has no body and so no code.
    let head: SdkError<HeadObjectError, HttpResponse> = SdkError::service_error(
        HeadObjectError::generic(ErrorMetadata::builder().build()),
        response(404),
    );
    assert_eq!(classify(&head).0, Failure::NotFound);

    let timeout: SdkError<GetObjectError, HttpResponse> = SdkError::timeout_error("slow");
    assert_eq!(classify(&timeout).0, Failure::Transient);
    let cut: SdkError<GetObjectError, HttpResponse> =
        SdkError::response_error("connection reset mid-body", response(200));
    assert_eq!(classify(&cut).0, Failure::Transient);
    let build: SdkError<GetObjectError, HttpResponse> = SdkError::construction_failure("bad input");
    assert_eq!(classify(&build).0, Failure::Permanent);
    let refused: SdkError<GetObjectError, HttpResponse> =
        SdkError::dispatch_failure(ConnectorError::io(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        ))));
    assert_eq!(classify(&refused).0, Failure::Transient);
}

#[test]
fn dispatch_failures_are_classified() {
    use aws_smithy_types::retry::ErrorKind;
    let io = || Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
    assert_eq!(
        classify_dispatch(&ConnectorError::io(io())),
        Failure::Transient
    );
    assert_eq!(
        classify_dispatch(&ConnectorError::timeout(io())),
        Failure::Transient
    );
    assert_eq!(
        classify_dispatch(&ConnectorError::user(io())),
        Failure::Permanent
    );
    let creds = |e: CredentialsError| classify_dispatch(&ConnectorError::other(Box::new(e), None));
    assert_eq!(
        creds(CredentialsError::not_loaded("no credentials in the chain")),
        Failure::Permanent
    );
    assert_eq!(
        creds(CredentialsError::invalid_configuration("bad profile")),
        Failure::Permanent
    );
    assert_eq!(
        creds(CredentialsError::provider_timed_out(Duration::from_secs(5))),
        Failure::Transient
    );
    assert_eq!(
        creds(CredentialsError::provider_error("STS said 503")),
        Failure::Transient
    );
    assert_eq!(
        classify_dispatch(&ConnectorError::other(io(), Some(ErrorKind::ClientError))),
        Failure::Permanent
    );
    assert_eq!(
        classify_dispatch(&ConnectorError::other(
            io(),
            Some(ErrorKind::ThrottlingError)
        )),
        Failure::Transient
    );
    assert_eq!(
        classify_dispatch(&ConnectorError::other(io(), None)),
        Failure::Transient
    );
}

/// Waits of a few milliseconds, so the retry tests are quick.
const TINY: Backoff = Backoff {
    initial: Duration::from_millis(1),
    factor: 2.0,
    max_delay: Duration::from_millis(4),
    max_attempts: 3,
    jitter: retry::Jitter::Full,
};

/// Options for a server on loopback `port`, with fixed credentials (so the SDK
/// never asks the instance metadata service).
fn loopback(port: u16, credentials: SharedCredentialsProvider) -> S3Options {
    S3Options {
        config: S3Config {
            endpoint: Some(format!("http://127.0.0.1:{port}")),
            region: Some("us-east-1".into()),
            force_path_style: Some(true),
        },
        page_size: MAX_PAGE_SIZE,
        credentials: Some(credentials),
        retry: TINY,
    }
}

fn static_credentials() -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(Credentials::new("test", "test", None, None, "test"))
}

/// A port with nothing listening (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_refused_connection_is_retried_then_reported_as_transient() {
    let (_guard, logs) = retry::capture::start();
    let store = S3Store::connect(
        "s3://lake/prod",
        &loopback(closed_port(), static_credentials()),
    )
    .await
    .unwrap();
    let e = store.get("raw/x.parquet").await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    let text = e.to_string();
    assert!(
        text.starts_with("s3://lake/prod/raw/x.parquet: S3 GetObject"),
        "{text}"
    );
    assert_eq!(logs.retries(), 2, "{}", logs.text());
    assert!(
        logs.text()
            .contains("S3 GetObject s3://lake/prod/raw/x.parquet"),
        "{}",
        logs.text()
    );
    // `exists` and `list` go through the same policy.
    assert!(store.exists("raw/x").await.unwrap_err().is_transient());
    assert!(store.list("raw/").await.unwrap_err().is_transient());
    assert_eq!(logs.retries(), 6, "{}", logs.text());
}

/// A credentials provider that never has any.
#[derive(Debug)]
struct NoCredentials;

impl ProvideCredentials for NoCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::ready(Err(CredentialsError::not_loaded(
            "no credentials (test)",
        )))
    }
}

#[tokio::test]
async fn missing_credentials_fail_at_once() {
    let (_guard, logs) = retry::capture::start();
    let store = S3Store::connect(
        "s3://lake",
        &loopback(closed_port(), SharedCredentialsProvider::new(NoCredentials)),
    )
    .await
    .unwrap();
    let e = store.put("k", b"x".to_vec()).await.unwrap_err();
    assert!(!e.is_transient(), "{e}");
    let text = e.to_string();
    assert!(text.starts_with("s3://lake/k: S3 PutObject"), "{text}");
    assert!(text.contains("no credentials (test)"), "{text}");
    assert_eq!(logs.retries(), 0, "{}", logs.text());
}

#[tokio::test]
async fn bad_keys_and_urls_fail_before_any_request() {
    let store = S3Store::connect(
        "s3://lake/p",
        &loopback(closed_port(), static_credentials()),
    )
    .await
    .unwrap();
    assert!(matches!(
        store.get("../etc/passwd").await,
        Err(StoreError::InvalidKey { .. })
    ));
    assert!(matches!(
        store.put("a//b", vec![]).await,
        Err(StoreError::InvalidKey { .. })
    ));
    let e = S3Store::connect("s3://x", &loopback(1, static_credentials()))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Open { .. }), "{e}");
    assert!(e.to_string().contains("s3://x"), "{e}");
}
