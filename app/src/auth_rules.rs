//! Account rules shared by the browser (live feedback while typing) and the server (the
//! authoritative check). One copy, so the two can never disagree.

use serde::{Deserialize, Serialize};

pub const PASSWORD_MIN_CHARS: usize = 12;
/// bcrypt silently ignores bytes after the 72nd; refuse longer passwords instead of
/// pretending they are stronger than they are.
pub const PASSWORD_MAX_BYTES: usize = 72;
pub const EMAIL_MAX_BYTES: usize = 254;

/// A few of the most common long passwords; long, unique passphrases are the goal.
const COMMON_PASSWORDS: &[&str] = &[
    "123456789012",
    "1234567890123",
    "password1234",
    "password12345",
    "passwordpassword",
    "qwertyuiopasdf",
    "qwertyuiop123",
    "iloveyou1234",
    "letmein12345",
    "welcome12345",
    "administrator",
    "neurovol1234",
    "changeme1234",
    "abcdefghijkl",
    "111111111111",
    "000000000000",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PasswordRule {
    MinLength,
    MaxLength,
    NotEmail,
    NotCommon,
    NotRepeated,
}

impl PasswordRule {
    pub const ALL: [PasswordRule; 5] = [
        Self::MinLength,
        Self::MaxLength,
        Self::NotEmail,
        Self::NotCommon,
        Self::NotRepeated,
    ];

    /// Shown next to the field, and as the error when the rule fails.
    pub fn describe(self) -> &'static str {
        match self {
            Self::MinLength => "At least 12 characters",
            Self::MaxLength => "At most 72 bytes (about 72 letters)",
            Self::NotEmail => "Does not contain your email name",
            Self::NotCommon => "Not a commonly used password",
            Self::NotRepeated => "Not one character repeated",
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Self::MinLength => "password_short",
            Self::MaxLength => "password_long",
            Self::NotEmail => "password_email",
            Self::NotCommon => "password_common",
            Self::NotRepeated => "password_repeated",
        }
    }

    pub fn satisfied(self, password: &str, email: &str) -> bool {
        match self {
            Self::MinLength => password.chars().count() >= PASSWORD_MIN_CHARS,
            Self::MaxLength => password.len() <= PASSWORD_MAX_BYTES,
            Self::NotEmail => {
                let local = email.split('@').next().unwrap_or("").trim().to_lowercase();
                local.chars().count() < 3 || !password.to_lowercase().contains(&local)
            }
            Self::NotCommon => {
                let lower = password.to_lowercase();
                !COMMON_PASSWORDS.contains(&lower.as_str())
            }
            Self::NotRepeated => {
                let mut chars = password.chars();
                match chars.next() {
                    Some(first) => chars.any(|c| c != first),
                    None => true,
                }
            }
        }
    }
}

/// Every rule the password breaks, in display order.
pub fn password_problems(password: &str, email: &str) -> Vec<PasswordRule> {
    PasswordRule::ALL
        .into_iter()
        .filter(|r| !r.satisfied(password, email))
        .collect()
}

/// Trimmed, lower-cased email, or `None` when it cannot be an address.
pub fn normalize_email(raw: &str) -> Option<String> {
    let email = raw.trim().to_lowercase();
    let (local, domain) = email.split_once('@')?;
    let ok = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && email.len() <= EMAIL_MAX_BYTES
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then_some(email)
}

/// Outcomes of the account forms, carried in the redirect as a code (never as user data)
/// and turned into a sentence by the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthNotice {
    InvalidCredentials,
    Throttled,
    EmailInvalid,
    EmailUnavailable,
    PasswordMismatch,
    Password(PasswordRule),
    SignedOut,
    SessionExpired,
    /// The account page asked for the password again and it was wrong.
    PasswordWrong,
    PasswordChanged,
    GoogleLinked,
    GoogleUnlinked,
    /// Unlink or Google re-authentication asked of an account without Google sign-in.
    GoogleNotLinked,
    GoogleAlreadyLinked,
}

impl AuthNotice {
    pub fn code(self) -> &'static str {
        match self {
            Self::InvalidCredentials => "invalid",
            Self::Throttled => "throttled",
            Self::EmailInvalid => "email_invalid",
            Self::EmailUnavailable => "email_unavailable",
            Self::PasswordMismatch => "password_mismatch",
            Self::Password(rule) => rule.code(),
            Self::SignedOut => "signed_out",
            Self::SessionExpired => "session_expired",
            Self::PasswordWrong => "password_wrong",
            Self::PasswordChanged => "password_changed",
            Self::GoogleLinked => "google_linked",
            Self::GoogleUnlinked => "google_unlinked",
            Self::GoogleNotLinked => "google_not_linked",
            Self::GoogleAlreadyLinked => "google_already_linked",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        let fixed = [
            Self::InvalidCredentials,
            Self::Throttled,
            Self::EmailInvalid,
            Self::EmailUnavailable,
            Self::PasswordMismatch,
            Self::SignedOut,
            Self::SessionExpired,
            Self::PasswordWrong,
            Self::PasswordChanged,
            Self::GoogleLinked,
            Self::GoogleUnlinked,
            Self::GoogleNotLinked,
            Self::GoogleAlreadyLinked,
        ];
        fixed
            .into_iter()
            .chain(PasswordRule::ALL.into_iter().map(Self::Password))
            .find(|n| n.code() == code)
    }

