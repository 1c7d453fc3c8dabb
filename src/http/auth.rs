//! Basic authentication against `basic_auth_users` bcrypt hashes, as
//! exporter-toolkit does it: verified credentials are cached (a scrape
//! every 15 s must not cost a bcrypt each time), an unknown user costs the
//! same bcrypt as a known one (no user enumeration by timing), and at most
//! one bcrypt runs at a time. bcrypt runs on the blocking pool, never on
//! the runtime's workers.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::http::{header, HeaderMap};
use base64::Engine as _;
use subtle::{ConditionallySelectable, ConstantTimeEq};
use tokio::sync::Semaphore;

use super::web_config::BasicAuthUser;

/// The `WWW-Authenticate` challenge of a 401.
pub const CHALLENGE: &str = "Basic realm=\"accord\"";

/// Cached outcomes are bounded: successes can only be added by someone who
/// knows a password, failures by anyone, so they are kept apart and a flood
/// of wrong passwords cannot evict the scraper's entry.
const MAX_CACHED_OK: usize = 64;
const MAX_CACHED_FAILED: usize = 1024;

type Digest = [u8; 32];

fn sha256(parts: &[&[u8]]) -> Digest {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        ctx.update(&(p.len() as u64).to_be_bytes());
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

struct User {
    /// SHA-256 of the name: fixed length, so comparing every entry in
    /// constant time does not leak name lengths.
    name_digest: Digest,
    hash: String,
}

/// The credential checker; shared by every connection.
pub struct BasicAuth {
    users: Vec<User>,
    /// Keyed by a digest of (user, password): plain passwords are not kept.
    ok: Mutex<HashSet<Digest>>,
    failed: Mutex<HashSet<Digest>>,
    bcrypt: Semaphore,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth").field("users", &self.users.len()).finish()
    }
}

impl BasicAuth {
    /// `None` when no users are configured (authentication off).
    pub fn new(users: &[BasicAuthUser]) -> Option<Arc<BasicAuth>> {
        if users.is_empty() {
            return None;
        }
        Some(Arc::new(BasicAuth {
            users: users
                .iter()
                .map(|u| User { name_digest: sha256(&[u.name.as_bytes()]), hash: u.hash.clone() })
                .collect(),
            ok: Mutex::new(HashSet::new()),
            failed: Mutex::new(HashSet::new()),
            // exporter-toolkit serialises bcrypt too: it is CPU-bound.
            bcrypt: Semaphore::new(1),
        }))
    }

    /// Whether the request's `Authorization: Basic` credentials are valid.
    pub async fn check(&self, headers: &HeaderMap) -> bool {
        match parse_basic(headers) {
            Some((user, pass)) => self.verify(&user, &pass).await,
            None => false,
        }
    }

    /// Checks `user`/`pass`, from the cache when it has the answer.
    pub async fn verify(&self, user: &[u8], pass: &[u8]) -> bool {
        let key = sha256(&[user, pass]);
        if let Some(v) = self.cached(&key) {
            return v;
        }
        let Ok(_permit) = self.bcrypt.acquire().await else { return false };
        // Another request may have verified the same credentials meanwhile.
        if let Some(v) = self.cached(&key) {
            return v;
        }
        // Every configured name is compared, in constant time, so the time
        // taken does not tell which names exist.
        let name = sha256(&[user]);
        let mut index = 0u32;
        let mut found = subtle::Choice::from(0);
        for (i, u) in self.users.iter().enumerate() {
            let eq = u.name_digest.ct_eq(&name);
            index = u32::conditional_select(&index, &(i as u32), eq);
            found |= eq;
        }
        let found: bool = found.into();
        // An unknown user is checked against a real hash anyway: same cost.
        let hash = self.users[index as usize].hash.clone();
        // A copy for the blocking task, wiped when dropped.
        let pass = zeroize::Zeroizing::new(pass.to_vec());
        let matched = tokio::task::spawn_blocking(move || bcrypt::verify(&pass[..], &hash).unwrap_or(false))
            .await
            .unwrap_or(false);
        let ok = found && matched;
        let (cache, max) = if ok { (&self.ok, MAX_CACHED_OK) } else { (&self.failed, MAX_CACHED_FAILED) };
        let mut set = cache.lock().unwrap_or_else(|p| p.into_inner());
        if set.len() >= max {
            // Rare (a bounded set of real credentials; or an attack, which
            // pays a bcrypt per entry): start afresh rather than track age.
            set.clear();
        }
        set.insert(key);
        ok
    }

