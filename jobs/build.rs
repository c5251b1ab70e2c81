//! Embeds the schema migrations: every `sql/postgres/NNNN_name.sql` with its
//! `sql/sqlite/NNNN_name.sql` twin, in version order, as `$OUT_DIR/migrations.rs`.
//! Adding a migration is adding its two files; nothing lists them by hand, and a
//! migration present for one backend only fails the build.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

fn versions(dir: &Path) -> BTreeSet<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        panic!("cannot read the migrations in {}", dir.display());
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter_map(|name| name.strip_suffix(".sql").map(str::to_owned))
        .collect()
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let sql = manifest.join("..").join("sql");
    let (pg, lite) = (sql.join("postgres"), sql.join("sqlite"));
    println!("cargo:rerun-if-changed={}", pg.display());
    println!("cargo:rerun-if-changed={}", lite.display());
    let (pg_versions, lite_versions) = (versions(&pg), versions(&lite));
    if pg_versions != lite_versions {
        panic!(
            "migrations differ between backends: only PostgreSQL {:?}, only SQLite {:?}",
            pg_versions.difference(&lite_versions).collect::<Vec<_>>(),
            lite_versions.difference(&pg_versions).collect::<Vec<_>>()
        );
    }
    let mut out = String::from(
        "/// Embedded migrations in order: (version, PostgreSQL script, SQLite script).\n\
         pub const MIGRATIONS: &[(&str, &str, &str)] = &[\n",
    );
    for v in &pg_versions {
        let file = |dir: &Path| {
            let path = dir.join(format!("{v}.sql"));
            fs::canonicalize(&path)
                .unwrap_or(path)
                .display()
                .to_string()
        };
        out.push_str(&format!(
            "    ({v:?}, include_str!({:?}), include_str!({:?})),\n",
            file(&pg),
            file(&lite)
        ));
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("migrations.rs");
    if let Err(e) = fs::write(&dest, out) {
        panic!("writing {}: {e}", dest.display());
    }
}
