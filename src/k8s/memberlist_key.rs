//! The speakers' membership key: a Secret the controller makes when it is missing, as MetalLB's
//! controller does, so a default install seals membership without anyone making a key by hand.
//! The key never reaches a log, an Event or a status: only the Secret holds it.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::{Api, Client};
use rand::RngExt;

use super::{K8sError, api_error};

/// The Secret's key the speakers seal with (MetalLB's name); keys named after it with a suffix
/// (`secretkey.next`) only open, for rotation.
pub const KEY: &str = "secretkey";

/// 32 random bytes as hex: ChaCha20-Poly1305's key size, printable so an operator can copy it
/// into `secretkey.next` when rotating.
fn new_key() -> Vec<u8> {
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect::<String>().into_bytes()
}

/// Creates the Secret `ns/name` with a fresh key unless it exists. True when it was created.
pub async fn ensure(client: &Client, ns: &str, name: &str) -> Result<bool, K8sError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let object = format!("Secret {ns}/{name}");
    if api.get_metadata_opt(name).await.map_err(api_error("reading", object.clone()))?.is_some() {
        return Ok(false);
    }
    let mut secret = Secret::default();
    secret.metadata.name = Some(name.to_string());
    secret.metadata.labels = Some(BTreeMap::from([(
        "app.kubernetes.io/managed-by".to_string(),
        "ferrolb-controller".to_string(),
    )]));
    secret.data = Some(BTreeMap::from([(KEY.to_string(), ByteString(new_key()))]));
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(true),
        // Another replica made it first: theirs is the key.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(api_error("creating", object)(e)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_fresh_printable_and_256_bits() {
        let (a, b) = (super::new_key(), super::new_key());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(a.iter().all(|c| c.is_ascii_hexdigit()));
    }
}