    fn cached(&self, key: &Digest) -> Option<bool> {
        if self.ok.lock().unwrap_or_else(|p| p.into_inner()).contains(key) {
            return Some(true);
        }
        if self.failed.lock().unwrap_or_else(|p| p.into_inner()).contains(key) {
            return Some(false);
        }
        None
    }

    /// How many credential outcomes are cached (successes, failures).
    pub fn cached_len(&self) -> (usize, usize) {
        (
            self.ok.lock().unwrap_or_else(|p| p.into_inner()).len(),
            self.failed.lock().unwrap_or_else(|p| p.into_inner()).len(),
        )
    }
}

/// `Authorization: Basic base64(user:password)`, as Go's
/// `Request.BasicAuth` reads it (scheme case-insensitive, split at the
/// first colon).
pub fn parse_basic(headers: &HeaderMap) -> Option<(Vec<u8>, Vec<u8>)> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    if value.len() < 6 || !value[..6].eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(value[6..].trim_ascii()).ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some((decoded[..colon].to_vec(), decoded[colon + 1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn auth_header(user: &str, pass: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Basic {v}")).unwrap());
        h
    }

    #[test]
    fn parses_basic_credentials_like_go() {
        let (u, p) = parse_basic(&auth_header("alice", "pa:ss")).unwrap();
        assert_eq!((u.as_slice(), p.as_slice()), (&b"alice"[..], &b"pa:ss"[..]));
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("bAsIc YTpi"));
        assert_eq!(parse_basic(&h), Some((b"a".to_vec(), b"b".to_vec())));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer YTpi"));
        assert_eq!(parse_basic(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert_eq!(parse_basic(&h), None);
        // No colon: not credentials.
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic YWJj"));
        assert_eq!(parse_basic(&h), None);
        assert_eq!(parse_basic(&HeaderMap::new()), None);
    }

    #[tokio::test]
    async fn verifies_users_and_caches_outcomes() {
        let users = vec![
            BasicAuthUser { name: "alice".into(), hash: bcrypt::hash("wonderland", 4).unwrap() },
            BasicAuthUser { name: "bob".into(), hash: bcrypt::hash("builder", 4).unwrap() },
        ];
        let auth = BasicAuth::new(&users).unwrap();
        assert!(auth.check(&auth_header("alice", "wonderland")).await);
        assert!(auth.check(&auth_header("bob", "builder")).await);
        assert!(!auth.check(&auth_header("alice", "builder")).await);
        assert!(!auth.check(&auth_header("carol", "wonderland")).await);
        assert!(!auth.check(&HeaderMap::new()).await);
        assert_eq!(auth.cached_len(), (2, 2));
        // Cached: the same answers again, and no new entries.
        assert!(auth.check(&auth_header("alice", "wonderland")).await);
        assert!(!auth.check(&auth_header("carol", "wonderland")).await);
        assert_eq!(auth.cached_len(), (2, 2));
        assert!(BasicAuth::new(&[]).is_none());
    }

    #[tokio::test]
    async fn failure_cache_is_bounded() {
        let users = vec![BasicAuthUser { name: "a".into(), hash: bcrypt::hash("p", 4).unwrap() }];
        let auth = BasicAuth::new(&users).unwrap();
        for i in 0..(MAX_CACHED_FAILED + 10) {
            assert!(!auth.verify(b"a", format!("wrong{i}").as_bytes()).await);
            assert!(auth.cached_len().1 <= MAX_CACHED_FAILED);
        }
        assert!(auth.cached_len().1 < MAX_CACHED_FAILED, "cleared when full");
        assert!(auth.verify(b"a", b"p").await);
        assert_eq!(auth.cached_len().0, 1);
    }
}
