//! CSRF tokens bound to the session (OWASP's signed double-submit cookie), and the site
//! key's other signatures (`sign_for`: the slice viewer's short-lived URLs).
//!
//! `token = RANDOM "." HEX(HMAC-SHA256(key, "neurovol-csrf-v1\n" BINDING "\n" RANDOM))`,
//! where BINDING is the session's id (the SHA-256 of its cookie, as `sessions` stores it),
//! or empty for a visitor. The token travels in the `nv_csrf` cookie and the page echoes it;
//! `security.rs` accepts a state-changing request only when the echo equals the cookie AND
//! the token verifies for the request's own session. So a token planted from elsewhere (a
//! sibling domain's cookie, another account's token) is worthless, and a token dies with
//! its session. The key is derived from the server's URL-signing secret (configured, or
//! persisted in the data dir), so every process of one deployment agrees on it.

use std::sync::Arc;

use hmac::Mac;

use crate::config::Config;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

#[derive(Clone)]
pub struct CsrfKey(Arc<[u8; 32]>);

impl std::fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfKey(..)")
    }
}

/// What a token is bound to: a session's id, or nothing (a visitor).
pub fn binding(session_cookie: Option<&str>) -> String {
    session_cookie
        .map(|token| crate::auth::sha256_hex(token.as_bytes()))
        .unwrap_or_default()
}

impl CsrfKey {
    pub fn new(secret: &[u8]) -> CsrfKey {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
        mac.update(b"neurovol-csrf-key-v1");
        CsrfKey(Arc::new(mac.finalize().into_bytes().into()))
    }

    /// The deployment's key (see the module comment).
    pub fn from_config(config: &Config) -> std::io::Result<CsrfKey> {
        let secret = crate::storage::load_or_create_secret(
            config.object_url_key.as_ref().map(|k| k.expose()),
            &config.data_dir,
        )?;
        Ok(CsrfKey::new(&secret))
    }

    /// `HMAC(key, "neurovol-" PURPOSE "-v1\n" MESSAGE)`: the purpose keeps the key's uses
    /// (CSRF tokens, the viewer's URLs) from standing in for each other.
    fn mac_for(&self, purpose: &str, message: &str) -> HmacSha256 {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&*self.0).expect("HMAC takes keys of any length");
        mac.update(format!("neurovol-{purpose}-v1\n{message}").as_bytes());
        mac
    }

    fn mac(&self, binding: &str, random: &str) -> HmacSha256 {
        self.mac_for("csrf", &format!("{binding}\n{random}"))
    }

    /// A signature (hex) of `message` for `purpose` (not "csrf").
    pub fn sign_for(&self, purpose: &str, message: &str) -> String {
        hex::encode(self.mac_for(purpose, message).finalize().into_bytes())
    }

    /// Whether `sig` is [`CsrfKey::sign_for`]'s signature of `message` (constant-time).
    pub fn verify_for(&self, purpose: &str, message: &str, sig: &str) -> bool {
        hex::decode(sig).is_ok_and(|sig| self.mac_for(purpose, message).verify_slice(&sig).is_ok())
    }

    /// A fresh token for `binding`.
    pub fn mint(&self, binding: &str) -> String {
        let random = hex::encode(rand::random::<[u8; 16]>());
        let sig = hex::encode(self.mac(binding, &random).finalize().into_bytes());
        format!("{random}.{sig}")
    }

    /// Whether `token` was minted by this key for `binding` (constant-time).
    pub fn verify(&self, token: &str, binding: &str) -> bool {
        let Some((random, sig)) = token.split_once('.') else {
            return false;
        };
        if random.len() != 32 || !random.bytes().all(|b| b.is_ascii_hexdigit()) {
            return false;
        }
        let Ok(sig) = hex::decode(sig) else { return false };
        self.mac(binding, random).verify_slice(&sig).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_bound_to_their_session() {
        let key = CsrfKey::new(b"a server secret of some length....");
        let a = binding(Some("session-a"));
        let b = binding(Some("session-b"));
        let t = key.mint(&a);
        assert!(key.verify(&t, &a));
        assert!(!key.verify(&t, &b), "another session's token");
        assert!(!key.verify(&t, ""), "a visitor's binding");
        assert!(!CsrfKey::new(b"another secret").verify(&t, &a), "another key");
        let (random, sig) = t.split_once('.').unwrap();
        let mut flipped = sig.as_bytes().to_vec();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        assert!(!key.verify(&format!("{random}.{}", String::from_utf8(flipped).unwrap()), &a));
        assert!(!key.verify(random, &a));
        assert!(!key.verify("", &a));
        let visitor = key.mint("");
        assert!(key.verify(&visitor, ""));
        assert_ne!(key.mint(&a), t, "a fresh random value each time");
    }
}
