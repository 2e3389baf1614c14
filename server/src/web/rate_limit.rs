//! Per-account rate limits on what an attacker with an account would probe: creating
//! uploads and sending chunks. A fixed window per (account, action) in this process's
//! memory; beyond the limit the answer is `429` with `Retry-After`. (Sign-in throttling is
//! separate and lives in the database, auth.rs, so that every process shares it.)

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::StatusCode;

use super::api_error::ApiError;
use crate::config::Config;

/// What is limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    CreateUpload,
    PutChunk,
}

/// The limits of one process, from `Config`.
pub struct RateLimits {
    limits: HashMap<Action, (u32, Duration)>,
    windows: Mutex<HashMap<(String, Action), (Instant, u32)>>,
}

impl RateLimits {
    pub fn from_config(config: &Config) -> RateLimits {
        RateLimits {
            limits: HashMap::from([
                (
                    Action::CreateUpload,
                    (config.upload_creates_per_hour, Duration::from_secs(3600)),
                ),
                (
                    Action::PutChunk,
                    (config.upload_chunks_per_minute, Duration::from_secs(60)),
                ),
            ]),
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one `action` of `account`; `Err` (a 429 answer) beyond the limit.
    pub fn check(&self, account: &str, action: Action) -> Result<(), RateLimited> {
        let Some(&(max, window)) = self.limits.get(&action) else {
            return Ok(());
        };
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        // forget finished windows now and then, so the map stays small
        if windows.len() > 10_000 {
            windows.retain(|(_, a), (start, _)| self.limits.get(a).is_some_and(|(_, w)| now - *start < *w));
        }
        let (start, count) = windows.entry((account.to_string(), action)).or_insert((now, 0));
        if now - *start >= window {
            (*start, *count) = (now, 0);
        }
        if *count >= max {
            return Err(RateLimited {
                retry_after: window.saturating_sub(now - *start),
            });
        }
        *count += 1;
        Ok(())
    }
}

/// A refused request: `429 Too Many Requests` with `Retry-After` (seconds, at least 1).
#[derive(Debug)]
pub struct RateLimited {
    pub retry_after: Duration,
}

impl From<RateLimited> for ApiError {
    fn from(r: RateLimited) -> ApiError {
        let secs = r.retry_after.as_secs().max(1);
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("Too many requests. Please wait {secs} seconds and try again."),
        )
        .with_retry_after(secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_allows_its_limit_then_refuses_until_it_ends() {
        let limits = RateLimits {
            limits: HashMap::from([(Action::CreateUpload, (2, Duration::from_millis(200)))]),
            windows: Mutex::new(HashMap::new()),
        };
        assert!(limits.check("a", Action::CreateUpload).is_ok());
        assert!(limits.check("a", Action::CreateUpload).is_ok());
        let refused = limits.check("a", Action::CreateUpload).unwrap_err();
        assert!(refused.retry_after <= Duration::from_millis(200));
        // another account and another action are counted apart
        assert!(limits.check("b", Action::CreateUpload).is_ok());
        assert!(limits.check("a", Action::PutChunk).is_ok());
        std::thread::sleep(Duration::from_millis(210));
        assert!(limits.check("a", Action::CreateUpload).is_ok());
    }
}
