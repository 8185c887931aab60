//! Serving certificates ferrolb issues itself: the webhook's (when no cert-manager looks after
//! it) and the metrics port's (when no Secret is mounted).
//!
//! Each issue makes a fresh CA and a serving certificate it signs; the CA's key is thrown away.
//! The bundle the API server trusts holds the new CA *and the previous one*, so replicas still
//! serving the old certificate stay trusted until they reload: rotation never opens a window in
//! which the API server refuses the webhook (and, with failurePolicy Fail, every config change).

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// A serving certificate is issued for this long ...
pub const VALIDITY: Duration = Duration::days(365);
/// ... and replaced once less than this is left.
pub const RENEW_BEFORE: Duration = Duration::days(120);

/// What the Secret holds (keys `tls.crt`, `tls.key`, `ca.crt`, and the expiry annotation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServingCert {
    pub cert_pem: String,
    pub key_pem: String,
    /// Every CA the API server should trust: the one that signed `cert_pem` first.
    pub ca_bundle_pem: String,
    /// Unix seconds.
    pub not_after: i64,
}

#[derive(Debug, thiserror::Error)]
#[error("generating the webhook certificate: {0}")]
pub struct CertError(#[from] rcgen::Error);

/// True when `current` is missing, for other names, or due for renewal at `now`.
pub fn needs_issue(current: Option<&ServingCert>, names_match: bool, now: OffsetDateTime) -> bool {
    match current {
        None => true,
        Some(c) => !names_match || c.not_after - now.unix_timestamp() < RENEW_BEFORE.whole_seconds(),
    }
}

/// A new CA and serving certificate for `names` (DNS names or IP addresses), trusting
/// `previous`'s signing CA alongside the new one.
pub fn issue(
    names: &[String],
    previous: Option<&ServingCert>,
    now: OffsetDateTime,
) -> Result<ServingCert, CertError> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name.push(DnType::CommonName, format!("ferrolb webhook CA {}", now.unix_timestamp()));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now - Duration::hours(1);
    // The CA outlives the certificate it signs, by the renewal margin, so it is still trusted
    // while a late replica serves the old certificate.
    ca.not_after = now + VALIDITY + RENEW_BEFORE;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca, ca_key);

    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(names.to_vec())?;
    leaf.distinguished_name.push(DnType::CommonName, names.first().cloned().unwrap_or_default());
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_before = now - Duration::hours(1);
    let not_after = now + VALIDITY;
    leaf.not_after = not_after;
    let cert = leaf.signed_by(&key, &issuer)?;

    let mut bundle = ca_cert.pem();
    if let Some(prev) = previous {
        // Only the CA that signed the previous certificate, not the whole chain of the past.
        if let Some(first) = first_pem(&prev.ca_bundle_pem) {
            bundle.push_str(first);
        }
    }
    Ok(ServingCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        ca_bundle_pem: bundle,
        not_after: not_after.unix_timestamp(),
    })
}

/// The first PEM block of `bundle`, with its trailing newline.
fn first_pem(bundle: &str) -> Option<&str> {
    const END: &str = "-----END CERTIFICATE-----";
    let end = bundle.find(END)? + END.len();
    let end = if bundle[end..].starts_with('\n') { end + 1 } else { end };
    Some(&bundle[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_only_near_expiry_or_for_new_names() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let c = issue(&["ferrolb-webhook-service.metallb-system.svc".into()], None, now).unwrap();
        assert!(needs_issue(None, true, now));
        assert!(!needs_issue(Some(&c), true, now));
        assert!(needs_issue(Some(&c), false, now));
        assert!(!needs_issue(Some(&c), true, now + VALIDITY - RENEW_BEFORE - Duration::days(1)));
        assert!(needs_issue(Some(&c), true, now + VALIDITY - RENEW_BEFORE + Duration::days(1)));
    }

    #[test]
    fn a_reissue_trusts_the_previous_ca_and_only_that_one() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let names = vec!["svc.ns.svc".to_string(), "127.0.0.1".to_string()];
        let first = issue(&names, None, now).unwrap();
        assert_eq!(first.ca_bundle_pem.matches("BEGIN CERTIFICATE").count(), 1);
        let second = issue(&names, Some(&first), now).unwrap();
        let third = issue(&names, Some(&second), now).unwrap();
        assert_eq!(third.ca_bundle_pem.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(third.ca_bundle_pem.ends_with(first_pem(&second.ca_bundle_pem).unwrap()));
        assert!(!third.ca_bundle_pem.contains(first_pem(&first.ca_bundle_pem).unwrap()));
        assert_ne!(second.cert_pem, third.cert_pem);
    }
}
