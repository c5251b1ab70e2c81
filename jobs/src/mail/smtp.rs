//! SMTP relays: how a `mail = "smtp…"` URL is read, how the client is built (plain,
//! STARTTLS or implicit TLS, with optional authentication) and which failures are
//! worth retrying.
//!
//! The scheme says how the connection is protected, so a typo cannot silently
//! downgrade it: `smtp://` is plain (a relay on loopback or inside the cluster),
//! `smtp+starttls://` requires STARTTLS (port 587 by default) and refuses to send if
//! the relay does not offer it, `smtps://` is TLS from the first byte (port 465).
//! Credentials never appear in the URL: the username and the password come from the
//! `[smtp]` config table or `OPNET_SMTP_*` environment variables, the password
//! preferably from a file (a mounted secret), read again at every delivery so a
//! rotated secret is picked up without a restart. Certificates are checked against the
//! system's trust store plus an optional `ca_file` (a private relay's CA); there is no
//! switch to accept invalid certificates.

use std::path::PathBuf;
use std::time::Duration;

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, Tokio1Executor};

use super::MailError;

/// How long one SMTP command may take before the send counts as timed out (and
/// transient). Lettre's own default is a minute; a relay slower than this is down.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// No TLS (`smtp://`): only for relays on loopback or a private network.
    Plain,
    /// STARTTLS, required (`smtp+starttls://`): no mail goes out in clear.
    StartTls,
    /// TLS from the start (`smtps://`, "implicit TLS").
    Tls,
}

impl Security {
    pub fn scheme(self) -> &'static str {
        match self {
            Security::Plain => "smtp",
            Security::StartTls => "smtp+starttls",
            Security::Tls => "smtps",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Security::Plain => 25,
            Security::StartTls => 587,
            Security::Tls => 465,
        }
    }
}

/// A password that never shows up in `Debug` output, logs or error messages.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where the SMTP password comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Password {
    /// Given directly (`OPNET_SMTP_PASSWORD`); a rotation needs a restart.
    Value(Secret),
    /// Read from this file at every delivery (`[smtp] password_file`,
    /// `OPNET_SMTP_PASSWORD_FILE`); one trailing newline is ignored.
    File(PathBuf),
}

impl Password {
    /// The password now. Errors name the file, never its content.
    pub fn read(&self) -> Result<Secret, MailError> {
        match self {
            Password::Value(s) => Ok(s.clone()),
            Password::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| MailError::Transport {
                    context: format!("smtp password file {}", path.display()),
                    reason: e.to_string(),
                    // A secret being re-mounted may be briefly absent; a missing one
                    // stays missing, and the bounded retries end either way.
                    transient: true,
                })?;
                let text = text.strip_suffix('\n').unwrap_or(&text);
                let text = text.strip_suffix('\r').unwrap_or(text);
                Ok(Secret::new(text))
            }
        }
    }
}

/// SMTP authentication: PLAIN or LOGIN, only ever over TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    pub username: String,
    pub password: Password,
}

/// An SMTP relay as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub auth: Option<Auth>,
    /// Extra trusted CA certificates (PEM), beside the system's.
    pub ca_file: Option<PathBuf>,
}

impl Relay {
    /// A relay without TLS or authentication (tests, loopback relays).
    pub fn plain(host: impl Into<String>, port: u16) -> Self {
        Relay {
            host: host.into(),
            port,
            security: Security::Plain,
            auth: None,
            ca_file: None,
        }
    }

    /// Parses `smtp://HOST[:PORT]`, `smtp+starttls://HOST[:PORT]` or
    /// `smtps://HOST[:PORT]`; `None` when `url` is not an SMTP URL at all, the reason
    /// when it is one but malformed.
    pub fn parse(url: &str) -> Option<Result<Relay, String>> {
        let url = url.trim();
        // The scheme must be followed by `://`, so `smtp` cannot match `smtps://…`.
        let (security, rest) = [Security::StartTls, Security::Tls, Security::Plain]
            .into_iter()
            .find_map(|s| {
                url.strip_prefix(s.scheme())
                    .and_then(|r| r.strip_prefix("://"))
                    .map(|r| (s, r))
            })?;
        Some(Self::parse_authority(security, rest.trim_end_matches('/')))
    }

    fn parse_authority(security: Security, rest: &str) -> Result<Relay, String> {
        if rest.contains('@') {
            return Err(
                "credentials do not belong in the URL; set [smtp] username and \
                 password_file (or OPNET_SMTP_USERNAME / OPNET_SMTP_PASSWORD_FILE)"
                    .into(),
            );
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| "unterminated [ in host".to_string())?;
            match after.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None if after.is_empty() => (host, None),
                None => return Err("unexpected text after host".into()),
            }
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err("empty host".into());
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| "port is not a number between 0 and 65535".to_string())?,
            None => security.default_port(),
        };
        Ok(Relay {
            host: host.to_owned(),
            port,
            security,
            auth: None,
            ca_file: None,
        })
    }

    /// The client for one delivery run. Reads the CA file and the password file now,
    /// so a rotated secret takes effect at the next delivery.
    pub(crate) fn client(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, MailError> {
        let tls_error = |reason: String| MailError::Transport {
            context: format!("smtp TLS settings for {self}"),
            reason,
            transient: false,
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host)
            .port(self.port)
            .timeout(Some(COMMAND_TIMEOUT));
        builder = match self.security {
            Security::Plain => builder.tls(Tls::None),
            Security::StartTls | Security::Tls => {
                let mut params = TlsParameters::builder(self.host.clone());
                if let Some(path) = &self.ca_file {
                    let pem = std::fs::read(path).map_err(|e| {
                        tls_error(format!("cannot read ca_file {}: {e}", path.display()))
                    })?;
                    // lettre's rustls parser skips what is not a certificate, so a
                    // file without one would silently trust nothing extra.
                    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                        return Err(tls_error(format!(
                            "ca_file {} holds no PEM certificate",
                            path.display()
                        )));
                    }
                    let cert = Certificate::from_pem(&pem).map_err(|e| {
                        tls_error(format!(
                            "ca_file {} is not a PEM certificate: {e}",
                            path.display()
                        ))
                    })?;
                    params = params.add_root_certificate(cert);
                }
                let params = params
                    .build_rustls()
                    .map_err(|e| tls_error(e.to_string()))?;
                builder.tls(match self.security {
                    Security::StartTls => Tls::Required(params),
                    _ => Tls::Wrapper(params),
                })
            }
        };
        if let Some(auth) = &self.auth {
            let password = auth.password.read()?;
            builder = builder
                .credentials(Credentials::new(
                    auth.username.clone(),
                    password.expose().to_owned(),
                ))
                .authentication(vec![Mechanism::Plain, Mechanism::Login]);
        }
        Ok(builder.build())
    }
}

