//! Who may read the live server: a token (required when the server listens beyond this
//! machine, as a notebook server does), and a Host check against DNS rebinding (a web page of
//! another site that resolves its own name to this server's address would otherwise read it
//! through the visitor's browser).
//!
//! The token travels as `Authorization: Bearer T` (the native dashboard) or as `?token=T` (the
//! URL the server prints; the browser app adds it to each of its requests). It guards every
//! `/api/` route, which is where the runs' data is; the page's own files (the same WASM bundle
//! for everyone, no data of any run) load without it, so that a reload of the printed address
//! works without cookies.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// How the server is reached and guarded (`incubator serve`, `incubator run --serve`).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct AccessArgs {
    /// The token every request must carry (at least 16 of A-Z a-z 0-9 - . _ ~). Default: a
    /// new random one, printed once in the URL, when listening on an address other than
    /// loopback; none on loopback.
    #[arg(long, env = "INCUBATOR_TOKEN", hide_env_values = true, value_parser = parse_token)]
    pub token: Option<String>,
    /// A host name this server is reached by (repeat for several). IP addresses and
    /// `localhost` are always accepted; a request naming any other host is refused.
    #[arg(long = "allow-host", value_name = "NAME")]
    pub allow_hosts: Vec<String>,
    /// Seconds a client may take to send a request's headers (also how long an idle
    /// connection is kept).
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout: u64,
    /// Connections served at once (each open dashboard holds one per run it shows); more
    /// wait until one closes.
    #[arg(long, default_value_t = 256, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=65536))]
    pub max_connections: usize,
}

/// A `--token` that is too short or has characters a URL would have to escape.
#[derive(Debug, thiserror::Error)]
#[error(
    "a token is at least 16 characters of A-Z a-z 0-9 - . _ ~ (leave it out to get a random one)"
)]
pub struct WeakToken;

fn parse_token(s: &str) -> Result<String, WeakToken> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~');
    if s.chars().count() < 16 || !s.chars().all(ok) {
        return Err(WeakToken);
    }
    Ok(s.to_string())
}

/// The checks every request passes.
pub struct Access {
    token: Option<String>,
    allowed_hosts: Vec<String>,
}

impl Access {
    /// The access for a server bound to `bound`: the given token, or a new one when the
    /// address reaches beyond this machine.
    pub fn new(args: &AccessArgs, bound: SocketAddr) -> Access {
        let token = args
            .token
            .clone()
            .or_else(|| (!bound.ip().is_loopback()).then(new_token));
        Access {
            token,
            allowed_hosts: args
                .allow_hosts
                .iter()
                .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
        }
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Whether a request with this Host header may be answered. Browsers always send the
    /// name they resolved: a rebinding page sends its own, never an IP address or localhost.
    pub fn host_allowed(&self, host: Option<&str>) -> bool {
        let Some(host) = host else {
            return true; // HTTP/1.0 clients; no browser sends a request without one
        };
        let name = host_name(host).trim_end_matches('.').to_ascii_lowercase();
        name.parse::<IpAddr>().is_ok()
            || name == "localhost"
            || name.ends_with(".localhost")
            || self.allowed_hosts.contains(&name)
    }

    /// Whether the request carries the token (or none is needed).
    fn authorized(&self, headers: &HeaderMap, query: Option<&str>) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let bearer = headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .filter_map(|v| v.to_str().ok()?.strip_prefix("Bearer "))
            .any(|t| same(t.trim(), token));
        bearer
            || query
                .and_then(incubator_events::access::token_in_query)
                .is_some_and(|t| same(t, token))
    }
}

/// A token of 128 random bits from the operating system's generator, in hex.
fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The host of a Host header: `[::1]:8787` -> `::1`, `name:8787` -> `name`.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Compares in time independent of where the strings differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The middleware: refuses a foreign Host (403) or a missing token (401), before any route.
pub async fn guard(State(access): State<Arc<Access>>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .map(|h| h.to_str().unwrap_or("\u{fffd}").to_string());
    if !access.host_allowed(host.as_deref()) {
        let host = host.unwrap_or_default();
        return (
            StatusCode::FORBIDDEN,
            format!(
                "this server is not {host}: if that is its name, start it with --allow-host {}\n",
                host_name(&host)
            ),
        )
            .into_response();
    }
    let needs_token = req.uri().path().starts_with("/api/");
    if needs_token && !access.authorized(req.headers(), req.uri().query()) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "this server needs its token: open the address it printed when it started (it ends in ?token=...), or send Authorization: Bearer TOKEN\n",
        )
            .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(token: Option<&str>, hosts: &[&str]) -> Access {
        let args = AccessArgs {
            token: token.map(str::to_string),
            allow_hosts: hosts.iter().map(|h| h.to_string()).collect(),
            ..Default::default()
        };
        Access::new(&args, "127.0.0.1:8787".parse().unwrap())
    }

    #[test]
    fn hosts_are_ip_addresses_localhost_or_allowed_names() {
        let a = access(None, &["Dash.Example.org."]);
        for ok in [
            "127.0.0.1:8787",
            "10.1.2.3",
            "[::1]:8787",
            "localhost:8787",
            "LOCALHOST",
            "app.localhost:1",
            "dash.example.org:8787",
        ] {
            assert!(a.host_allowed(Some(ok)), "{ok}");
        }
        for refused in [
            "evil.example.com:8787",
            "127.0.0.1.evil.example.com",
            "localhost.evil.com",
            "example.org",
            "",
        ] {
            assert!(!a.host_allowed(Some(refused)), "{refused}");
        }
        assert!(a.host_allowed(None));
    }

    #[test]
    fn a_token_is_made_beyond_loopback_and_proven_by_header_or_url() {
        let open = Access::new(&AccessArgs::default(), "127.0.0.1:1".parse().unwrap());
        assert_eq!(open.token(), None);
        assert!(open.authorized(&HeaderMap::new(), None));
        let wide = Access::new(&AccessArgs::default(), "0.0.0.0:8787".parse().unwrap());
        let t = wide.token().expect("a token beyond loopback").to_string();
        assert_eq!(t.len(), 32);
        let other = Access::new(&AccessArgs::default(), "0.0.0.0:8787".parse().unwrap());
        assert_ne!(other.token(), Some(t.as_str()), "random per server");

        let mut h = HeaderMap::new();
        assert!(!wide.authorized(&h, None));
        assert!(!wide.authorized(&h, Some("token=wrong")));
        assert!(!wide.authorized(&h, Some(&format!("token={t}x"))));
        assert!(wide.authorized(&h, Some(&format!("from=3&token={t}"))));
        h.insert(
            header::AUTHORIZATION,
            format!("Bearer {t}").parse().unwrap(),
        );
        assert!(wide.authorized(&h, None));
        h.insert(header::AUTHORIZATION, "Bearer nope".parse().unwrap());
        assert!(!wide.authorized(&h, None));
    }

    #[test]
    fn weak_tokens_are_refused() {
        assert!(parse_token("short").is_err());
        assert!(parse_token("sixteen chars!!!").is_err());
        assert!(parse_token("abcdefgh-12345678").is_ok());
    }
}
