//! Masking of credentials in database URLs and libpq connection strings, so a URL
//! can be printed, logged or stored in the lake.

/// A database URL (or a libpq-style `key=value` connection string) with every
/// credential masked as `*****`, safe to print, log, or store in the lake: the
/// password of `user:password@`, and the value of every parameter whose name suggests
/// a secret (`password`, `sslpassword`, `passfile`, `sslkey`, any name containing
/// pass, pwd, secret, token, key, auth, credential or signature, in any case), in a
/// query string or as `key=value` words. A password holding characters a URL must
/// encode (`/`, `?`, `#`, `@`) is masked up to the last `@` of the authority. It may
/// mask more than the password; it never shows less of one.
pub fn redact(url: &str) -> String {
    const MASK: &str = "*****";
    let secret_name = |name: &str| {
        let n = name.to_ascii_lowercase();
        [
            "pass",
            "pwd",
            "secret",
            "token",
            "key",
            "auth",
            "credential",
            "signature",
        ]
        .iter()
        .any(|s| n.contains(s))
    };

    // The password of the authority's `user:password@`.
    let mut masked = url.to_string();
    if let Some(s) = url.find("://") {
        let rest = &url[s + 3..];
        let query = rest.find(['?', '#']).unwrap_or(rest.len());
        let at = match rest[..query].rfind('@') {
            Some(at) => Some(at),
            // No `@` before the query, but a `user:…` authority without a path: the
            // password held a `?` or `#`, so its `@` comes later.
            None if !rest[..query].contains('/') && rest[..query].contains(':') => rest.rfind('@'),
            None => None,
        };
        if let Some(at) = at
            && let Some((user, _)) = rest[..at].split_once(':')
        {
            masked = format!("{}://{user}:{MASK}{}", &url[..s], &rest[at..]);
        }
    }

    // `name=value` pairs (query strings, libpq words) whose name suggests a secret.
    let is_name = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.');
    let text = masked.as_str();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while let Some(off) = text[i..].find('=') {
        let eq = i + off;
        let mut start = eq;
        while start > i && is_name(bytes[start - 1]) {
            start -= 1;
        }
        out.push_str(&text[i..=eq]);
        let value = eq + 1;
        let end = if bytes.get(value) == Some(&b'\'') {
            // A quoted libpq value runs to its closing quote.
            text[value + 1..]
                .find('\'')
                .map_or(text.len(), |q| value + 1 + q + 1)
        } else {
            text[value..]
                .find(|c: char| matches!(c, '&' | ';' | '#') || c.is_whitespace())
                .map_or(text.len(), |e| value + e)
        };
        if end > value && secret_name(&text[start..eq]) {
            out.push_str(MASK);
        } else {
            out.push_str(&text[value..end]);
        }
        i = end;
    }
    out.push_str(&text[i..]);
    out
}
