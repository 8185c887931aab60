//! TLS as operators configure it, under MetalLB's (and Kubernetes') flag names and values:
//! `--tls-min-version` and `--tls-cipher-suites`. One policy serves every TLS port a process
//! opens (the webhook and the HTTPS metrics port), so they can never disagree.

pub mod cert;
mod slot;

pub use slot::{CertSlot, read_in};

use std::fmt;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::crypto::ring::default_provider;
use rustls::server::{ResolvesServerCert, WantsServerCert};
use rustls::version::{TLS12, TLS13};
use rustls::{CipherSuite, ConfigBuilder, ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};

#[derive(Debug, Clone, clap::Args)]
pub struct TlsArgs {
    /// The oldest TLS version the webhook and HTTPS metrics accept: VersionTLS12 or
    /// VersionTLS13 (Kubernetes' names). VersionTLS10 and VersionTLS11 are refused: ferrolb
    /// never speaks TLS below 1.2.
    #[arg(long, default_value = "VersionTLS12", value_parser = parse_min_version)]
    pub tls_min_version: MinVersion,
    /// Cipher suites the webhook and HTTPS metrics accept, comma-separated IANA names
    /// (TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256, …). TLS 1.2 gets exactly
    /// the TLS 1.2 suites named; TLS 1.3 the TLS 1.3 suites named, or all three when none is.
    /// Default: every suite rustls offers (ECDHE with AES-GCM or ChaCha20-Poly1305, and TLS
    /// 1.3's three); there is no CBC, RC4, 3DES or RSA key exchange to turn on.
    #[arg(long, value_parser = parse_cipher_suites)]
    pub tls_cipher_suites: Option<CipherSuites>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinVersion {
    Tls12,
    Tls13,
}

/// The suites `--tls-cipher-suites` named, each once.
#[derive(Debug, Clone, PartialEq)]
pub struct CipherSuites(Vec<SupportedCipherSuite>);

/// Validated flags: what every TLS server of the process is built from.
#[derive(Debug, Clone)]
pub struct TlsPolicy {
    provider: Arc<CryptoProvider>,
    versions: &'static [&'static SupportedProtocolVersion],
}

/// The names accepted, each for a suite the ring provider implements. The canonical IANA name
/// comes first (it is the one printed); Go's older ChaCha20 spellings follow, because
/// Kubernetes accepts them and lists written for MetalLB may use them.
const NAMES: &[(&str, CipherSuite)] = &[
    ("TLS_AES_128_GCM_SHA256", CipherSuite::TLS13_AES_128_GCM_SHA256),
    ("TLS_AES_256_GCM_SHA384", CipherSuite::TLS13_AES_256_GCM_SHA384),
    ("TLS_CHACHA20_POLY1305_SHA256", CipherSuite::TLS13_CHACHA20_POLY1305_SHA256),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
    ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
    ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
    ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305", CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
    ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
];

/// `--tls-min-version`.
///
/// VersionTLS10 and VersionTLS11 are refused rather than quietly served as 1.2: rustls
/// implements neither (RFC 8996 retired both), so an operator asking for them has clients
/// that need them, and an install that came up anyway would leave those clients failing at
/// their first handshake, far from the cause. Refusing puts the reason in the pod's log at
/// deploy time.
pub fn parse_min_version(value: &str) -> Result<MinVersion, String> {
    match value.trim() {
        "VersionTLS12" => Ok(MinVersion::Tls12),
        "VersionTLS13" => Ok(MinVersion::Tls13),
        old @ ("VersionTLS10" | "VersionTLS11") => Err(format!(
            "{old} is refused: ferrolb (rustls) never speaks TLS below 1.2; use VersionTLS12 or VersionTLS13"
        )),
        other => Err(format!("unknown TLS version {other:?}: use VersionTLS12 or VersionTLS13")),
    }
}

/// `--tls-cipher-suites`: blanks around names and empty items (a trailing comma) are ignored;
/// a list naming nothing is refused, since leaving the flag out is how to ask for the defaults.
pub fn parse_cipher_suites(list: &str) -> Result<CipherSuites, String> {
    let mut chosen = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let suite = NAMES.iter().find(|(n, _)| *n == name).and_then(|(_, id)| implemented(*id)).ok_or_else(|| {
            format!(
                "cipher suite {name} is unknown or not offered (rustls has only ECDHE key exchange with AES-GCM \
                 or ChaCha20-Poly1305, and TLS 1.3's suites); accepted: {}",
                accepted()
            )
        })?;
        if !chosen.contains(&suite) {
            chosen.push(suite);
        }
    }
    if chosen.is_empty() {
        return Err(format!(
            "no cipher suite named; leave the flag out for the defaults, or name some of: {}",
            accepted()
        ));
    }
    Ok(CipherSuites(chosen))
}

