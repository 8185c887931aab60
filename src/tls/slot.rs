//! The certificate a TLS listener serves, swapped in place when it is renewed or its files
//! change: the webhook and the metrics port hand rustls a [`CertSlot`] instead of a fixed
//! certificate.

use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The certificate being served; replaced in place when it is renewed.
#[derive(Debug, Default)]
pub struct CertSlot(RwLock<Option<Arc<CertifiedKey>>>);

impl CertSlot {
    pub fn set_pem(&self, cert_pem: &str, key_pem: &str) -> Result<(), String> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("serving certificate: {e}"))?;
        if certs.is_empty() {
            return Err("serving certificate: no certificate in tls.crt".into());
        }
        let key =
            PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| format!("serving key: {e}"))?;
        let signer =
            rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| format!("serving key: {e}"))?;
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(CertifiedKey::new(certs, signer)));
        Ok(())
    }

    /// Serves `tls.crt` and `tls.key` from `dir` (a mounted Secret, cert-manager's files).
    pub async fn load_dir(&self, dir: &std::path::Path) -> Result<(), String> {
        self.set_pem(&read_in(dir, "tls.crt").await?, &read_in(dir, "tls.key").await?)
    }
}

/// The file `name` in `dir`, or an error naming it.
pub async fn read_in(dir: &std::path::Path, name: &str) -> Result<String, String> {
    let p = dir.join(name);
    tokio::fs::read_to_string(&p).await.map_err(|e| format!("reading {}: {e}", p.display()))
}

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
