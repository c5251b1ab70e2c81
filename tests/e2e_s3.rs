//! End-to-end on a real S3-compatible server (issue 5: `--source`/`--lake s3://…`):
//! moto on a free loopback port, started and stopped by this file.
//!
//! - the `ObjectStore` contract on S3: put/get/overwrite, sorted string-prefix
//!   listing relative to the store prefix, pagination (1005 keys written by an
//!   independent client, listed in pages of 1000 and of 7), `exists`, not-found and
//!   missing-bucket errors naming the `s3://` location;
//! - the real `opnet` binary: `generate` into a directory, the files uploaded to a
//!   source bucket, `close` with `s3://` source and lake on PostgreSQL; the lake's
//!   objects (manifest, snapshot Parquet, marts) are in the bucket, one Parquet object
//!   downloaded from it is read by pyarrow, the results equal a run on local
//!   directories (SQLite), and a second close reuses the snapshot from S3.
//!
//! Independent checks (bucket creation, uploads, listings, pyarrow) use boto3, which
//! moto depends on. With `OPNET_REQUIRE_SERVICES=1` a missing moto, boto3, pyarrow or
//! PostgreSQL fails the test.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use opnet::store::S3Config;
use opnet::store::{ObjectStore, S3Options, S3Store, StoreError};