static FROM_TLS12: &[&SupportedProtocolVersion] = &[&TLS13, &TLS12];
static FROM_TLS13: &[&SupportedProtocolVersion] = &[&TLS13];

fn implemented(id: CipherSuite) -> Option<SupportedCipherSuite> {
    default_provider().cipher_suites.into_iter().find(|s| s.suite() == id)
}

fn accepted() -> String {
    NAMES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

fn is_tls13(suite: &SupportedCipherSuite) -> bool {
    suite.version() == &TLS13
}

impl TlsArgs {
    /// The policy the flags describe, or why they cannot be served together.
    pub fn policy(&self) -> Result<TlsPolicy, String> {
        let tls13_only = self.tls_min_version == MinVersion::Tls13;
        let mut provider = default_provider();
        if let Some(CipherSuites(named)) = &self.tls_cipher_suites {
            let tls12: Vec<_> = named.iter().filter(|s| !is_tls13(s)).map(|s| name_of(s.suite())).collect();
            // MetalLB refuses suites beside VersionTLS13 too: with no TLS 1.2 they would do nothing.
            if tls13_only && !tls12.is_empty() {
                return Err(format!(
                    "--tls-cipher-suites names TLS 1.2 suites ({}) that --tls-min-version VersionTLS13 never \
                     negotiates: drop them or lower the minimum",
                    tls12.join(", ")
                ));
            }
            // Kubernetes' lists govern TLS 1.2 alone (Go offers every TLS 1.3 suite), so a list
            // written for MetalLB must leave TLS 1.3 whole rather than turn it off.
            let tls13_named = named.iter().any(is_tls13);
            provider.cipher_suites.retain(|s| named.contains(s) || (is_tls13(s) && !tls13_named));
        }
        if tls13_only {
            provider.cipher_suites.retain(is_tls13);
        }
        let versions = if tls13_only { FROM_TLS13 } else { FROM_TLS12 };
        let policy = TlsPolicy { provider: Arc::new(provider), versions };
        // rustls refuses versions no suite serves: better at start than at the first handshake.
        policy.builder()?;
        Ok(policy)
    }
}

impl TlsPolicy {
    /// A server configuration builder with these versions and suites; the certificate is the
    /// caller's.
    pub fn builder(&self) -> Result<ConfigBuilder<ServerConfig, WantsServerCert>, String> {
        let builder = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(self.versions)
            .map_err(|e| format!("TLS settings: {e}"))?;
        Ok(builder.with_no_client_auth())
    }

    /// What both HTTPS servers serve: HTTP/1.1 only (hyper's http1 server), no client
    /// certificates (callers authenticate with tokens, or are the API server).
    pub fn server_config(&self, certs: Arc<dyn ResolvesServerCert>) -> Result<Arc<ServerConfig>, String> {
        let mut config = self.builder()?.with_cert_resolver(certs);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl fmt::Display for TlsPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let min = if self.versions.contains(&&TLS12) { "1.2" } else { "1.3" };
        let suites: Vec<_> = self.provider.cipher_suites.iter().map(|s| name_of(s.suite())).collect();
        write!(f, "TLS {min}+ with {}", suites.join(","))
    }
}

fn name_of(id: CipherSuite) -> String {
    NAMES.iter().find(|(_, s)| *s == id).map_or_else(|| format!("{id:?}"), |(n, _)| n.to_string())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        tls: TlsArgs,
    }

    fn flags(args: &[&str]) -> Result<TlsArgs, String> {
        let all = std::iter::once("ferrolb").chain(args.iter().copied());
        Flags::try_parse_from(all).map(|f| f.tls).map_err(|e| e.to_string())
    }

    fn policy(args: &[&str]) -> Result<String, String> {
        flags(args)?.policy().map(|p| p.to_string())
    }

    fn suites(list: &str) -> Vec<CipherSuite> {
        parse_cipher_suites(list).map(|c| c.0.iter().map(|s| s.suite()).collect()).unwrap_or_default()
    }

    #[test]
    fn defaults_are_tls12_and_up_with_every_suite_rustls_offers() {
        let p = policy(&[]).unwrap_or_default();
        assert!(p.starts_with("TLS 1.2+ with "), "{p}");
        assert_eq!(p.matches(',').count() + 1, default_provider().cipher_suites.len(), "{p}");
        assert!(!p.contains("CBC") && !p.contains("TLS_RSA_"), "{p}");
    }

    #[test]
    fn versions_take_kubernetes_names() {
        assert_eq!(parse_min_version("VersionTLS12"), Ok(MinVersion::Tls12));
        assert_eq!(parse_min_version("VersionTLS13"), Ok(MinVersion::Tls13));
        for bad in ["1.2", "TLS12", "VersionTLS14", ""] {
            let e = parse_min_version(bad).err().unwrap_or_default();
            assert!(e.contains("unknown TLS version") && e.contains("VersionTLS13"), "{bad}: {e}");
        }
    }

    #[test]
    fn tls_below_1_2_is_refused_with_the_reason() {
        for old in ["VersionTLS10", "VersionTLS11"] {
            let e = flags(&["--tls-min-version", old]).err().unwrap_or_default();
            assert!(e.contains(old) && e.contains("never speaks TLS below 1.2"), "{e}");
        }
    }

    #[test]
    fn suites_take_iana_names_and_kubernetes_aliases() {
        assert_eq!(
            suites(" TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 , TLS_AES_128_GCM_SHA256,"),
            [CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, CipherSuite::TLS13_AES_128_GCM_SHA256]
        );
        assert_eq!(
            suites("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
            [CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256]
        );
        for (name, _) in NAMES {
            assert_eq!(suites(name).len(), 1, "{name}");
        }
    }

    #[test]
    fn unknown_or_unsupported_suites_are_refused_by_name() {
        for bad in [
            "TLS_RSA_WITH_AES_128_CBC_SHA",
            "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
            "TLS13_AES_128_GCM_SHA256",
        ] {
            let e = parse_cipher_suites(&format!("TLS_AES_128_GCM_SHA256,{bad}")).err().unwrap_or_default();
            assert!(e.contains(bad) && e.contains("accepted: TLS_AES_128_GCM_SHA256, "), "{e}");
        }
        let e = flags(&["--tls-cipher-suites", "nonsense"]).err().unwrap_or_default();
        assert!(e.contains("--tls-cipher-suites") && e.contains("cipher suite nonsense"), "{e}");
    }

    #[test]
    fn an_empty_list_is_refused() {
        for empty in ["", " ", ",", " , "] {
            let e = parse_cipher_suites(empty).err().unwrap_or_default();
            assert!(e.contains("no cipher suite named"), "{empty:?}: {e}");
        }
        assert!(flags(&["--tls-cipher-suites", ""]).is_err());
    }

    #[test]
    fn a_tls12_list_governs_tls12_and_leaves_tls13_whole() {
        let p =
            policy(&["--tls-cipher-suites", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"]).unwrap_or_default();
        assert_eq!(
            p,
            "TLS 1.2+ with TLS_AES_256_GCM_SHA384,TLS_AES_128_GCM_SHA256,TLS_CHACHA20_POLY1305_SHA256,\
             TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
        );
    }

    #[test]
    fn naming_a_tls13_suite_narrows_tls13() {
        let list = "TLS_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256";
        let p = policy(&["--tls-cipher-suites", list]).unwrap_or_default();
        assert_eq!(p, "TLS 1.2+ with TLS_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256");
        let p =
            policy(&["--tls-min-version", "VersionTLS13", "--tls-cipher-suites", "TLS_AES_128_GCM_SHA256"]);
        assert_eq!(p.unwrap_or_default(), "TLS 1.3+ with TLS_AES_128_GCM_SHA256");
    }

    #[test]
    fn tls12_suites_beside_a_tls13_minimum_are_refused() {
        let list = "TLS_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256";
        let e = policy(&["--tls-min-version", "VersionTLS13", "--tls-cipher-suites", list])
            .err()
            .unwrap_or_default();
        assert!(e.contains("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256") && e.contains("VersionTLS13"), "{e}");
        assert_eq!(
            policy(&["--tls-min-version", "VersionTLS13"]).unwrap_or_default().matches(',').count(),
            2
        );
    }
}
