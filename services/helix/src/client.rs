//! The command line's clients of the services, carrying the caller's token.
//!
//! The token is `HELIX_TOKEN` when set; otherwise, for a service on this machine, the local token
//! `helix up` wrote into its data directory (`auth.local_token = true`), so a user on the same
//! machine needs no flag. The local token is never sent to another machine: it is an admin token
//! of this one.

use std::time::Duration;

use helix_core::auth::{self, Secret};
use helix_core::client::ServiceClient;

/// A client of the service at `url` bounded by `timeout`, with the caller's token.
pub fn client(url: &str, timeout: Duration) -> anyhow::Result<ServiceClient> {
    Ok(ServiceClient::new(url, timeout)?.with_token(token_for(url)))
}

/// The host of an `http(s)://host:port/...` URL.
fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("");
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

/// The token to send to `url` (see the module docs).
pub fn token_for(url: &str) -> Option<Secret> {
    if let Some(t) = std::env::var("HELIX_TOKEN").ok().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty())
    {
        return Some(Secret::new(t));
    }
    if !auth::is_loopback_bind(url_host(url)) {
        return None;
    }
    let data_dir = crate::cli::RunArgs::default()
        .load()
        .map(|l| l.config.data_dir)
        .unwrap_or_else(|_| helix_core::HelixConfig::default().data_dir);
    let text = std::fs::read_to_string(crate::stack::local_token_path(&data_dir)).ok()?;
    let token = text.trim();
    (!token.is_empty()).then(|| Secret::new(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_urls() {
        assert_eq!(url_host("http://127.0.0.1:7700"), "127.0.0.1");
        assert_eq!(url_host("http://localhost:7700/v1/runs"), "localhost");
        assert_eq!(url_host("https://helix.example.com"), "helix.example.com");
        assert_eq!(url_host("http://[::1]:7700/"), "::1");
        assert_eq!(url_host("http://u:p@10.0.0.1:1"), "10.0.0.1");
    }
}
