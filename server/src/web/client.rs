//! Who sent a request: the client IP (one forwarded-for rule for throttling and the audit
//! log) and the user agent, as the [`Client`] extractor.

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};

use super::AppState;
use crate::audit::Origin;
use crate::config::Config;

/// The client IP: the first `X-Forwarded-For` address when the server is configured to
/// trust it (behind a reverse proxy) and it is an IP, else the peer's address.
pub fn client_ip(config: &Config, peer: Option<SocketAddr>, headers: &HeaderMap) -> String {
    if config.trust_forwarded_for
        && let Some(first) = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|s| s.parse::<std::net::IpAddr>().is_ok())
    {
        return first.to_string();
    }
    peer.map(|p| p.ip().to_string()).unwrap_or_else(|| "unknown".into())
}

/// The request's [`Origin`] for the audit log and throttling.
pub struct Client(pub Origin);

impl FromRequestParts<AppState> for Client {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Client, Infallible> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
        let ip = client_ip(&state.config, peer, &parts.headers);
        let agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        Ok(Client(Origin::new(ip, agent)))
    }
}
