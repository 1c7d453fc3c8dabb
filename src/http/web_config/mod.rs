//! `--web-config-file`: the Prometheus exporters' web configuration format
//! (prometheus/exporter-toolkit `web-config.yml`), so SREs reuse the file
//! their node exporters already have.
//!
//! Semantics follow exporter-toolkit: unknown fields are errors (its strict
//! YAML decoding), relative file names are relative to the configuration
//! file's directory, TLS is on as soon as any `tls_server_config` field is
//! set and then needs both a certificate and a key, `client_auth_type`
//! defaults to `NoClientCert` (`RequireClientCert` is its old spelling of
//! `RequireAnyClientCert`), a client CA without a client-auth policy is an
//! error, `http2` defaults to true and only applies with TLS, only the
//! documented security headers may be set, and every `basic_auth_users`
//! value must be a bcrypt hash. Stricter where rustls cannot do what Go's
//! `crypto/tls` does: the verifying modes need a client CA (rustls has no
//! system pool for client certificates), TLS 1.0/1.1, the CBC and RSA-key
//! -exchange cipher suites and the P-521 curve are refused by name instead
//! of being ignored.
//!
//! Validation loads every certificate and key, so a bad file stops start-up
//! instead of failing the first handshake. Certificates are read once: a
//! rotated certificate needs a restart (exporter-toolkit re-reads them on
//! every handshake).
//!
//! YAML crate: `yaml-rust2`, a maintained YAML 1.2 parser (the successor of
//! the unmaintained `yaml-rust`; `serde_yaml` is archived and its forks are
//! young). It gives a plain document tree, which we walk by hand: that is
//! what lets every error name its exact field (`tls_server_config.cert_file`)
//! and reject unknown fields at any depth, and it reports duplicate keys.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue};
use yaml_rust2::yaml::Hash;
use yaml_rust2::{Yaml, YamlLoader};

mod parse;
mod verify;
use verify::*;

/// A web configuration that failed to validate. Display is one line that
/// names the configuration file and the field (`web.yml:
/// tls_server_config.cert_file: cannot read /x/cert.pem: No such file or
/// directory`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebConfigError {
    /// The configuration file itself cannot be read.
    #[error("{file}: cannot read: {reason}")]
    Unreadable { file: String, reason: String },
    /// Not YAML, or not a mapping at the top.
    #[error("{file}: {field}: {reason}")]
    Syntax { file: String, field: String, reason: String },
    /// A field the format does not have (exporter-toolkit decodes strictly).
    #[error("{file}: {field}: unknown field (expected one of: {expected})")]
    UnknownField { file: String, field: String, expected: String },
    /// A value of the wrong type or out of its set.
    #[error("{file}: {field}: {reason}")]
    Invalid { file: String, field: String, reason: String },
    /// A documented setting this server cannot honour.
    #[error("{file}: {field}: {reason}")]
    Unsupported { file: String, field: String, reason: String },
    /// A file named by a field cannot be read.
    #[error("{file}: {field}: cannot read {path}: {reason}")]
    FileUnreadable { file: String, field: String, path: String, reason: String },
    /// A certificate, key or CA (file or inline PEM) that does not load.
    #[error("{file}: {field}: {source_name}: {reason}")]
    BadPem { file: String, field: String, source_name: String, reason: String },
}

impl WebConfigError {
    /// The configuration file, as the user named it.
    pub fn file(&self) -> &str {
        match self {
            Self::Unreadable { file, .. }
            | Self::Syntax { file, .. }
            | Self::UnknownField { file, .. }
            | Self::Invalid { file, .. }
            | Self::Unsupported { file, .. }
            | Self::FileUnreadable { file, .. }
            | Self::BadPem { file, .. } => file,
        }
    }

    /// The dotted field path (`tls_server_config.cert_file`); empty when
    /// the file itself is unreadable.
    pub fn field(&self) -> &str {
        match self {
            Self::Unreadable { .. } => "",
            Self::Syntax { field, .. }
            | Self::UnknownField { field, .. }
            | Self::Invalid { field, .. }
            | Self::Unsupported { field, .. }
            | Self::FileUnreadable { field, .. }
            | Self::BadPem { field, .. } => field,
        }
    }
}

