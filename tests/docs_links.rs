//! Issue 14: the documentation is self-contained. Every relative link of README.md
//! and docs/*.md must name a file or folder inside the repository (a clone has no
//! `../shared/…`), and a `#fragment` must name a heading of the target Markdown
//! file (GitHub's anchors). Links to `http(s)://` and `mailto:` are not followed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repository root")
}

/// The Markdown files whose links must resolve: README.md and docs/*.md.
fn documents(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    out.extend(docs);
    out
}

/// Markdown text without fenced code blocks and inline code spans, which hold
/// examples rather than links.
fn prose(markdown: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            out.push('\n');
            continue;
        }
        if fenced {
            out.push('\n');
            continue;
        }
        let mut in_code = false;
        for c in line.chars() {
            if c == '`' {
                in_code = !in_code;
                out.push('`');
            } else if !in_code {
                out.push(c);
            }
        }
        out.push('\n');
    }
    out
}

/// The targets of `[text](target)` links, with the 1-based line of each.
fn links(markdown: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in prose(markdown).lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            // `[x](target "title")`: the target is the first word.
            let target = after[..end].split_whitespace().next().unwrap_or("");
            out.push((i + 1, target.to_string()));
            rest = &after[end..];
        }
    }
    out
}

/// GitHub's anchor of a heading: lower case, punctuation dropped (hyphens and
/// underscores kept), each space a hyphen; repeated headings get `-1`, `-2`, ….
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let text = line.trim_start_matches('#').trim();
        let base: String = text
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut slug = base.clone();
        let mut n = 1;
        while seen.contains(&slug) {
            slug = format!("{base}-{n}");
            n += 1;
        }
        seen.insert(slug);
    }
    // Explicit anchors: <a id="…"> / <a name="…">.
    for part in markdown.split("<a ").skip(1) {
        for key in ["id=\"", "name=\""] {
            if let Some(v) = part.split(key).nth(1).and_then(|v| v.split('"').next()) {
                seen.insert(v.to_string());
            }
        }
    }
    seen
}

/// Every broken link of `doc`, as `file:line: target: why`.
fn broken_links(root: &Path, doc: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(doc).expect("read document");
    let name = doc.strip_prefix(root).unwrap_or(doc).display().to_string();
    let mut out = Vec::new();
    for (line, target) in links(&text) {
        let mut fail = |why: &str| out.push(format!("{name}:{line}: {target}: {why}"));
        if target.is_empty() {
            fail("empty link");
            continue;
        }
        if target.starts_with("http://")
            || target.starts_with("https://")
            || target.starts_with("mailto:")
        {
            continue;
        }
        if target.contains("://") {
            fail("not a relative link");
            continue;
        }
        let (path, fragment) = match target.split_once('#') {
            Some((p, f)) => (p, Some(f)),
            None => (target.as_str(), None),
        };
        let file = if path.is_empty() {
            doc.to_path_buf()
        } else if path.starts_with('/') {
            fail("absolute path: a clone has no such file");
            continue;
        } else {
            doc.parent().unwrap_or(root).join(path)
        };
        let Ok(resolved) = file.canonicalize() else {
            fail("no such file or folder");
            continue;
        };
        if !resolved.starts_with(root) {
            fail("outside the repository");
            continue;
        }
        if let Some(fragment) = fragment
            && resolved.extension().is_some_and(|x| x == "md")
        {
            let target_text = std::fs::read_to_string(&resolved).unwrap_or_default();
            if !anchors(&target_text).contains(fragment) {
                fail("no heading with this anchor");
            }
        }
    }
    out
}

#[test]
fn every_relative_link_of_readme_and_docs_resolves_inside_the_repository() {
    let root = repo_root();
    let docs = documents(&root);
    assert!(docs.len() >= 5, "README.md and docs/*.md: {docs:?}");
    let mut broken = Vec::new();
    let mut checked = 0;
    for doc in &docs {
        checked += links(&std::fs::read_to_string(doc).unwrap_or_default()).len();
        broken.extend(broken_links(&root, doc));
    }
    assert!(
        checked > 10,
        "only {checked} links found: is the parser right?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The checker itself: planted broken links are reported, good ones are not.
#[test]
fn the_link_checker_reports_planted_faults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().canonicalize().expect("root");
    std::fs::create_dir_all(root.join("docs")).expect("docs");
    std::fs::write(
        root.join("docs/rules.md"),
        "# Rules\n\n## R0 Plan, periods — money\n\n## R0 Plan, periods — money\n",
    )
    .expect("write");
    std::fs::write(
        root.join("README.md"),
        "See [rules](docs/rules.md#r0-plan-periods--money), \
         [again](docs/rules.md#r0-plan-periods--money-1), [top](#readme) and \
         [site](https://example.com).\n\n# Readme\n\n\
         Broken: [spec](../shared/spec/rules.md), [gone](docs/missing.md), \
         [anchor](docs/rules.md#r9), [abs](/etc/passwd).\n\n\
         ```\n[not a link](nowhere.md)\n```\n\n`[code](nowhere.md)`\n",
    )
    .expect("write");
    let broken = broken_links(&root, &root.join("README.md"));
    let targets: Vec<&str> = broken
        .iter()
        .map(|b| b.split(": ").nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        targets,
        [
            "../shared/spec/rules.md",
            "docs/missing.md",
            "docs/rules.md#r9",
            "/etc/passwd"
        ],
        "{broken:#?}"
    );
}
