//! The structure docs/architecture.md promises (issue 11): no import cycle between
//! files of different folders, checked by scripts/import-cycles.py over both crates.

use std::path::Path;
use std::process::Command;

#[test]
fn no_import_cycle_between_files_of_different_folders() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("python3")
        .arg(root.join("scripts/import-cycles.py"))
        .arg(root.join("jobs/src"))
        .arg(root.join("pipelines/src"))
        .output()
        .expect("python3 runs scripts/import-cycles.py");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("no import cycle"), "{text}");
}