/// A moto S3 server on 127.0.0.1, killed on drop.
struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    fn start() -> Option<Moto> {
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        // `python3 -m moto.server` is the `moto_server` script without relying on
        // the scripts directory being on PATH.
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                common::unavailable(&format!("python3 for moto ({e})"));
                return None;
            }
        };
        let started = Instant::now();
        // Ready when it answers HTTP (ListBuckets), not merely when the port opens.
        loop {
            if let Some(status) = child.try_wait().ok().flatten() {
                common::unavailable(&format!(
                    "moto_server exited ({status}); pip install \"moto[s3]\" flask flask-cors"
                ));
                return None;
            }
            if http_ok(port) {
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                let _ = child.wait();
                common::unavailable("moto_server did not answer within 30 s");
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(Moto { child, port })
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Options for an in-process store: fixed credentials (moto accepts any), so the
    /// SDK never reaches for the instance metadata service.
    fn options(&self, page_size: i32) -> S3Options {
        let mut o = S3Options::new(&S3Config {
            endpoint: Some(self.endpoint()),
            region: Some("us-east-1".into()),
            force_path_style: Some(true),
        });
        o.page_size = page_size;
        o.credentials = Some(aws_sdk_s3::config::SharedCredentialsProvider::new(
            aws_sdk_s3::config::Credentials::new("test", "test", None, None, "e2e"),
        ));
        o
    }

    /// Run a Python snippet with boto3 pointed at this server (`s3` is the client);
    /// `None` (skip or fail) when boto3 or pyarrow are missing.
    fn python(&self, script: &str, args: &[&str]) -> Option<String> {
        let prelude = format!(
            "import sys, json, boto3\n\
             s3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', \
             aws_access_key_id='test', aws_secret_access_key='test')\n",
            self.endpoint()
        );
        let out = Command::new("python3")
            .arg("-c")
            .arg(format!("{prelude}{script}"))
            .args(args)
            .output()
            .expect("python3");
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            if err.contains("No module named") {
                common::unavailable(&format!("a Python module for the S3 checks: {err}"));
                return None;
            }
            panic!("python failed: {err}");
        }
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET /` answered with 200.
fn http_ok(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_store_contract_on_s3() {
    let Some(moto) = Moto::start() else { return };
    // 1005 objects under `contract/many/` and one outside the store prefix, written
    // by boto3 (an independent client), plus the buckets.
    let script = r#"
s3.create_bucket(Bucket='contract')
for i in range(1005):
    s3.put_object(Bucket='contract', Key='contract/many/%04d' % i, Body=b'%d' % i)
s3.put_object(Bucket='contract', Key='contractual/outside', Body=b'x')
s3.put_object(Bucket='contract', Key='contract/folder/', Body=b'')
print('ok')
"#;
    let Some(out) = moto.python(script, &[]) else {
        return;
    };
    assert_eq!(out.trim(), "ok");

    let store = S3Store::connect("s3://contract/contract", &moto.options(1000))
        .await
        .unwrap();
    assert_eq!(store.location("a/b"), "s3://contract/contract/a/b");

    // put/get/overwrite, string-prefix listing, sorted and relative.
    store.put("a/b/c.txt", b"hello".to_vec()).await.unwrap();
    store.put("a/b/d.txt", b"x".to_vec()).await.unwrap();
    store.put("a/bb.txt", b"y".to_vec()).await.unwrap();
    store.put("z.txt", b"z".to_vec()).await.unwrap();
    assert_eq!(store.get("a/b/c.txt").await.unwrap(), b"hello");
    store.put("a/b/c.txt", b"bye".to_vec()).await.unwrap();
    assert_eq!(store.get("a/b/c.txt").await.unwrap(), b"bye");
    assert_eq!(
        store.list("a/b/").await.unwrap(),
        vec!["a/b/c.txt", "a/b/d.txt"]
    );
    assert_eq!(
        store.list("a/b").await.unwrap(),
        vec!["a/b/c.txt", "a/b/d.txt", "a/bb.txt"]
    );
    assert!(store.list("nope/").await.unwrap().is_empty());
    // An empty object and binary bytes survive the trip.
    store.put("empty", Vec::new()).await.unwrap();
    assert!(store.get("empty").await.unwrap().is_empty());
    let binary: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    store.put("bin/blob", binary.clone()).await.unwrap();
    assert_eq!(store.get("bin/blob").await.unwrap(), binary);

    // exists: objects only, not "directories".
    assert!(store.exists("z.txt").await.unwrap());
    assert!(
        !store.exists("a/b").await.unwrap(),
        "a prefix is not an object"
    );
    assert!(!store.exists("missing").await.unwrap());

    // Pagination: 1005 keys in pages of 1000, and again in pages of 7.
    let expected: Vec<String> = (0..1005).map(|i| format!("many/{i:04}")).collect();
    assert_eq!(store.list("many/").await.unwrap(), expected);
    let small = S3Store::connect("s3://contract/contract/", &moto.options(7))
        .await
        .unwrap();
    assert_eq!(small.list("many/").await.unwrap(), expected);
    assert_eq!(
        small.list("many/09").await.unwrap(),
        expected[900..1000].to_vec()
    );
    // The whole store: nothing from outside the prefix, no folder marker.
    let all = store.list("").await.unwrap();
    assert_eq!(all.len(), 1005 + 6, "{:?}", &all[..8]);
    assert!(all.windows(2).all(|w| w[0] < w[1]), "sorted");
    assert!(
        !all.iter()
            .any(|k| k.contains("outside") || k.ends_with('/'))
    );

    // A missing object names its full s3:// location and is permanent.
    let e = store.get("x/y.csv").await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound { .. }), "{e}");
    assert_eq!(e.to_string(), "not found: s3://contract/contract/x/y.csv");
    assert!(!e.is_transient());

    // A missing bucket is a permanent error naming the location, not "not found".
    let nobucket = S3Store::connect("s3://no-such-bucket/p", &moto.options(1000))
        .await
        .unwrap();
    let e = nobucket.put("k", b"x".to_vec()).await.unwrap_err();
    let text = e.to_string();
    assert!(!e.is_transient(), "{text}");
    assert!(
        text.starts_with("s3://no-such-bucket/p/k: S3 PutObject"),
        "{text}"
    );
    assert!(text.contains("NoSuchBucket"), "{text}");
    let e = nobucket.list("").await.unwrap_err();
    assert!(e.to_string().contains("NoSuchBucket"), "{e}");

    // What opnet wrote is what an independent client reads.
    let Some(out) = moto.python(
        "print(s3.get_object(Bucket='contract', Key='contract/a/b/c.txt')['Body'].read().decode())",
        &[],
    ) else {
        return;
    };
    assert_eq!(out.trim(), "bye");
}

/// Run the binary in `cwd` with a clean environment for config and AWS settings.
fn opnet(cwd: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_opnet"));
    cmd.current_dir(cwd).args(args);
    for var in [
        "DATABASE_URL",
        "OPNET_CONFIG",
        "OPNET_SOURCE",
        "OPNET_LAKE",
        "OPNET_MAIL",
        "OPNET_S3_ENDPOINT",
        "OPNET_S3_REGION",
        "OPNET_S3_FORCE_PATH_STYLE",
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_SESSION_TOKEN",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ] {
        cmd.env_remove(var);
    }
    // Credentials from the environment, as in production; moto accepts any. No
    // instance metadata service: a test must never reach beyond loopback. Empty AWS
    // config files, so that the machine's ~/.aws plays no part.
    let empty = cwd.join("aws-empty");
    if !empty.exists() {
        std::fs::write(&empty, "").unwrap();
    }
    cmd.env("AWS_ACCESS_KEY_ID", "opnet-e2e")
        .env("AWS_SECRET_ACCESS_KEY", "opnet-e2e-secret")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", &empty)
        .env("AWS_SHARED_CREDENTIALS_FILE", &empty)
        .env("OPNET_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run opnet")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Per period and currency: statements, operator share, payable, carried out; and
/// the ingest fingerprints (the S3 and the local run read the same bytes).
async fn results(database: &str) -> (Vec<(String, String, i64, i64, i64, i64)>, Vec<String>) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(database).await.unwrap();
    let totals = sqlx::query_as::<_, (String, String, i64, i64, i64, i64)>(
        "SELECT period, currency, CAST(COUNT(*) AS BIGINT), CAST(SUM(operator_share_cents) AS BIGINT), \
         CAST(SUM(payable_cents) AS BIGINT), CAST(SUM(carried_out_cents) AS BIGINT) \
         FROM payout_statements GROUP BY period, currency ORDER BY period, currency",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let fingerprints = sqlx::query_scalar::<_, String>(
        "SELECT input_fingerprint FROM job_runs WHERE job = 'ingest' AND status = 'succeeded' \
         ORDER BY started_at",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    (totals, fingerprints)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_with_s3_source_and_lake_matches_local_directories() {
    let Some(moto) = Moto::start() else { return };
    let Some(pg) = common::pg_database("s3close").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // Demo data into a local directory (the generator writes files), then uploaded
    // to the source bucket under a prefix, as an upstream export would drop it.
    let g = opnet(
        d,
        &[
            "generate",
            "--out",
            "source",
            "--operators",
            "20",
            "--months",
            "6",
            "--end",
            "2025-06",
            "--seed",
            "5",
        ],
        &[],
    );
    assert!(g.status.success(), "{}", text(&g));
    let upload = r#"
import os
root = sys.argv[1]
s3.create_bucket(Bucket='src')
s3.create_bucket(Bucket='lake')
n = 0
for dirpath, _, files in os.walk(root):
    for f in files:
        path = os.path.join(dirpath, f)
        key = 'exports/' + os.path.relpath(path, root).replace(os.sep, '/')
        s3.upload_file(path, 'src', key)
        n += 1
print(n)
"#;
    let Some(out) = moto.python(upload, &[d.join("source").to_str().unwrap()]) else {
        return;
    };
    assert!(out.trim().parse::<u32>().unwrap() >= 5, "{out}");

    // The S3 run: source and lake from a config file with an [s3] table.
    std::fs::write(
        d.join("opnet-s3.toml"),
        format!(
            "source = \"s3://src/exports\"\nlake = \"s3://lake/opnet\"\nmail = \"file:outbox-s3\"\n\
             [s3]\nendpoint = \"{}\"\nregion = \"us-east-1\"\nforce_path_style = true\n",
            moto.endpoint()
        ),
    )
    .unwrap();
    let s3_env = [("DATABASE_URL", pg.url.clone())];
    let check = opnet(d, &["--config", "opnet-s3.toml", "check"], &s3_env);
    assert!(check.status.success(), "{}", text(&check));
    assert!(
        text(&check).contains(&format!(
            "s3:          endpoint {}, region us-east-1, path-style true",
            moto.endpoint()
        )),
        "{}",
        text(&check)
    );
    let started = Instant::now();
    let first = opnet(
        d,
        &["--config", "opnet-s3.toml", "close", "--through", "2025-06"],
        &s3_env,
    );
    assert!(first.status.success(), "{}", text(&first));
    eprintln!("close on S3: {:.1}s", started.elapsed().as_secs_f64());
    let first_out = text(&first);
    assert!(!first_out.contains("reused"), "{first_out}");

    // The lake is in the bucket: manifest, snapshot Parquet, quarantine, marts; one
    // Parquet object downloaded from S3 is readable by pyarrow; the manifest names
    // the s3:// source files.
    let inspect = r#"
import io
import pyarrow.parquet as pq
keys = []
for page in s3.get_paginator('list_objects_v2').paginate(Bucket='lake', Prefix='opnet/'):
    keys += [o['Key'] for o in page.get('Contents', [])]
manifests = [k for k in keys if k.startswith('opnet/raw/_snapshots/') and k.endswith('.toml')]
lines = [k for k in keys if k.startswith('opnet/raw/billing/invoice_lines/ingested=') and k.endswith('/part-0.parquet')]
marts = [k for k in keys if k.startswith('opnet/marts/payout_statements/period=2025-06/')]
quarantine = [k for k in keys if k.startswith('opnet/quarantine/')]
body = s3.get_object(Bucket='lake', Key=lines[0])['Body'].read()
table = pq.read_table(io.BytesIO(body))
mart = pq.read_table(io.BytesIO(s3.get_object(Bucket='lake', Key=marts[0])['Body'].read()))
manifest = s3.get_object(Bucket='lake', Key=manifests[0])['Body'].read().decode()
print(json.dumps({
    'manifests': len(manifests), 'lines_snapshots': len(lines), 'marts': len(marts),
    'quarantine': len(quarantine), 'rows': table.num_rows, 'columns': table.column_names,
    'mart_rows': mart.num_rows, 'total': len(keys),
    'manifest_names_s3_source': 's3://src/exports/billing/invoice_lines.' in manifest,
}))
"#;
    let Some(out) = moto.python(inspect, &[]) else {
        return;
    };
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["manifests"], 1, "{v}");
    assert_eq!(v["lines_snapshots"], 1, "{v}");
    assert_eq!(v["marts"], 1, "{v}");
    assert!(
        v["quarantine"].as_u64().unwrap() > 0,
        "the generator injects bad rows: {v}"
    );
    assert!(v["rows"].as_u64().unwrap() > 0, "{v}");
    assert!(v["mart_rows"].as_u64().unwrap() > 0, "{v}");
    assert!(v["columns"].to_string().contains("invoice_id"), "{v}");
    assert_eq!(v["manifest_names_s3_source"], true, "{v}");
    // Nothing was written locally in place of the lake.
    assert!(!d.join("lake").exists() && !d.join("opnet-data/lake").exists());

    // The same data from local directories (SQLite) gives the same results.
    let sqlite = format!("sqlite://{}", d.join("local.db").display());
    let local = opnet(
        d,
        &[
            "--source",
            "source",
            "--lake",
            "lake-local",
            "--mail",
            "file:outbox-local",
            "--database",
            &sqlite,
            "close",
            "--through",
            "2025-06",
        ],
        &[],
    );
    assert!(local.status.success(), "{}", text(&local));
    let (s3_totals, s3_fingerprints) = results(&pg).await;
    let (local_totals, local_fingerprints) = results(&sqlite).await;
    assert!(!s3_totals.is_empty());
    assert_eq!(s3_totals, local_totals);
    assert_eq!(s3_fingerprints.len(), 1);
    assert_eq!(
        s3_fingerprints, local_fingerprints,
        "S3 and local sources hash the same bytes"
    );

    // A second close, configured through OPNET_S3_* this time, reuses the snapshot
    // it finds in the S3 lake (unchanged fingerprint).
    let second = opnet(
        d,
        &["close", "--through", "2025-06"],
        &[
            ("DATABASE_URL", pg.url.clone()),
            ("OPNET_SOURCE", "s3://src/exports/".into()),
            ("OPNET_LAKE", "s3://lake/opnet".into()),
            ("OPNET_MAIL", "file:outbox-s3".into()),
            ("OPNET_S3_ENDPOINT", moto.endpoint()),
            ("OPNET_S3_REGION", "us-east-1".into()),
            ("OPNET_S3_FORCE_PATH_STYLE", "true".into()),
        ],
    );
    assert!(second.status.success(), "{}", text(&second));
    assert!(
        text(&second).contains("(unchanged sources: reused)"),
        "{}",
        text(&second)
    );
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&pg).await.unwrap();
    let snapshots: Vec<String> = sqlx::query_scalar(
        "SELECT snapshot FROM job_runs WHERE job = 'ingest' AND status = 'succeeded' ORDER BY started_at",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(snapshots.len(), 2);
    assert_eq!(
        snapshots[0], snapshots[1],
        "the second ingest reused the first snapshot"
    );
    let failed: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM job_runs WHERE status <> 'succeeded'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(failed, 0);
    pool.close().await;
    let Some(out) = moto.python(
        "print(len(s3.list_objects_v2(Bucket='lake', Prefix='opnet/raw/_snapshots/').get('Contents', [])))",
        &[],
    ) else {
        return;
    };
    assert_eq!(out.trim(), "1", "still one snapshot manifest");

    // A wrong bucket fails the ingest with a message naming the s3:// location.
    let bad = opnet(
        d,
        &["ingest"],
        &[
            ("DATABASE_URL", pg.url.clone()),
            ("OPNET_SOURCE", "s3://no-such-source/x".into()),
            ("OPNET_LAKE", "s3://lake/opnet".into()),
            ("OPNET_MAIL", "file:outbox-s3".into()),
            ("OPNET_S3_ENDPOINT", moto.endpoint()),
            ("OPNET_S3_REGION", "us-east-1".into()),
            ("OPNET_S3_FORCE_PATH_STYLE", "true".into()),
        ],
    );
    assert!(!bad.status.success());
    assert!(
        text(&bad).contains("s3://no-such-source/x") && text(&bad).contains("NoSuchBucket"),
        "{}",
        text(&bad)
    );
}