    pub fn message(self) -> String {
        match self {
            // One sentence for unknown email and wrong password: no account enumeration.
            Self::InvalidCredentials => "The email or password is not correct.".into(),
            Self::Throttled => {
                "Too many sign-in attempts. For your security, sign-in is paused for 15 minutes; please try again later."
                    .into()
            }
            Self::EmailInvalid => "Please enter a valid email address, like name@example.org.".into(),
            Self::EmailUnavailable => {
                "An account cannot be created with this email. If you already have an account, log in instead.".into()
            }
            Self::PasswordMismatch => "The two passwords do not match.".into(),
            Self::Password(rule) => format!("Password rule not met: {}.", rule.describe().to_lowercase()),
            Self::SignedOut => "You have been logged out.".into(),
            Self::SessionExpired => "Your page expired; please try again.".into(),
            Self::PasswordWrong => "The password is not correct; nothing was changed.".into(),
            Self::PasswordChanged => "Your password was changed; every other session was signed out.".into(),
            Self::GoogleLinked => "Google sign-in is linked: you can now sign in with Google or your password.".into(),
            Self::GoogleUnlinked => "Google sign-in is unlinked; sign in with your password.".into(),
            Self::GoogleNotLinked => "Your account has no Google sign-in; nothing was changed.".into(),
            Self::GoogleAlreadyLinked => "Your account already has a Google sign-in; nothing was changed.".into(),
        }
    }

    pub fn is_error(self) -> bool {
        !matches!(
            self,
            Self::SignedOut | Self::PasswordChanged | Self::GoogleLinked | Self::GoogleUnlinked
        )
    }
}

/// Where to go after signing in: a path on this site only (`/…`, never `//host` or a URL),
/// short and of plain characters, so it can neither leave the site nor need escaping.
pub fn safe_next(next: &str) -> Option<&str> {
    let local = next.starts_with('/') && !next.starts_with("//") && next.len() <= 256;
    let plain = next.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b));
    (local && plain).then_some(next)
}

/// The sign-in page that sends the person on to `path` afterwards (if it is a safe next).
pub fn login_url_with_next(path: &str) -> String {
    match safe_next(path) {
        Some(p) => format!("/login?next={p}"),
        None => "/login".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_rules() {
        assert_eq!(password_problems("short", "a@b.co"), vec![PasswordRule::MinLength]);
        assert!(password_problems("correct horse battery", "a@b.co").is_empty());
        assert_eq!(
            password_problems("aliceInWonderland!", "alice@x.org"),
            vec![PasswordRule::NotEmail]
        );
        assert_eq!(
            password_problems("Password1234", "z@x.org"),
            vec![PasswordRule::NotCommon]
        );
        assert!(password_problems("aaaaaaaaaaaaaaaa", "z@x.org").contains(&PasswordRule::NotRepeated));
        let long = "éb".repeat(25); // 75 bytes, 50 chars
        assert_eq!(password_problems(&long, "z@x.org"), vec![PasswordRule::MaxLength]);
    }

    #[test]
    fn emails() {
        assert_eq!(normalize_email("  Ann@Example.ORG "), Some("ann@example.org".into()));
        for bad in [
            "",
            "ann",
            "ann@",
            "@x.org",
            "ann@x",
            "a b@x.org",
            "a@x.org@y.org",
            "ann@.org",
        ] {
            assert_eq!(normalize_email(bad), None, "{bad}");
        }
    }

    #[test]
    fn notice_codes_round_trip() {
        for rule in PasswordRule::ALL {
            let n = AuthNotice::Password(rule);
            assert_eq!(AuthNotice::from_code(n.code()), Some(n));
        }
        assert_eq!(AuthNotice::from_code("invalid"), Some(AuthNotice::InvalidCredentials));
        assert_eq!(AuthNotice::from_code("<script>"), None);
    }

    #[test]
    fn next_accepts_only_local_paths() {
        assert_eq!(safe_next("/scans/0123abcd"), Some("/scans/0123abcd"));
        assert_eq!(safe_next("/home"), Some("/home"));
        for bad in [
            "//evil.example/x",
            "https://evil.example/",
            "/\\evil.example",
            "home",
            "",
            "/a?b=c",
            "/%2F%2Fevil",
        ] {
            assert_eq!(safe_next(bad), None, "{bad}");
        }
        assert_eq!(login_url_with_next("/upload"), "/login?next=/upload");
        assert_eq!(login_url_with_next("//x"), "/login");
    }
}
