//! ConfigurationState objects: whether a component (the controller, each node's speaker)
//! accepted the configuration, and if not, every error.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use super::K8sError;
use crate::api::ConfigurationState;

fn failed(action: &'static str, object: String) -> impl FnOnce(kube::Error) -> K8sError {
    move |e| K8sError::Api { action, object, message: e.to_string() }
}

/// Creates `name` if missing and sets its result, summary and the one condition it carries.
pub async fn write(
    client: &Client,
    ns: &str,
    name: &str,
    labels: &[(&str, &str)],
    owner: Option<OwnerReference>,
    condition: &str,
    errors: Option<&str>,
) -> Result<(), K8sError> {
    let api: Api<ConfigurationState> = Api::namespaced(client.clone(), ns);
    if api.get_opt(name).await.map_err(failed("reading", format!("ConfigurationState {name}")))?.is_none() {
        let object = ConfigurationState {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                owner_references: owner.map(|o| vec![o]),
                ..Default::default()
            },
            spec: Default::default(),
            status: None,
        };
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(failed("creating", format!("ConfigurationState {name}"))(e)),
        }
    }
    let (result, status, reason, message) = match errors {
        None => ("Valid", "True", "Reconciled", "the configuration is valid and in use".to_string()),
        Some(e) => ("Invalid", "False", "ConfigurationError", e.to_string()),
    };
    let status = json!({"status": {
        "result": result,
        "errorSummary": errors.unwrap_or(""),
        "conditions": [{"type": condition, "status": status, "reason": reason, "message": message,
                        "lastTransitionTime": Time(k8s_openapi::jiff::Timestamp::now())}],
    }});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .map_err(failed("writing the status of", format!("ConfigurationState {name}")))?;
    Ok(())
}
