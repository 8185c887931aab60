//! The webhook certificate's home in the cluster: a Secret every controller replica shares, and
//! the CA bundle the API server needs, patched into the ValidatingWebhookConfiguration and the
//! BGPPeer CRD's conversion stanza.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use super::{K8sError, api_error};
use crate::tls::cert::ServingCert;

const NOT_AFTER: &str = "ferrolb.io/not-after";
const NAMES: &str = "ferrolb.io/names";

/// What the Secret holds now.
pub struct Stored {
    pub secret: Secret,
    /// None when the Secret holds no complete certificate (e.g. the chart's empty placeholder).
    pub cert: Option<ServingCert>,
    /// The names the certificate was issued for.
    pub names: Vec<String>,
}

pub async fn read(client: &Client, ns: &str, name: &str) -> Result<Option<Stored>, K8sError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let Some(secret) =
        api.get_opt(name).await.map_err(api_error("reading", format!("Secret {ns}/{name}")))?
    else {
        return Ok(None);
    };
    let data = secret.data.clone().unwrap_or_default();
    let text =
        |k: &str| data.get(k).and_then(|b| String::from_utf8(b.0.clone()).ok()).filter(|s| !s.is_empty());
    let ann = secret.metadata.annotations.clone().unwrap_or_default();
    let not_after = ann.get(NOT_AFTER).and_then(|s| s.parse().ok()).unwrap_or(0);
    let names = ann.get(NAMES).map(|s| s.split(',').map(str::to_string).collect()).unwrap_or_default();
    let cert = match (text("tls.crt"), text("tls.key"), text("ca.crt")) {
        (Some(cert_pem), Some(key_pem), Some(ca_bundle_pem)) => {
            Some(ServingCert { cert_pem, key_pem, ca_bundle_pem, not_after })
        }
        _ => None,
    };
    Ok(Some(Stored { secret, cert, names }))
}

/// Stores `cert`; `previous` carries the resourceVersion so two replicas renewing at once
/// cannot both win. Returns false when another replica wrote first (read it again).
pub async fn write(
    client: &Client,
    ns: &str,
    name: &str,
    cert: &ServingCert,
    names: &[String],
    previous: Option<Secret>,
) -> Result<bool, K8sError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let data: BTreeMap<String, ByteString> =
        [("tls.crt", &cert.cert_pem), ("tls.key", &cert.key_pem), ("ca.crt", &cert.ca_bundle_pem)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.clone().into_bytes())))
            .collect();
    let mut secret = previous.unwrap_or_default();
    secret.metadata.name = Some(name.into());
    secret.metadata.namespace = Some(ns.into());
    let ann = secret.metadata.annotations.get_or_insert_with(Default::default);
    ann.insert(NOT_AFTER.into(), cert.not_after.to_string());
    ann.insert(NAMES.into(), names.join(","));
    secret.type_ = Some("kubernetes.io/tls".into());
    secret.data = Some(data);
    secret.string_data = None;
    let object = format!("Secret {ns}/{name}");
    let result = if secret.metadata.resource_version.is_some() {
        api.replace(name, &PostParams::default(), &secret).await
    } else {
        api.create(&PostParams::default(), &secret).await
    };
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(api_error("writing", object)(e)),
    }
}

/// The Service the API server reaches the webhook through: this controller's namespace and
/// `--webhook-service`.
#[derive(Debug, Clone)]
pub struct WebhookService {
    pub namespace: String,
    pub name: String,
}

/// Puts `bundle` into every webhook of the configuration and into the BGPPeer CRD's conversion
/// webhook, where it differs. Objects that do not exist (yet) are skipped: the chart creates
/// them, and the next round finds them.
///
/// The CRD also gets `service`'s namespace and name: CRDs cannot be templated (Helm installs
/// `crds/` as they are, naming metallb-system), so a release in any other namespace would
/// otherwise send conversions to a Service that does not exist. A conversion configured by
/// URL instead is left as it is.
pub async fn publish_ca_bundle(
    client: &Client,
    configuration: &str,
    bundle: &str,
    service: &WebhookService,
) -> Result<(), K8sError> {
    let encoded = ByteString(bundle.as_bytes().to_vec());
    let vwc: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    if let Some(cfg) = vwc
        .get_opt(configuration)
        .await
        .map_err(api_error("reading", format!("ValidatingWebhookConfiguration {configuration}")))?
    {
        let mut cfg = cfg;
        let stale =
            cfg.webhooks.iter().flatten().any(|w| w.client_config.ca_bundle.as_ref() != Some(&encoded));
        if stale {
            for w in cfg.webhooks.iter_mut().flatten() {
                w.client_config.ca_bundle = Some(encoded.clone());
            }
            // Replace carries the resourceVersion: a concurrent edit makes this fail (409) and
            // the next round starts from the new object.
            vwc.replace(configuration, &PostParams::default(), &cfg).await.map_err(api_error(
                "patching the caBundle of",
                format!("ValidatingWebhookConfiguration {configuration}"),
            ))?;
            tracing::info!(configuration, "webhook CA bundle published");
        }
    }
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd_name = "bgppeers.metallb.io";
    if let Some(crd) =
        crds.get_opt(crd_name).await.map_err(api_error("reading", format!("CRD {crd_name}")))?
    {
        let conversion = crd.spec.conversion.as_ref();
        let uses_webhook = conversion.is_some_and(|c| c.strategy == "Webhook");
        let config = conversion.and_then(|c| c.webhook.as_ref()).and_then(|w| w.client_config.as_ref());
        let current = config.and_then(|c| c.ca_bundle.as_ref());
        let via = config.and_then(|c| c.service.as_ref());
        let elsewhere = via.is_some_and(|v| v.namespace != service.namespace || v.name != service.name);
        if uses_webhook && (current != Some(&encoded) || elsewhere) {
            let mut client_config = json!({"caBundle": encoded});
            if via.is_some() {
                client_config["service"] = json!({"namespace": service.namespace, "name": service.name});
            }
            let patch = json!({"spec": {"conversion": {"webhook": {"clientConfig": client_config}}}});
            crds.patch(crd_name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map_err(api_error("patching the caBundle of", format!("CRD {crd_name}")))?;
            tracing::info!(crd = crd_name, namespace = %service.namespace, "conversion webhook CA bundle and Service published");
        }
    }
    Ok(())
}
