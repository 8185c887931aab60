//! Who may scrape `/metrics` when it is served securely: the rules, without the API calls.
//!
//! As kube-rbac-proxy and controller-runtime's secure metrics (MetalLB 0.16) decide it: the
//! bearer token is authenticated by a TokenReview, then the user it names must be allowed the
//! request's verb on the non-resource URL that is its path (a ClusterRole with
//! `nonResourceURLs: [/metrics]`, `verbs: [get]`). No token: 401; a token the API server does
//! not accept: 401; a user not allowed: 403.
//!
//! Only `/metrics` is guarded. Every other path (health and readiness probes today, whatever
//! probe is added later) stays open, because the kubelet probes without a token.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The one path that needs a token.
pub const GUARDED: &str = "/metrics";

/// True for requests that must carry an allowed token.
pub fn guarded(path: &str) -> bool {
    path == GUARDED
}

/// What to answer a scraper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// 401: no token, or a token the API server does not accept.
    Unauthenticated(String),
    /// 403: a known user not allowed to get the path.
    Forbidden(String),
}

impl Decision {
    pub fn status(&self) -> u16 {
        match self {
            Decision::Allow => 200,
            Decision::Unauthenticated(_) => 401,
            Decision::Forbidden(_) => 403,
        }
    }
}

/// The token of an `Authorization: Bearer …` header (the scheme case-insensitive, as RFC 6750).
pub fn bearer(header: Option<&str>) -> Result<&str, Decision> {
    let none = || Decision::Unauthenticated("no bearer token".into());
    let value = header.ok_or_else(none)?.trim();
    let (scheme, token) = value.split_once(' ').ok_or_else(none)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(none());
    }
    Ok(token)
}

/// An allowed scraper is asked again after a minute: Prometheus scrapes every 15-30 s, so a
/// scrape costs no API call most of the time, while a revoked ClusterRoleBinding or a deleted
/// ServiceAccount stops scraping within a minute (the same order as the API server's own
/// webhook-authorizer cache).
pub const ALLOW_TTL: Duration = Duration::from_secs(60);
/// A refusal is remembered more briefly, so a binding just created works within seconds, yet a
/// misconfigured scraper retrying in a loop costs at most two API calls every 10 s.
pub const DENY_TTL: Duration = Duration::from_secs(10);
/// Enough for every scraper a cluster has; a flood of made-up tokens cannot grow it further.
pub const MAX_ENTRIES: usize = 1024;

/// Decisions by (token digest, verb, path). Only a digest of the token is kept in memory.
#[derive(Debug, Default)]
pub struct DecisionCache {
    entries: HashMap<[u8; 32], (Decision, Instant)>,
}

fn key(token: &str, verb: &str, path: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [token, verb, path] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

impl DecisionCache {
    /// The remembered decision, if it has not expired at `now`.
    pub fn get(&self, token: &str, verb: &str, path: &str, now: Instant) -> Option<Decision> {
        self.entries.get(&key(token, verb, path)).filter(|(_, until)| now < *until).map(|(d, _)| d.clone())
    }

    /// Remembers `decision` for its TTL. A full cache first drops what has expired, then (still
    /// full) everything: correctness never depends on the cache, only the API calls saved.
    pub fn put(&mut self, token: &str, verb: &str, path: &str, decision: Decision, now: Instant) {
        let ttl = if decision == Decision::Allow { ALLOW_TTL } else { DENY_TTL };
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.retain(|_, (_, until)| now < *until);
            if self.entries.len() >= MAX_ENTRIES {
                self.entries.clear();
            }
        }
        self.entries.insert(key(token, verb, path), (decision, now + ttl));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_metrics_is_guarded_so_probes_stay_open() {
        assert!(guarded("/metrics"));
        for open in ["/healthz", "/livez", "/readyz", "/", "/metrics/"] {
            assert!(!guarded(open), "{open}");
        }
    }

    #[test]
    fn bearer_tokens_are_read_as_rfc_6750_spells_them() {
        assert_eq!(bearer(Some("Bearer abc")), Ok("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Ok("abc"));
        for bad in [None, Some(""), Some("Bearer"), Some("Bearer "), Some("Basic dXNlcjpwdw=="), Some("abc")]
        {
            let e = bearer(bad).unwrap_err();
            assert_eq!(e.status(), 401, "{bad:?}");
        }
    }

    #[test]
    fn allowed_decisions_last_longer_than_refusals() {
        let mut c = DecisionCache::default();
        let t0 = Instant::now();
        c.put("good", "get", "/metrics", Decision::Allow, t0);
        c.put("bad", "get", "/metrics", Decision::Forbidden("no".into()), t0);
        let at = |s| t0 + Duration::from_secs(s);
        assert_eq!(c.get("good", "get", "/metrics", at(59)), Some(Decision::Allow));
        assert_eq!(c.get("bad", "get", "/metrics", at(9)), Some(Decision::Forbidden("no".into())));
        assert_eq!(c.get("bad", "get", "/metrics", at(10)), None);
        assert_eq!(c.get("good", "get", "/metrics", at(60)), None);
        // Another verb or path is another question.
        assert_eq!(c.get("good", "post", "/metrics", t0), None);
        assert_eq!(c.get("good", "get", "/other", t0), None);
    }

    #[test]
    fn the_cache_stays_bounded_under_a_flood_of_tokens() {
        let mut c = DecisionCache::default();
        let t0 = Instant::now();
        for i in 0..(MAX_ENTRIES * 3) {
            c.put(&format!("t{i}"), "get", "/metrics", Decision::Unauthenticated("x".into()), t0);
            assert!(c.len() <= MAX_ENTRIES);
        }
        // Expired entries go first: a live one survives when the rest have expired.
        let mut c = DecisionCache::default();
        for i in 0..MAX_ENTRIES - 1 {
            c.put(&format!("t{i}"), "get", "/metrics", Decision::Unauthenticated("x".into()), t0);
        }
        let later = t0 + DENY_TTL + Duration::from_secs(1);
        c.put("prom", "get", "/metrics", Decision::Allow, later);
        c.put("next", "get", "/metrics", Decision::Allow, later);
        assert_eq!(c.len(), 2);
        assert_eq!(c.get("prom", "get", "/metrics", later), Some(Decision::Allow));
    }
}