/// exporter-toolkit's `client_auth_type` values (Go's `tls.ClientAuthType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthType {
    NoClientCert,
    /// Asks for a certificate; accepts none and does not verify one given.
    RequestClientCert,
    /// Requires a certificate but does not verify it against a CA.
    RequireAnyClientCert,
    /// Verifies a certificate against the client CA when one is given.
    VerifyClientCertIfGiven,
    /// Requires a certificate signed by the client CA (mutual TLS).
    RequireAndVerifyClientCert,
}

impl ClientAuthType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "" | "NoClientCert" => Self::NoClientCert,
            "RequestClientCert" => Self::RequestClientCert,
            // exporter-toolkit keeps the old name for compatibility.
            "RequireAnyClientCert" | "RequireClientCert" => Self::RequireAnyClientCert,
            "VerifyClientCertIfGiven" => Self::VerifyClientCertIfGiven,
            "RequireAndVerifyClientCert" => Self::RequireAndVerifyClientCert,
            _ => return None,
        })
    }

    fn verifies(self) -> bool {
        matches!(self, Self::VerifyClientCertIfGiven | Self::RequireAndVerifyClientCert)
    }

    fn requires(self) -> bool {
        matches!(self, Self::RequireAnyClientCert | Self::RequireAndVerifyClientCert)
    }
}

/// A TLS protocol version as the format names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// The TLS side of a validated configuration.
#[derive(Clone)]
pub struct TlsSettings {
    /// Ready for `tokio_rustls::TlsAcceptor`; ALPN offers `h2` only when
    /// `http_server_config.http2` is on.
    pub server_config: Arc<rustls::ServerConfig>,
    pub client_auth: ClientAuthType,
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("client_auth", &self.client_auth)
            .field("min_version", &self.min_version)
            .field("max_version", &self.max_version)
            .field("alpn", &self.server_config.alpn_protocols)
            .finish()
    }
}

/// exporter-toolkit's `rate_limit`: a token bucket over all requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// One token is added per interval.
    pub interval: Duration,
    pub burst: u32,
}

/// One `basic_auth_users` entry.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicAuthUser {
    pub name: String,
    /// The bcrypt hash, validated.
    pub hash: String,
}

impl fmt::Debug for BasicAuthUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuthUser").field("name", &self.name).field("hash", &"<bcrypt>").finish()
    }
}

/// A validated web configuration: certificates loaded, hashes checked.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// The file it came from, as given.
    pub file: PathBuf,
    /// `None`: plain HTTP.
    pub tls: Option<TlsSettings>,
    /// HTTP/2 (over TLS only, as in exporter-toolkit).
    pub http2: bool,
    /// `http_server_config.headers`, set on every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Empty: no basic authentication.
    pub users: Vec<BasicAuthUser>,
    pub rate_limit: Option<RateLimit>,
}

/// The security headers exporter-toolkit lets a configuration set, with
/// their allowed values (`None`: any value).
const HEADERS: &[(&str, Option<&[&str]>)] = &[
    ("Strict-Transport-Security", None),
    ("X-Content-Type-Options", Some(&["nosniff"])),
    ("X-Frame-Options", Some(&["deny", "sameorigin"])),
    ("X-XSS-Protection", None),
    ("Content-Security-Policy", None),
];

const TOP_FIELDS: &[&str] = &["tls_server_config", "http_server_config", "basic_auth_users", "rate_limit"];
const TLS_FIELDS: &[&str] = &[
    "cert",
    "key",
    "client_ca",
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "client_allowed_sans",
    "min_version",
    "max_version",
    "cipher_suites",
    "prefer_server_cipher_suites",
    "curve_preferences",
];
const HTTP_FIELDS: &[&str] = &["http2", "headers"];
const RATE_FIELDS: &[&str] = &["interval", "burst"];

