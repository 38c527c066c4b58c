//! How a client carries a live server's token (the server's side is `src/serve/access.rs`):
//! `?token=T` in a URL, or `Authorization: Bearer T`. Tokens are URL-safe characters only, so
//! they are never percent-encoded.

/// The `token` parameter of a query string (the part after `?`).
pub fn token_in_query(query: &str) -> Option<&str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .filter(|t| !t.is_empty())
}

/// `url` with `token` added to its query, when there is one.
pub fn with_token(url: &str, token: Option<&str>) -> String {
    match token {
        Some(t) if url.contains('?') => format!("{url}&token={t}"),
        Some(t) => format!("{url}?token={t}"),
        None => url.to_string(),
    }
}

/// A server address as printed (`http://host:port/?token=T`): its base without the query or
/// the trailing `/`, and the token it carries.
pub fn split_server_url(url: &str) -> (String, Option<String>) {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    (
        base.trim_end_matches('/').to_string(),
        token_in_query(query).map(str::to_string),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_go_in_and_come_out_of_urls() {
        assert_eq!(token_in_query("from=3&token=abc"), Some("abc"));
        assert_eq!(token_in_query("token="), None);
        assert_eq!(token_in_query("mytoken=abc"), None);
        assert_eq!(with_token("api/runs", Some("t1")), "api/runs?token=t1");
        assert_eq!(
            with_token("api/x?from=2", Some("t1")),
            "api/x?from=2&token=t1"
        );
        assert_eq!(with_token("api/runs", None), "api/runs");
        assert_eq!(
            split_server_url("http://10.0.0.2:8787/?token=abcd"),
            ("http://10.0.0.2:8787".to_string(), Some("abcd".to_string()))
        );
        assert_eq!(
            split_server_url("http://127.0.0.1:8787"),
            ("http://127.0.0.1:8787".to_string(), None)
        );
    }
}