/// `scheme://host:port`, plus the user when authenticating; never the password.
impl std::fmt::Display for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(f, "{}://{host}:{}", self.security.scheme(), self.port)?;
        if let Some(auth) = &self.auth {
            write!(f, " (as {})", auth.username)?;
        }
        Ok(())
    }
}

/// RFC 5321: a 4xx reply is transient, a 5xx permanent. Lettre's other error kinds
/// are transient when they are about the connection (refused, reset, timed out) and
/// permanent when the client itself, an unparsable reply or the TLS handshake is at
/// fault: a certificate the relay's name or our trust store rejects is rejected the
/// same way seconds later (the outbox still retries the row at later deliveries).
pub(crate) fn is_transient(e: &lettre::transport::smtp::Error) -> bool {
    if e.is_transient() || e.is_timeout() {
        return true;
    }
    if e.is_permanent()
        || e.is_client()
        || e.is_response()
        || e.is_transport_shutdown()
        || e.is_tls()
    {
        return false;
    }
    !is_tls_handshake_failure(e)
}

/// tokio-rustls reports a failed handshake (bad certificate, TLS alert, protocol
/// mismatch) as an `io::Error` of kind `InvalidData`; a reset or refused connection
/// has other kinds.
fn is_tls_handshake_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = e.source();
    while let Some(inner) = cur {
        if let Some(io) = inner.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::InvalidData
        {
            return true;
        }
        cur = inner.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_choose_the_protection_and_the_default_port() {
        let r = |u: &str| Relay::parse(u).expect("an smtp url").expect("valid");
        assert_eq!(
            r("smtp://relay.internal:2525"),
            Relay::plain("relay.internal", 2525)
        );
        assert_eq!(r("smtp://relay.internal").port, 25);
        let s = r("smtp+starttls://mail.example.com");
        assert_eq!((s.security, s.port), (Security::StartTls, 587));
        let s = r("smtps://mail.example.com/");
        assert_eq!((s.security, s.port), (Security::Tls, 465));
        let s = r("smtp+starttls://[::1]:2587");
        assert_eq!((s.host.as_str(), s.port), ("::1", 2587));
        assert!(Relay::parse("file:/tmp/x").is_none());
        assert!(Relay::parse("smtpx://h").is_none());
    }

    #[test]
    fn malformed_urls_and_credentials_in_urls_are_refused() {
        for bad in [
            "smtp://",
            "smtp://host:notaport",
            "smtp://h:70000",
            "smtps://[::1",
        ] {
            assert!(
                matches!(Relay::parse(bad), Some(Err(_))),
                "{bad:?} should be refused"
            );
        }
        let err = Relay::parse("smtp+starttls://user:hunter2@mail.example.com")
            .expect("smtp url")
            .err()
            .unwrap_or_default();
        assert!(err.contains("password_file"), "{err}");
        assert!(
            !err.contains("hunter2"),
            "the password must not be echoed: {err}"
        );
    }

    #[test]
    fn passwords_never_print() {
        let relay = Relay {
            auth: Some(Auth {
                username: "opnet".into(),
                password: Password::Value(Secret::new("hunter2")),
            }),
            ..Relay::parse("smtps://mail.example.com")
                .expect("url")
                .expect("valid")
        };
        let shown = format!("{relay} {relay:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("smtps://mail.example.com:465 (as opnet)"),
            "{shown}"
        );
    }

    #[test]
    fn password_files_are_read_at_each_use_without_the_trailing_newline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("smtp-password");
        std::fs::write(&path, "first secret\n").expect("write");
        let p = Password::File(path.clone());
        assert_eq!(p.read().expect("read").expose(), "first secret");
        // A rotated secret is seen by the next read, without a restart.
        std::fs::write(&path, "second\r\n").expect("write");
        assert_eq!(p.read().expect("read").expose(), "second");
        std::fs::remove_file(&path).expect("remove");
        let err = p.read().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("smtp-password"), "names the file: {err}");
    }

    #[test]
    fn a_bad_ca_file_is_a_permanent_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").expect("write");
        let relay = Relay {
            ca_file: Some(path),
            ..Relay::parse("smtp+starttls://127.0.0.1:2587")
                .expect("url")
                .expect("valid")
        };
        let Err(err) = relay.client() else {
            panic!("a CA file without a certificate must be refused");
        };
        assert!(!err.is_transient());
        assert!(err.to_string().contains("ca.pem"), "{err}");
    }
}