impl WebConfig {
    /// Reads and validates `path`, loading every certificate and key it
    /// names. Blocking (file reads): call it before serving, not on an
    /// async worker in the middle of traffic.
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| WebConfigError::Unreadable { file: path.display().to_string(), reason: io_reason(&e) })?;
        Self::parse(path, &text)
    }

    /// Validates `text` as if read from `path` (relative file names are
    /// resolved against `path`'s directory).
    pub fn parse(path: &Path, text: &str) -> Result<WebConfig, WebConfigError> {
        let cx = Cx { file: path.display().to_string(), dir: path.parent().map(Path::to_path_buf).unwrap_or_default() };
        let docs = YamlLoader::load_from_str(text).map_err(|e| {
            let m = e.marker();
            cx.syntax(&format!("line {}", m.line()), &format!("not valid YAML: {}", e.info()))
        })?;
        let root = match docs.as_slice() {
            [] => Hash::new(),
            [Yaml::Null] => Hash::new(),
            [Yaml::Hash(h)] => h.clone(),
            [_] => return Err(cx.syntax("(top level)", "expected a mapping of settings")),
            _ => return Err(cx.syntax("(top level)", "expected one YAML document, found several")),
        };
        let top = cx.fields("", &root, TOP_FIELDS)?;

        let http = match top.get("http_server_config") {
            Some(v) => cx.opt_map("http_server_config", v)?,
            None => None,
        };
        let (http2, headers) = cx.http_config(http.as_ref())?;
        let tls = match top.get("tls_server_config") {
            Some(v) => match cx.opt_map("tls_server_config", v)? {
                Some(h) => cx.tls_config(&h, http2)?,
                None => None,
            },
            None => None,
        };
        let users = match top.get("basic_auth_users") {
            Some(v) => cx.users(v)?,
            None => Vec::new(),
        };
        let rate_limit = match top.get("rate_limit") {
            Some(v) => match cx.opt_map("rate_limit", v)? {
                Some(h) => cx.rate_limit(&h)?,
                None => None,
            },
            None => None,
        };
        Ok(WebConfig { file: path.to_path_buf(), tls, http2, headers, users, rate_limit })
    }

    /// Whether requests need credentials.
    pub fn basic_auth(&self) -> bool {
        !self.users.is_empty()
    }
}

/// `std::io::Error`'s text without the `(os error N)` suffix.
fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) if s.ends_with(')') => s[..i].to_string(),
        _ => s,
    }
}

/// Validation context: the file name for messages and the directory
/// relative names resolve against.
struct Cx {
    file: String,
    dir: PathBuf,
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn kind(v: &Yaml) -> &'static str {
    match v {
        Yaml::Real(_) => "a number",
        Yaml::Integer(_) => "an integer",
        Yaml::String(_) => "a string",
        Yaml::Boolean(_) => "a boolean",
        Yaml::Array(_) => "a list",
        Yaml::Hash(_) => "a mapping",
        Yaml::Alias(_) => "an alias",
        Yaml::Null => "null",
        Yaml::BadValue => "an invalid value",
    }
}

#[cfg(test)]
mod tests {
    use super::parse::parse_go_duration;
    use super::*;

