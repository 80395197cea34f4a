//! HTTP basic authentication against bcrypt hashes, as exporter-toolkit's `basic_auth_users`.
//!
//! bcrypt is slow on purpose (about 50 ms at cost 10), so a successful check is cached: per user,
//! the SHA-256 of (hash, password) that last passed, compared in constant time. A scrape with the
//! right password then costs one SHA-256. Failed checks are never cached, and run off the async
//! workers, a few at a time, so wrong passwords cannot starve /metrics.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hyper::header::HeaderValue;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

/// bcrypt checks that may run at once; more wait.
const CONCURRENT_BCRYPT: usize = 2;

#[derive(Debug)]
pub struct BasicAuth {
    users: HashMap<String, String>,
    verified: Mutex<HashMap<String, [u8; 32]>>,
    bcrypt_slots: Arc<Semaphore>,
}

fn cache_key(hash: &str, password: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((hash.len() as u64).to_le_bytes());
    h.update(hash.as_bytes());
    h.update(password);
    h.finalize().into()
}

/// A hash to check unknown users against, so a wrong user name takes as long as a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        bcrypt::hash_with_salt(b"unknown user", 10, [7; 16])
            .map(|h| h.format_for_version(bcrypt::Version::TwoY))
            .unwrap_or_default()
    })
}

/// `(user, password)` from an `Authorization: Basic ...` header.
fn parse_basic(header: &HeaderValue) -> Option<(String, Vec<u8>)> {
    let value = header.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

impl BasicAuth {
    /// Validates every hash; an error names the user and the reason.
    pub fn new(users: &BTreeMap<String, String>) -> Result<Self, (String, String)> {
        for (user, hash) in users {
            if user.contains(':') {
                return Err((user.clone(), "a user name cannot contain `:`".into()));
            }
            hash.parse::<bcrypt::HashParts>()
                .map_err(|e| (user.clone(), format!("not a bcrypt hash: {e}")))?;
        }
        Ok(Self {
            users: users.clone().into_iter().collect(),
            verified: Mutex::new(HashMap::new()),
            bcrypt_slots: Arc::new(Semaphore::new(CONCURRENT_BCRYPT)),
        })
    }

    /// Whether the request's `Authorization` header carries a known user and its password.
    pub async fn check(&self, header: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = header.and_then(parse_basic) else {
            return false;
        };
        let (hash, known) = match self.users.get(&user) {
            Some(h) => (h.clone(), true),
            None => (dummy_hash().to_owned(), false),
        };
        let key = cache_key(&hash, &password);
        if known {
            let verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(good) = verified.get(&user) {
                if bool::from(good.ct_eq(&key)) {
                    return true;
                }
            }
        }
        let Ok(_slot) = self.bcrypt_slots.acquire().await else {
            return false;
        };
        let ok =
            tokio::task::spawn_blocking(move || bcrypt::verify(&password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        if ok && known {
            self.verified
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(user, key);
        }
        ok && known
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_basic_scheme_only() {
        let h = HeaderValue::from_static("Basic dTpwdw==");
        assert_eq!(parse_basic(&h), Some(("u".into(), b"pw".to_vec())));
        assert_eq!(
            parse_basic(&HeaderValue::from_static("Bearer dTpwdw==")),
            None
        );
        assert_eq!(
            parse_basic(&HeaderValue::from_static("Basic bm9jb2xvbg==")),
            None
        );
    }

    #[tokio::test]
    async fn checks_passwords_and_caches_only_successes() {
        let hash = bcrypt::hash_with_salt(b"secret", 4, [1; 16])
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY);
        let users = BTreeMap::from([("alice".to_owned(), hash)]);
        let auth = BasicAuth::new(&users).unwrap();
        let header = |user: &str, pw: &str| {
            let raw = format!("{user}:{pw}");
            let enc = STANDARD.encode(raw.as_bytes());
            HeaderValue::from_str(&format!("Basic {enc}")).unwrap()
        };
        assert!(!auth.check(None).await);
        assert!(!auth.check(Some(&header("alice", "wrong"))).await);
        assert!(auth.verified.lock().unwrap().is_empty());
        assert!(auth.check(Some(&header("alice", "secret"))).await);
        assert_eq!(auth.verified.lock().unwrap().len(), 1);
        assert!(auth.check(Some(&header("alice", "secret"))).await);
        assert!(!auth.check(Some(&header("alice", "secret2"))).await);
        assert!(!auth.check(Some(&header("bob", "secret"))).await);
    }

    #[test]
    fn refuses_what_is_not_a_bcrypt_hash() {
        let users = BTreeMap::from([("alice".to_owned(), "plaintext".to_owned())]);
        let (user, reason) = BasicAuth::new(&users).unwrap_err();
        assert_eq!(user, "alice");
        assert!(reason.contains("bcrypt"), "{reason}");
    }
}
