//! Walking the YAML document of a web configuration: every field checked,
//! every error naming its field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue};
use rustls::crypto::SupportedKxGroup;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, SupportedCipherSuite};
use yaml_rust2::yaml::Hash;
use yaml_rust2::Yaml;

use super::*;

impl Cx {
    pub(super) fn syntax(&self, field: &str, reason: &str) -> WebConfigError {
        WebConfigError::Syntax { file: self.file.clone(), field: field.into(), reason: reason.into() }
    }

    pub(super) fn invalid(&self, field: &str, reason: impl Into<String>) -> WebConfigError {
        WebConfigError::Invalid { file: self.file.clone(), field: field.into(), reason: reason.into() }
    }

    pub(super) fn unsupported(&self, field: &str, reason: impl Into<String>) -> WebConfigError {
        WebConfigError::Unsupported { file: self.file.clone(), field: field.into(), reason: reason.into() }
    }

    pub(super) fn bad_pem(&self, field: &str, source_name: &str, reason: impl Into<String>) -> WebConfigError {
        WebConfigError::BadPem {
            file: self.file.clone(),
            field: field.into(),
            source_name: source_name.into(),
            reason: reason.into(),
        }
    }

    /// The string keys of a mapping, each checked against `allowed`.
    pub(super) fn fields<'h>(
        &self,
        prefix: &str,
        h: &'h Hash,
        allowed: &[&str],
    ) -> Result<BTreeMap<&'h str, &'h Yaml>, WebConfigError> {
        let mut out = BTreeMap::new();
        for (k, v) in h {
            let Some(k) = k.as_str() else {
                return Err(self.invalid(prefix, format!("keys must be strings, found {}", kind(k))));
            };
            if !allowed.contains(&k) {
                return Err(WebConfigError::UnknownField {
                    file: self.file.clone(),
                    field: join(prefix, k),
                    expected: allowed.join(", "),
                });
            }
            out.insert(k, v);
        }
        Ok(out)
    }

    /// A nested mapping; YAML null (an empty section) counts as absent.
    pub(super) fn opt_map(&self, field: &str, v: &Yaml) -> Result<Option<Hash>, WebConfigError> {
        match v {
            Yaml::Null => Ok(None),
            Yaml::Hash(h) => Ok(Some(h.clone())),
            other => Err(self.invalid(field, format!("expected a mapping, found {}", kind(other)))),
        }
    }

    /// A string; null and "" count as unset, as in Go.
    pub(super) fn opt_str(&self, field: &str, v: Option<&&Yaml>) -> Result<Option<String>, WebConfigError> {
        match v {
            None | Some(Yaml::Null) => Ok(None),
            Some(Yaml::String(s)) if s.is_empty() => Ok(None),
            Some(Yaml::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.invalid(field, format!("expected a string, found {}", kind(other)))),
        }
    }

    pub(super) fn opt_bool(&self, field: &str, v: Option<&&Yaml>) -> Result<Option<bool>, WebConfigError> {
        match v {
            None | Some(Yaml::Null) => Ok(None),
            Some(Yaml::Boolean(b)) => Ok(Some(*b)),
            Some(other) => Err(self.invalid(field, format!("expected true or false, found {}", kind(other)))),
        }
    }

    pub(super) fn str_list(&self, field: &str, v: Option<&&Yaml>) -> Result<Vec<String>, WebConfigError> {
        match v {
            None | Some(Yaml::Null) => Ok(Vec::new()),
            Some(Yaml::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Yaml::String(s) => Ok(s.clone()),
                    other => {
                        Err(self.invalid(&format!("{field}[{i}]"), format!("expected a string, found {}", kind(other))))
                    }
                })
                .collect(),
            Some(other) => Err(self.invalid(field, format!("expected a list of strings, found {}", kind(other)))),
        }
    }

    /// A file name as exporter-toolkit resolves it: relative to the
    /// configuration file's directory.
    pub(super) fn resolve(&self, name: &str) -> PathBuf {
        let p = Path::new(name);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }

    /// The bytes of `field` (a file name) or of its inline twin.
    pub(super) fn pem_source(
        &self,
        file_field: &str,
        file: Option<String>,
        inline_field: &str,
        inline: Option<String>,
    ) -> Result<Option<(String, String, Vec<u8>)>, WebConfigError> {
        match (file, inline) {
            (Some(_), Some(_)) => {
                Err(self.invalid(inline_field, format!("set either {inline_field} or {file_field}, not both")))
            }
            (Some(name), None) => {
                let path = self.resolve(&name);
                let bytes = std::fs::read(&path).map_err(|e| WebConfigError::FileUnreadable {
                    file: self.file.clone(),
                    field: file_field.into(),
                    path: path.display().to_string(),
                    reason: io_reason(&e),
                })?;
                Ok(Some((file_field.to_string(), path.display().to_string(), bytes)))
            }
            (None, Some(text)) => Ok(Some((inline_field.to_string(), "inline PEM".to_string(), text.into_bytes()))),
            (None, None) => Ok(None),
        }
    }

    pub(super) fn http_config(
        &self,
        h: Option<&Hash>,
    ) -> Result<(bool, Vec<(HeaderName, HeaderValue)>), WebConfigError> {
        let Some(h) = h else { return Ok((true, Vec::new())) };
        let f = self.fields("http_server_config", h, HTTP_FIELDS)?;
        let http2 = self.opt_bool("http_server_config.http2", f.get("http2"))?.unwrap_or(true);
        let mut headers = Vec::new();
        if let Some(v) = f.get("headers") {
            if let Some(hh) = self.opt_map("http_server_config.headers", v)? {
                for (k, v) in &hh {
                    let Some(name) = k.as_str() else {
                        return Err(self.invalid("http_server_config.headers", "header names must be strings"));
                    };
                    let field = format!("http_server_config.headers.{name}");
                    let Some((_, allowed)) = HEADERS.iter().find(|(n, _)| *n == name) else {
                        let names: Vec<&str> = HEADERS.iter().map(|(n, _)| *n).collect();
                        return Err(WebConfigError::UnknownField {
                            file: self.file.clone(),
                            field,
                            expected: names.join(", "),
                        });
                    };
                    // "Unset if blank."
                    let Some(value) = self.opt_str(&field, Some(&v))? else { continue };
                    if let Some(allowed) = allowed {
                        if !allowed.contains(&value.as_str()) {
                            return Err(self.invalid(
                                &field,
                                format!("invalid value {value:?}, expected one of: {}", allowed.join(", ")),
                            ));
                        }
                    }
                    let value = HeaderValue::from_str(&value)
                        .map_err(|_| self.invalid(&field, "not a valid HTTP header value"))?;
                    let name = HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| self.invalid(&field, "not a valid HTTP header name"))?;
                    headers.push((name, value));
                }
            }
        }
        Ok((http2, headers))
    }

    pub(super) fn users(&self, v: &Yaml) -> Result<Vec<BasicAuthUser>, WebConfigError> {
        let Some(h) = self.opt_map("basic_auth_users", v)? else { return Ok(Vec::new()) };
        let mut users = Vec::new();
        for (k, v) in &h {
            let name = match k {
                Yaml::String(s) => s.clone(),
                other => {
                    return Err(
                        self.invalid("basic_auth_users", format!("user names must be strings, found {}", kind(other)))
                    )
                }
            };
            let field = format!("basic_auth_users.{name}");
            let hash = match v {
                Yaml::String(s) => s.clone(),
                other => return Err(self.invalid(&field, format!("expected a bcrypt hash, found {}", kind(other)))),
            };
            check_bcrypt(&hash).map_err(|reason| self.invalid(&field, reason))?;
            users.push(BasicAuthUser { name, hash });
        }
        Ok(users)
    }

    pub(super) fn rate_limit(&self, h: &Hash) -> Result<Option<RateLimit>, WebConfigError> {
        let f = self.fields("rate_limit", h, RATE_FIELDS)?;
        let interval = match f.get("interval") {
            None | Some(Yaml::Null) => Duration::ZERO,
            Some(Yaml::Integer(0)) => Duration::ZERO,
            Some(Yaml::String(s)) => parse_go_duration(s).ok_or_else(|| {
                self.invalid("rate_limit.interval", format!("invalid duration {s:?} (e.g. 100ms, 1s, 1m30s)"))
            })?,
            Some(other) => {
                return Err(self
                    .invalid("rate_limit.interval", format!("expected a duration such as 1s, found {}", kind(other))))
            }
        };
        let burst = match f.get("burst") {
            None | Some(Yaml::Null) => 0,
            Some(Yaml::Integer(n)) => u32::try_from(*n)
                .map_err(|_| self.invalid("rate_limit.burst", format!("expected a count of requests, found {n}")))?,
            Some(other) => {
                return Err(self.invalid("rate_limit.burst", format!("expected an integer, found {}", kind(other))))
            }
        };
        // exporter-toolkit: an interval of 0 disables the limiter.
        if interval.is_zero() {
            return Ok(None);
        }
        if burst == 0 {
            return Err(self.invalid(
                "rate_limit.burst",
                "must be at least 1 when rate_limit.interval is set (0 refuses every request)",
            ));
        }
        Ok(Some(RateLimit { interval, burst }))
    }

    pub(super) fn tls_config(&self, h: &Hash, http2: bool) -> Result<Option<TlsSettings>, WebConfigError> {
        const P: &str = "tls_server_config";
        let f = self.fields(P, h, TLS_FIELDS)?;
        let s = |name: &str| self.opt_str(&join(P, name), f.get(name));
        let cert_file = s("cert_file")?;
        let cert_inline = s("cert")?;
        let key_file = s("key_file")?;
        let key_inline = s("key")?;
        let ca_file = s("client_ca_file")?;
        let ca_inline = s("client_ca")?;
        let auth_text = s("client_auth_type")?;
        let min_text = s("min_version")?;
        let max_text = s("max_version")?;
        let sans = self.str_list(&join(P, "client_allowed_sans"), f.get("client_allowed_sans"))?;
        let suites = self.str_list(&join(P, "cipher_suites"), f.get("cipher_suites"))?;
        let curves = self.str_list(&join(P, "curve_preferences"), f.get("curve_preferences"))?;
        let prefer_server =
            self.opt_bool(&join(P, "prefer_server_cipher_suites"), f.get("prefer_server_cipher_suites"))?;

        let anything = cert_file.is_some()
            || cert_inline.is_some()
            || key_file.is_some()
            || key_inline.is_some()
            || ca_file.is_some()
            || ca_inline.is_some()
            || auth_text.is_some()
            || min_text.is_some()
            || max_text.is_some()
            || !sans.is_empty()
            || !suites.is_empty()
            || !curves.is_empty()
            || prefer_server.is_some();
        if !anything {
            return Ok(None);
        }

        // Versions and the client-auth policy first: cheap checks before files.
        let version = |field: &str, text: Option<String>, default: TlsVersion| -> Result<TlsVersion, WebConfigError> {
            match text.as_deref() {
                None => Ok(default),
                Some("TLS12") => Ok(TlsVersion::Tls12),
                Some("TLS13") => Ok(TlsVersion::Tls13),
                Some(v @ ("TLS10" | "TLS11")) => {
                    Err(self
                        .unsupported(&join(P, field), format!("{v} is not supported (rustls speaks TLS12 and TLS13)")))
                }
                Some(v) => {
                    Err(self.invalid(&join(P, field), format!("unknown TLS version {v:?}, expected TLS12 or TLS13")))
                }
            }
        };
        let min_version = version("min_version", min_text, TlsVersion::Tls12)?;
        let max_version = version("max_version", max_text, TlsVersion::Tls13)?;
        if min_version > max_version {
            return Err(self.invalid(&join(P, "min_version"), "is above tls_server_config.max_version"));
        }
        let client_auth = match auth_text.as_deref() {
            None => ClientAuthType::NoClientCert,
            Some(t) => ClientAuthType::parse(t).ok_or_else(|| {
                self.invalid(
                    &join(P, "client_auth_type"),
                    format!(
                        "unknown value {t:?}, expected one of: NoClientCert, RequestClientCert, RequireAnyClientCert, \
                         VerifyClientCertIfGiven, RequireAndVerifyClientCert"
                    ),
                )
            })?,
        };
        let has_ca = ca_file.is_some() || ca_inline.is_some();
        if has_ca && client_auth == ClientAuthType::NoClientCert {
            return Err(self.invalid(
                &join(P, if ca_file.is_some() { "client_ca_file" } else { "client_ca" }),
                "a client CA is configured but client_auth_type is NoClientCert (set RequireAndVerifyClientCert)",
            ));
        }
        if client_auth.verifies() && !has_ca {
            return Err(self.invalid(
                &join(P, "client_ca_file"),
                format!("client_auth_type {client_auth:?} needs client_ca_file (or client_ca) to verify client certificates"),
            ));
        }
        if !sans.is_empty() && !client_auth.requires() {
            return Err(self.invalid(
                &join(P, "client_allowed_sans"),
                "needs client_auth_type RequireAnyClientCert or RequireAndVerifyClientCert (otherwise a client may send no certificate)",
            ));
        }
        let allowed_sans = sans
            .iter()
            .enumerate()
            .map(|(i, s)| {
                AllowedSan::parse(s).ok_or_else(|| {
                    self.unsupported(
                        &format!("{P}.client_allowed_sans[{i}]"),
                        format!("{s:?}: e-mail SANs are not supported (DNS names, IP addresses and URIs are)"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        // Both the certificate and the key, from a file or inline.
        let has_cert = cert_file.is_some() || cert_inline.is_some();
        let has_key = key_file.is_some() || key_inline.is_some();
        if !has_cert {
            let reason = if has_key {
                "missing while a key is set: TLS needs both cert_file (or cert) and key_file (or key)"
            } else {
                "missing: TLS settings are present, and TLS needs cert_file (or cert) and key_file (or key)"
            };
            return Err(self.invalid(&join(P, "cert_file"), reason));
        }
        if !has_key {
            return Err(self.invalid(
                &join(P, "key_file"),
                "missing while a certificate is set: TLS needs both cert_file (or cert) and key_file (or key)",
            ));
        }
        let Some((cert_field, cert_src, cert_pem)) =
            self.pem_source(&join(P, "cert_file"), cert_file, &join(P, "cert"), cert_inline)?
        else {
            return Err(self.invalid(&join(P, "cert_file"), "missing"));
        };
        let Some((key_field, key_src, key_pem)) =
            self.pem_source(&join(P, "key_file"), key_file, &join(P, "key"), key_inline)?
        else {
            return Err(self.invalid(&join(P, "key_file"), "missing"));
        };
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(&cert_pem)
                .collect::<Result<_, _>>()
                .map_err(|e| self.bad_pem(&cert_field, &cert_src, format!("not a PEM certificate: {e}")))?;
        if chain.is_empty() {
            return Err(self.bad_pem(&cert_field, &cert_src, "no PEM certificate found"));
        }
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            self.bad_pem(&key_field, &key_src, format!("no PEM private key found (PKCS#8, PKCS#1 or SEC1): {e}"))
        })?;

        // The cipher suites and curves, from the ring provider.
        let mut provider = rustls::crypto::ring::default_provider();
        if !suites.is_empty() {
            provider.cipher_suites = self.cipher_suites(&suites)?;
        }
        if !curves.is_empty() {
            provider.kx_groups = self.curves(&curves)?;
        }
        let provider = Arc::new(provider);

        let verifier: Arc<dyn ClientCertVerifier> = {
            let ca = self.pem_source(&join(P, "client_ca_file"), ca_file, &join(P, "client_ca"), ca_inline)?;
            let roots = match ca {
                Some((field, src, pem)) => {
                    let mut roots = RootCertStore::empty();
                    for c in CertificateDer::pem_slice_iter(&pem) {
                        let c = c.map_err(|e| self.bad_pem(&field, &src, format!("not a PEM certificate: {e}")))?;
                        roots
                            .add(c)
                            .map_err(|e| self.bad_pem(&field, &src, format!("not a usable CA certificate: {e}")))?;
                    }
                    if roots.is_empty() {
                        return Err(self.bad_pem(&field, &src, "no CA certificate found"));
                    }
                    Some((field, Arc::new(roots)))
                }
                None => None,
            };
            let base: Arc<dyn ClientCertVerifier> = match (client_auth, roots) {
                (ClientAuthType::NoClientCert, _) => WebPkiClientVerifier::no_client_auth(),
                (ClientAuthType::RequestClientCert, _) => {
                    Arc::new(AnyClientCert { mandatory: false, provider: provider.clone() })
                }
                (ClientAuthType::RequireAnyClientCert, _) => {
                    Arc::new(AnyClientCert { mandatory: true, provider: provider.clone() })
                }
                (mode, Some((field, roots))) => {
                    let b = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
                    let b = if mode == ClientAuthType::VerifyClientCertIfGiven { b.allow_unauthenticated() } else { b };
                    b.build().map_err(|e| self.invalid(&field, format!("cannot build the client verifier: {e}")))?
                }
                (_, None) => {
                    return Err(
                        self.invalid(&join(P, "client_ca_file"), "missing: the verifying modes need a client CA")
                    )
                }
            };
            if allowed_sans.is_empty() {
                base
            } else {
                Arc::new(SanVerifier { inner: base, allowed: allowed_sans })
            }
        };

        let versions: Vec<&'static rustls::SupportedProtocolVersion> =
            [(TlsVersion::Tls12, &rustls::version::TLS12), (TlsVersion::Tls13, &rustls::version::TLS13)]
                .into_iter()
                .filter(|(v, _)| (min_version..=max_version).contains(v))
                .map(|(_, p)| p)
                .collect();
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)
            .map_err(|e| {
                self.invalid(&join(P, "cipher_suites"), format!("no usable cipher suite for the TLS versions: {e}"))
            })?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| {
                self.bad_pem(&key_field, &key_src, format!("does not match the certificate or is unusable: {e}"))
            })?;
        config.ignore_client_order = prefer_server.unwrap_or(true);
        // As exporter-toolkit: HTTP/2 only over TLS, and only when enabled.
        config.alpn_protocols =
            if http2 { vec![b"h2".to_vec(), b"http/1.1".to_vec()] } else { vec![b"http/1.1".to_vec()] };
        Ok(Some(TlsSettings { server_config: Arc::new(config), client_auth, min_version, max_version }))
    }

    /// Go's cipher-suite names (`tls.CipherSuiteName`, the IANA names
    /// rustls also uses) → the ring provider's suites, in the given order; the TLS 1.3 suites are always kept (Go does not let them be
    /// configured either).
    pub(super) fn cipher_suites(&self, names: &[String]) -> Result<Vec<SupportedCipherSuite>, WebConfigError> {
        let all = rustls::crypto::ring::ALL_CIPHER_SUITES;
        let mut out: Vec<SupportedCipherSuite> =
            all.iter().copied().filter(|s| matches!(s, SupportedCipherSuite::Tls13(_))).collect();
        for (i, name) in names.iter().enumerate() {
            let field = format!("tls_server_config.cipher_suites[{i}]");
            let found = all
                .iter()
                .copied()
                .find(|s| matches!(s, SupportedCipherSuite::Tls12(_)) && format!("{:?}", s.suite()) == *name);
            match found {
                Some(s) => out.push(s),
                None if name.starts_with("TLS_AES_") || name.starts_with("TLS_CHACHA20_") => {
                    return Err(self.unsupported(&field, format!("{name}: TLS 1.3 cipher suites are not configurable")))
                }
                None if name.starts_with("TLS_") => {
                    return Err(self.unsupported(
                        &field,
                        format!(
                            "{name}: not supported; rustls offers TLS_ECDHE_{{ECDSA,RSA}}_WITH_{{AES_128_GCM_SHA256,\
                             AES_256_GCM_SHA384,CHACHA20_POLY1305_SHA256}}"
                        ),
                    ))
                }
                None => return Err(self.invalid(&field, format!("unknown cipher suite {name:?}"))),
            }
        }
        Ok(out)
    }

    pub(super) fn curves(&self, names: &[String]) -> Result<Vec<&'static dyn SupportedKxGroup>, WebConfigError> {
        use rustls::crypto::ring::kx_group;
        names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let field = format!("tls_server_config.curve_preferences[{i}]");
                match name.as_str() {
                    "X25519" => Ok(kx_group::X25519),
                    "CurveP256" => Ok(kx_group::SECP256R1),
                    "CurveP384" => Ok(kx_group::SECP384R1),
                    "CurveP521" => {
                        Err(self.unsupported(&field, "CurveP521 is not supported (X25519, CurveP256, CurveP384 are)"))
                    }
                    other => Err(self
                        .invalid(&field, format!("unknown curve {other:?}, expected X25519, CurveP256 or CurveP384"))),
                }
            })
            .collect()
    }
}

/// Checks a `basic_auth_users` value the way bcrypt will read it.
pub(super) fn check_bcrypt(hash: &str) -> Result<(), String> {
    let parts: bcrypt::HashParts = hash.parse().map_err(|e: bcrypt::BcryptError| {
        format!("not a bcrypt hash ({e}); generate one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`")
    })?;
    let cost = parts.get_cost();
    if !(4..=31).contains(&cost) {
        return Err(format!("bcrypt cost {cost} is outside 4..=31"));
    }
    Ok(())
}

/// Go's `time.ParseDuration` subset that configurations use: a sequence
/// of number+unit pairs (`1m30s`, `250ms`, `1.5h`).
pub(super) fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += n * unit;
    }
    if !total.is_finite() || total > 1e9 {
        return None;
    }
    Some(Duration::from_secs_f64(total))
}
