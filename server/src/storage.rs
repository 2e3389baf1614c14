//! The rules of object keys and signed URLs, and the local folder of objects.
//!
//! Keys are random ([`new_key`]), never derived from user data; [`valid_key`] is the one
//! check every store applies. [`ObjectFolder`] is `<data_dir>/objects/<key>`: the files
//! behind `object_store::LocalObjectStore` and the signed-URL routes.
//!
//! Signed URLs (the local store's stand-in for S3 pre-signed URLs): [`UrlSigner`] makes
//! `BASE/objects/KEY?method=GET|PUT&exp=UNIX_SECONDS&sig=HEX`, where `sig` is
//! HMAC-SHA256 over `neurovol-object-url-v1\nMETHOD\nKEY\nEXP` with a server secret
//! (configured, or random and persisted under `<data_dir>/secrets/` on first use). The
//! app serves those URLs itself (`web/objects.rs`); the signature is the authorization.

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct ObjectFolder {
    root: PathBuf,
}

/// A fresh random object key (128 bits, hex), with a suffix naming the kind of object.
pub fn new_key(suffix: &str) -> String {
    format!("{}{suffix}", hex::encode(rand::random::<[u8; 16]>()))
}

/// The one object-key rule: short, `[A-Za-z0-9._-]`, no leading dot (so never a path).
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 128
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
        && !key.starts_with('.')
}

impl ObjectFolder {
    pub fn new(root: impl Into<PathBuf>) -> ObjectFolder {
        ObjectFolder { root: root.into() }
    }

    fn path(&self, key: &str) -> io::Result<PathBuf> {
        if valid_key(key) {
            Ok(self.root.join(key))
        } else {
            Err(io::Error::new(io::ErrorKind::InvalidInput, "invalid object key"))
        }
    }

    /// Moves (or copies) a finished file into the store under `key`; returns its size.
    /// The object appears atomically (rename inside the store's folder).
    pub async fn put_file(&self, key: &str, src: &Path) -> io::Result<u64> {
        let dst = self.path(key)?;
        tokio::fs::create_dir_all(&self.root).await?;
        let staging = self
            .root
            .join(format!(".incoming-{}", hex::encode(rand::random::<[u8; 8]>())));
        if tokio::fs::rename(src, &staging).await.is_err() {
            // another file system: copy, then remove the source
            if let Err(e) = tokio::fs::copy(src, &staging).await {
                let _ = tokio::fs::remove_file(&staging).await;
                return Err(e);
            }
            let _ = tokio::fs::remove_file(src).await;
        }
        let size = tokio::fs::metadata(&staging).await?.len();
        if let Err(e) = tokio::fs::rename(&staging, &dst).await {
            let _ = tokio::fs::remove_file(&staging).await;
            return Err(e);
        }
        Ok(size)
    }

    pub async fn get(&self, key: &str) -> io::Result<Vec<u8>> {
        tokio::fs::read(self.path(key)?).await
    }

    /// Deleting a missing object is not an error.
    pub async fn delete(&self, key: &str) -> io::Result<()> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Longest validity of any signed or pre-signed URL, local or S3 (S3 practice); the
/// pipeline asks for exactly this.
pub const MAX_SIGNED_URL_TTL: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Why a signed URL was refused (the text is safe to send back: it holds no URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    Malformed,
    Expired,
    Invalid,
}

impl std::fmt::Display for SignatureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SignatureError::Malformed => "signed URL is malformed",
            SignatureError::Expired => "signed URL has expired",
            SignatureError::Invalid => "signature does not match",
        })
    }
}

/// Issues and checks HMAC-signed, expiring URLs for objects of the local store.
#[derive(Clone)]
pub struct UrlSigner {
    secret: Vec<u8>,
    base_url: String,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlSigner")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl UrlSigner {
    /// `base_url`: where the app is reachable from the worker (no trailing slash needed).
    pub fn new(secret: impl Into<Vec<u8>>, base_url: &str) -> UrlSigner {
        UrlSigner {
            secret: secret.into(),
            base_url: base_url.trim_end_matches('/').to_string(),
        }
    }

    fn mac(&self, method: &str, key: &str, exp: u64) -> hmac::Hmac<sha2::Sha256> {
        use hmac::Mac;
        let mut mac =
            <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        mac.update(format!("neurovol-object-url-v1\n{method}\n{key}\n{exp}").as_bytes());
        mac
    }

    /// A URL allowing `method` ("GET" or "PUT") on `key` until `expires_at` (Unix seconds).
    pub fn sign_until(&self, key: &str, method: &str, expires_at: u64) -> io::Result<String> {
        use hmac::Mac;
        if !valid_key(key) || !matches!(method, "GET" | "PUT") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "invalid object key or method",
            ));
        }
        let sig = hex::encode(self.mac(method, key, expires_at).finalize().into_bytes());
        Ok(format!(
            "{}/objects/{key}?method={method}&exp={expires_at}&sig={sig}",
            self.base_url
        ))
    }

    /// [`UrlSigner::sign_until`] now + `ttl` (capped at [`MAX_SIGNED_URL_TTL`]).
    pub fn sign(&self, key: &str, method: &str, ttl: std::time::Duration) -> io::Result<String> {
        self.sign_until(key, method, unix_now() + ttl.min(MAX_SIGNED_URL_TTL).as_secs().max(1))
    }

    /// Checks a request's `method`, `exp` and `sig` (constant-time comparison).
    pub fn verify(&self, key: &str, method: &str, exp: Option<&str>, sig: Option<&str>) -> Result<(), SignatureError> {
        use hmac::Mac;
        let (Some(exp), Some(sig)) = (exp, sig) else {
            return Err(SignatureError::Malformed);
        };
        let exp: u64 = exp.parse().map_err(|_| SignatureError::Malformed)?;
        let sig = hex::decode(sig).map_err(|_| SignatureError::Malformed)?;
        if !valid_key(key) || !matches!(method, "GET" | "PUT") {
            return Err(SignatureError::Invalid);
        }
        self.mac(method, key, exp)
            .verify_slice(&sig)
            .map_err(|_| SignatureError::Invalid)?;
        if unix_now() > exp {
            return Err(SignatureError::Expired);
        }
        Ok(())
    }
}