    /// A directory of its own per test, with a self-signed certificate,
    /// its key and a CA file, generated once per run (no keys committed).
    fn fixture(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("accord-webcfg-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap().self_signed(&key).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        std::fs::write(dir.join("ca.pem"), cert.pem()).unwrap();
        dir
    }

    fn parse_in(dir: &Path, yaml: &str) -> Result<WebConfig, WebConfigError> {
        WebConfig::parse(&dir.join("web.yml"), yaml)
    }

    /// The error's one line starts with the file and names the field.
    fn err_in(dir: &Path, yaml: &str, field: &str) -> String {
        let e = parse_in(dir, yaml).expect_err("should be refused");
        let line = e.to_string();
        assert_eq!(line.lines().count(), 1, "{line}");
        let file = dir.join("web.yml").display().to_string();
        assert_eq!(e.file(), file);
        assert!(line.starts_with(&format!("{file}: {field}")), "expected {field}: {line}");
        assert_eq!(e.field(), field, "{line}");
        line
    }

    const TLS: &str = "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n";

    fn hash() -> String {
        bcrypt::hash("secret", 4).unwrap()
    }

    #[test]
    fn empty_and_minimal_files_mean_plain_http_without_auth() {
        let dir = Path::new("/nonexistent");
        for yaml in ["", "---\n", "# nothing\n", "tls_server_config:\nbasic_auth_users:\n"] {
            let c = parse_in(dir, yaml).unwrap();
            assert!(c.tls.is_none() && c.users.is_empty() && c.headers.is_empty() && c.http2, "{yaml:?}");
        }
    }

    #[test]
    fn a_full_file_loads_certificates_users_and_headers() {
        let dir = fixture("full");
        let yaml = format!(
            "{TLS}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  min_version: TLS13\n  \
             client_allowed_sans: [prometheus.example, 10.0.0.1, 'spiffe://example/prom']\n  \
             cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n  curve_preferences: [X25519, CurveP256]\n  \
             prefer_server_cipher_suites: false\n\
             http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: sameorigin\n    \
             Content-Security-Policy: \"default-src 'self'\"\n    X-XSS-Protection: ''\n\
             basic_auth_users:\n  alice: {h}\n  bob: {h}\n\
             rate_limit:\n  interval: 1m30s\n  burst: 5\n",
            h = hash()
        );
        let c = parse_in(&dir, &yaml).unwrap();
        let tls = c.tls.as_ref().unwrap();
        assert_eq!(tls.client_auth, ClientAuthType::RequireAndVerifyClientCert);
        assert_eq!((tls.min_version, tls.max_version), (TlsVersion::Tls13, TlsVersion::Tls13));
        assert_eq!(tls.server_config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert!(!tls.server_config.ignore_client_order);
        assert!(!c.http2);
        let names: Vec<&str> = c.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["x-frame-options", "content-security-policy"], "blank values are unset");
        assert_eq!(c.users.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(), ["alice", "bob"]);
        assert!(c.basic_auth());
        assert_eq!(c.rate_limit, Some(RateLimit { interval: Duration::from_secs(90), burst: 5 }));
        // Inline PEM works as well as files; absolute paths are kept.
        let cert = std::fs::read_to_string(dir.join("cert.pem")).unwrap();
        let yaml = format!(
            "tls_server_config:\n  cert: |\n{}  key_file: {}\n",
            cert.lines().map(|l| format!("    {l}\n")).collect::<String>(),
            dir.join("key.pem").display()
        );
        let c = parse_in(Path::new("/elsewhere"), &yaml).unwrap();
        assert_eq!(c.tls.unwrap().server_config.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    }

    #[test]
    fn unknown_fields_are_refused_at_every_depth() {
        let dir = fixture("unknown");
        let line = err_in(&dir, "basic_auth_user:\n  alice: x\n", "basic_auth_user");
        assert!(line.contains("unknown field (expected one of: tls_server_config,"), "{line}");
        let line = err_in(&dir, &format!("{TLS}  certfile: x\n"), "tls_server_config.certfile");
        assert!(line.contains("unknown field"), "{line}");
        err_in(&dir, "http_server_config:\n  http3: true\n", "http_server_config.http3");
        err_in(
            &dir,
            "http_server_config:\n  headers:\n    X-Powered-By: me\n",
            "http_server_config.headers.X-Powered-By",
        );
        err_in(&dir, "rate_limit:\n  bursts: 1\n", "rate_limit.bursts");
    }

    #[test]
    fn malformed_bcrypt_hashes_are_refused() {
        let dir = Path::new("/nonexistent");
        let line = err_in(dir, "basic_auth_users:\n  alice: plaintext\n", "basic_auth_users.alice");
        assert!(line.contains("not a bcrypt hash"), "{line}");
        // Right length and shape, wrong cost.
        let h = hash().replacen("$04$", "$99$", 1);
        let line = err_in(dir, &format!("basic_auth_users:\n  bob: '{h}'\n"), "basic_auth_users.bob");
        assert!(line.contains("cost"), "{line}");
        err_in(dir, "basic_auth_users:\n  carol: 12\n", "basic_auth_users.carol");
        err_in(dir, "basic_auth_users: [alice]\n", "basic_auth_users");
    }

    #[test]
    fn missing_or_unreadable_certificates_name_file_and_field() {
        let dir = fixture("missing");
        let line = err_in(
            &dir,
            "tls_server_config:\n  cert_file: nope.pem\n  key_file: key.pem\n",
            "tls_server_config.cert_file",
        );
        let missing = dir.join("nope.pem").display().to_string();
        assert!(line.ends_with(&format!("cannot read {missing}: No such file or directory")), "{line}");
        let line = err_in(
            &dir,
            "tls_server_config:\n  cert_file: cert.pem\n  key_file: gone.pem\n",
            "tls_server_config.key_file",
        );
        assert!(line.contains("cannot read"), "{line}");
        // Not PEM at all.
        std::fs::write(dir.join("junk.pem"), "hello\n").unwrap();
        let line = err_in(
            &dir,
            "tls_server_config:\n  cert_file: junk.pem\n  key_file: key.pem\n",
            "tls_server_config.cert_file",
        );
        assert!(line.contains("no PEM certificate"), "{line}");
        let line = err_in(
            &dir,
            "tls_server_config:\n  cert_file: cert.pem\n  key_file: junk.pem\n",
            "tls_server_config.key_file",
        );
        assert!(line.contains("no PEM private key"), "{line}");
        // A key that is not the certificate's.
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(dir.join("other.key"), other.serialize_pem()).unwrap();
        let line = err_in(
            &dir,
            "tls_server_config:\n  cert_file: cert.pem\n  key_file: other.key\n",
            "tls_server_config.key_file",
        );
        assert!(line.contains("does not match"), "{line}");
    }

    #[test]
    fn cert_and_key_come_together() {
        let dir = fixture("pair");
        let line = err_in(&dir, "tls_server_config:\n  key_file: key.pem\n", "tls_server_config.cert_file");
        assert!(line.contains("missing while a key is set"), "{line}");
        let line = err_in(&dir, "tls_server_config:\n  cert_file: cert.pem\n", "tls_server_config.key_file");
        assert!(line.contains("missing while a certificate is set"), "{line}");
        // Any TLS setting turns TLS on, and then both are needed.
        err_in(&dir, "tls_server_config:\n  min_version: TLS13\n", "tls_server_config.cert_file");
        err_in(&dir, &format!("{TLS}  cert: inline\n"), "tls_server_config.cert");
    }

    #[test]
    fn client_auth_policies_and_their_ca() {
        let dir = fixture("ca");
        for mode in ["VerifyClientCertIfGiven", "RequireAndVerifyClientCert"] {
            let line = err_in(&dir, &format!("{TLS}  client_auth_type: {mode}\n"), "tls_server_config.client_ca_file");
            assert!(line.contains("needs client_ca_file"), "{line}");
        }
        let line = err_in(&dir, &format!("{TLS}  client_ca_file: ca.pem\n"), "tls_server_config.client_ca_file");
        assert!(line.contains("NoClientCert"), "{line}");
        err_in(&dir, &format!("{TLS}  client_auth_type: Always\n"), "tls_server_config.client_auth_type");
        // A CA file without a certificate in it.
        std::fs::write(dir.join("empty-ca.pem"), "# no certificates here\n").unwrap();
        let line = err_in(
            &dir,
            &format!("{TLS}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: empty-ca.pem\n"),
            "tls_server_config.client_ca_file",
        );
        assert!(line.contains("no CA certificate found"), "{line}");
        // Every mode with what it needs loads; the old spelling too.
        for (mode, want) in [
            ("NoClientCert", ClientAuthType::NoClientCert),
            ("RequestClientCert", ClientAuthType::RequestClientCert),
            ("RequireAnyClientCert", ClientAuthType::RequireAnyClientCert),
            ("RequireClientCert", ClientAuthType::RequireAnyClientCert),
            ("VerifyClientCertIfGiven", ClientAuthType::VerifyClientCertIfGiven),
            ("RequireAndVerifyClientCert", ClientAuthType::RequireAndVerifyClientCert),
        ] {
            let ca = if want.verifies() { "  client_ca_file: ca.pem\n" } else { "" };
            let c = parse_in(&dir, &format!("{TLS}  client_auth_type: {mode}\n{ca}")).unwrap();
            assert_eq!(c.tls.unwrap().client_auth, want, "{mode}");
        }
        // Allowed SANs need a policy that requires a certificate.
        err_in(&dir, &format!("{TLS}  client_allowed_sans: [a.example]\n"), "tls_server_config.client_allowed_sans");
        err_in(
            &dir,
            &format!("{TLS}  client_auth_type: RequireAnyClientCert\n  client_allowed_sans: [ops@example.com]\n"),
            "tls_server_config.client_allowed_sans[0]",
        );
    }

    #[test]
    fn tls_versions_ciphers_and_curves() {
        let dir = fixture("versions");
        let line = err_in(&dir, &format!("{TLS}  min_version: TLS14\n"), "tls_server_config.min_version");
        assert!(line.contains("unknown TLS version"), "{line}");
        let line = err_in(&dir, &format!("{TLS}  min_version: TLS10\n"), "tls_server_config.min_version");
        assert!(line.contains("not supported"), "{line}");
        err_in(&dir, &format!("{TLS}  max_version: 1.2\n"), "tls_server_config.max_version");
        err_in(&dir, &format!("{TLS}  min_version: TLS13\n  max_version: TLS12\n"), "tls_server_config.min_version");
        let c = parse_in(&dir, &format!("{TLS}  max_version: TLS12\n")).unwrap();
        assert_eq!(c.tls.unwrap().max_version, TlsVersion::Tls12);
        let line = err_in(
            &dir,
            &format!("{TLS}  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_RSA_WITH_AES_128_CBC_SHA]\n"),
            "tls_server_config.cipher_suites[1]",
        );
        assert!(line.contains("not supported"), "{line}");
        err_in(&dir, &format!("{TLS}  cipher_suites: [rot13]\n"), "tls_server_config.cipher_suites[0]");
        err_in(&dir, &format!("{TLS}  curve_preferences: [CurveP521]\n"), "tls_server_config.curve_preferences[0]");
        err_in(&dir, &format!("{TLS}  curve_preferences: [Curve25519]\n"), "tls_server_config.curve_preferences[0]");
    }

    #[test]
    fn headers_http2_and_rate_limit_values() {
        let dir = Path::new("/nonexistent");
        let line = err_in(
            dir,
            "http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n",
            "http_server_config.headers.X-Content-Type-Options",
        );
        assert!(line.contains("expected one of: nosniff"), "{line}");
        err_in(
            dir,
            "http_server_config:\n  headers:\n    X-Frame-Options: DENY\n",
            "http_server_config.headers.X-Frame-Options",
        );
        err_in(dir, "http_server_config:\n  http2: yes\n", "http_server_config.http2");
        err_in(dir, "rate_limit:\n  interval: soon\n  burst: 1\n", "rate_limit.interval");
        err_in(dir, "rate_limit:\n  interval: 1s\n", "rate_limit.burst");
        err_in(dir, "rate_limit:\n  interval: 1s\n  burst: -1\n", "rate_limit.burst");
        assert_eq!(parse_in(dir, "rate_limit:\n  interval: 0\n  burst: 0\n").unwrap().rate_limit, None);
    }

    #[test]
    fn yaml_errors_and_unreadable_files() {
        let dir = Path::new("/nonexistent");
        let e = parse_in(dir, "tls_server_config: [\n").unwrap_err();
        assert!(matches!(e, WebConfigError::Syntax { .. }), "{e}");
        assert_eq!(e.to_string().lines().count(), 1);
        let e = parse_in(dir, "basic_auth_users:\n  a: x\n  a: y\n").unwrap_err();
        assert!(e.to_string().contains("duplicated key"), "{e}");
        err_in(dir, "- a\n- b\n", "(top level)");
        let e = WebConfig::load(Path::new("/nonexistent/web.yml")).unwrap_err();
        assert_eq!(e.to_string(), "/nonexistent/web.yml: cannot read: No such file or directory");
    }

    /// deploy/web-config.example.yml validates once its certificates exist.
    #[test]
    fn the_example_file_validates() {
        let dir = fixture("example");
        std::fs::create_dir_all(dir.join("tls")).unwrap();
        std::fs::copy(dir.join("cert.pem"), dir.join("tls/server.crt")).unwrap();
        std::fs::copy(dir.join("key.pem"), dir.join("tls/server.key")).unwrap();
        let c = parse_in(&dir, include_str!("../../../deploy/web-config.example.yml")).unwrap();
        assert!(c.tls.is_some());
        assert_eq!(c.users.len(), 1);
        assert!(bcrypt::verify("change-me", &c.users[0].hash).unwrap());
        assert_eq!(c.headers.len(), 3);
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        for bad in ["", "s", "1", "1d", "-1s", "1s2"] {
            assert_eq!(parse_go_duration(bad), None, "{bad:?}");
        }
    }
}
