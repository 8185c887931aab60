//! ConfigurationState objects: whether a component (the controller, each node's speaker)
//! accepted the configuration, and if not, every error.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use super::{K8sError, api_error};
use crate::api::ConfigurationState;

/// One component's ConfigurationState, written only when what it says changes.
pub struct ConfigStateReport {
    client: Client,
    ns: String,
    name: String,
    labels: Vec<(String, String)>,
    owner: Option<OwnerReference>,
    /// `poolReconcilerValid` (controller) or `configReconcilerValid` (speaker), as MetalLB.
    condition: &'static str,
    /// The errors last written (None inside: valid); None until the first write.
    written: Option<Option<String>>,
}

impl ConfigStateReport {
    pub fn new(
        client: Client,
        ns: &str,
        name: &str,
        labels: &[(&str, &str)],
        owner: Option<OwnerReference>,
        condition: &'static str,
    ) -> ConfigStateReport {
        ConfigStateReport {
            client,
            ns: ns.into(),
            name: name.into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            owner,
            condition,
            written: None,
        }
    }

    /// Says the configuration is valid (`errors` None) or invalid with these errors.
    pub async fn sync(&mut self, errors: Option<String>) -> Result<(), K8sError> {
        if self.written.as_ref() == Some(&errors) {
            return Ok(());
        }
        write(
            &self.client,
            &self.ns,
            &self.name,
            &self.labels,
            self.owner.clone(),
            self.condition,
            errors.as_deref(),
        )
        .await?;
        self.written = Some(errors);
        Ok(())
    }
}

/// Creates `name` if missing and sets its result, summary and the one condition it carries.
async fn write(
    client: &Client,
    ns: &str,
    name: &str,
    labels: &[(String, String)],
    owner: Option<OwnerReference>,
    condition: &str,
    errors: Option<&str>,
) -> Result<(), K8sError> {
    let api: Api<ConfigurationState> = Api::namespaced(client.clone(), ns);
    if api.get_opt(name).await.map_err(api_error("reading", format!("ConfigurationState {name}")))?.is_none()
    {
        let object = ConfigurationState {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                labels: Some(labels.iter().cloned().collect()),
                owner_references: owner.map(|o| vec![o]),
                ..Default::default()
            },
            spec: Default::default(),
            status: None,
        };
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(api_error("creating", format!("ConfigurationState {name}"))(e)),
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
        .map_err(api_error("writing the status of", format!("ConfigurationState {name}")))?;
    Ok(())
}