/// The URL-signing secret: `configured` if given, else `<data_dir>/secrets/object-url.key`,
/// created with 256 random bits (mode 0600) on first use. Creation is atomic (hard link of
/// a finished temp file), so processes sharing a data dir agree on one secret.
pub fn load_or_create_secret(configured: Option<&str>, data_dir: &Path) -> io::Result<Vec<u8>> {
    if let Some(s) = configured.filter(|s| !s.is_empty()) {
        if s.len() < 32 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the object URL key must have at least 32 characters",
            ));
        }
        return Ok(s.as_bytes().to_vec());
    }
    let dir = data_dir.join("secrets");
    let path = dir.join("object-url.key");
    let read = |p: &Path| -> io::Result<Vec<u8>> {
        let text = std::fs::read_to_string(p)?;
        let key = hex::decode(text.trim())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "corrupt object URL key file"))?;
        if key.len() < 16 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "object URL key file too short",
            ));
        }
        Ok(key)
    };
    match read(&path) {
        Ok(k) => return Ok(k),
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    std::fs::create_dir_all(&dir)?;
    let tmp = dir.join(format!(".object-url.key.{}", hex::encode(rand::random::<[u8; 8]>())));
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp)?;
        f.write_all(hex::encode(rand::random::<[u8; 32]>()).as_bytes())?;
        f.sync_all()?;
    }
    let linked = std::fs::hard_link(&tmp, &path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    read(&path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_urls_verify_and_expire() {
        let s = UrlSigner::new(b"0123456789abcdef0123456789abcdef".to_vec(), "http://127.0.0.1:3000/");
        let url = s.sign("abc.nii.gz", "GET", std::time::Duration::from_secs(60)).unwrap();
        assert!(
            url.starts_with("http://127.0.0.1:3000/objects/abc.nii.gz?method=GET&exp="),
            "{url}"
        );
        let q: std::collections::HashMap<String, String> =
            form_urlencoded::parse(url.split_once('?').unwrap().1.as_bytes())
                .into_owned()
                .collect();
        let (exp, sig) = (q.get("exp").map(String::as_str), q.get("sig").map(String::as_str));
        assert_eq!(s.verify("abc.nii.gz", "GET", exp, sig), Ok(()));
        assert_eq!(s.verify("abc.nii.gz", "PUT", exp, sig), Err(SignatureError::Invalid));
        assert_eq!(s.verify("abd.nii.gz", "GET", exp, sig), Err(SignatureError::Invalid));
        let later = (unix_now() + 3600).to_string();
        assert_eq!(
            s.verify("abc.nii.gz", "GET", Some(&later), sig),
            Err(SignatureError::Invalid)
        );
        assert_eq!(s.verify("abc.nii.gz", "GET", exp, None), Err(SignatureError::Malformed));
        assert_eq!(
            s.verify("abc.nii.gz", "GET", exp, Some("zz")),
            Err(SignatureError::Malformed)
        );
        let other = UrlSigner::new(b"another secret, also 32 bytes long!".to_vec(), "http://x");
        assert_eq!(
            other.verify("abc.nii.gz", "GET", exp, sig),
            Err(SignatureError::Invalid)
        );
        let old = s.sign_until("abc.nii.gz", "GET", unix_now() - 1).unwrap();
        let q: std::collections::HashMap<String, String> =
            form_urlencoded::parse(old.split_once('?').unwrap().1.as_bytes())
                .into_owned()
                .collect();
        assert_eq!(
            s.verify(
                "abc.nii.gz",
                "GET",
                q.get("exp").map(String::as_str),
                q.get("sig").map(String::as_str)
            ),
            Err(SignatureError::Expired)
        );
        assert!(s.sign("../x", "GET", std::time::Duration::from_secs(1)).is_err());
        assert!(s.sign("x", "DELETE", std::time::Duration::from_secs(1)).is_err());
    }

    #[test]
    fn secret_is_created_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("nv-secret-{}", hex::encode(rand::random::<[u8; 6]>())));
        let a = load_or_create_secret(None, &dir).unwrap();
        let b = load_or_create_secret(None, &dir).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("secrets/object-url.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "secret readable by others: {mode:o}");
        }
        assert!(load_or_create_secret(Some("short"), &dir).is_err());
        assert_eq!(
            load_or_create_secret(Some("k".repeat(40).as_str()), &dir).unwrap(),
            b"k".repeat(40)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn keys_are_random_and_safe() {
        let a = new_key(".zip");
        assert_ne!(a, new_key(".zip"));
        assert!(valid_key(&a));
        assert!(!valid_key("../x"));
        assert!(!valid_key("a/b"));
        assert!(!valid_key(""));
    }
}
