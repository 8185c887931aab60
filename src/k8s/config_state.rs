//! ConfigurationState objects: whether a component (the controller, each node's speaker)
//! accepted the configuration, and if not, every error.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use super::{K8sError, api_error};
use crate::api::{AnnounceFailure, ConfigurationState};

/// A condition beside the configuration's own: the speaker's layer 2 fencing, whether its
/// membership is sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraCondition {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

/// One component's ConfigurationState, written only when what it says changes.
pub struct ConfigStateReport {
    client: Client,
    ns: String,
    name: String,
    labels: Vec<(String, String)>,
    owner: Option<OwnerReference>,
    /// `poolReconcilerValid` (controller) or `configReconcilerValid` (speaker), as MetalLB.
    condition: &'static str,
    /// The errors (None inside: valid) and extra conditions last written; None until the first
    /// write.
    written: Option<(Option<String>, Vec<ExtraCondition>)>,
    /// When each condition last changed status: (type, status, time).
    since: Vec<(String, &'static str, Time)>,
    /// The announce failures last written (a speaker's); None until the first write.
    failures_written: Option<Vec<AnnounceFailure>>,
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
            since: Vec::new(),
            failures_written: None,
        }
    }

    /// Says the configuration is valid (`errors` None) or invalid with these errors, and
    /// carries `extra` beside it.
    pub async fn sync(&mut self, errors: Option<String>, extra: Vec<ExtraCondition>) -> Result<(), K8sError> {
        let next = (errors, extra);
        if self.written.as_ref() == Some(&next) {
            return Ok(());
        }
        let (errors, extra) = &next;
        let (status, reason, message) = match errors {
            None => ("True", "Reconciled", "the configuration is valid and in use".to_string()),
            Some(e) => ("False", "ConfigurationError", e.to_string()),
        };
        let mut conditions = vec![self.condition(self.condition, status, reason, &message)];
        for x in extra {
            conditions.push(self.condition(
                x.type_,
                if x.status { "True" } else { "False" },
                x.reason,
                &x.message,
            ));
        }
        write(
            &self.client,
            &self.ns,
            &self.name,
            &self.labels,
            self.owner.clone(),
            errors.as_deref(),
            conditions,
        )
        .await?;
        self.written = Some(next);
        Ok(())
    }

    /// Says which announcements this node cannot make (a speaker's; see
    /// [`AnnounceFailure`]). Call after [`ConfigStateReport::sync`] made the object.
    pub async fn sync_failures(&mut self, failures: &[AnnounceFailure]) -> Result<(), K8sError> {
        if self.failures_written.as_deref() == Some(failures) {
            return Ok(());
        }
        let api: Api<ConfigurationState> = Api::namespaced(self.client.clone(), &self.ns);
        // A merge patch replaces the list whole; null removes it.
        let list = if failures.is_empty() { serde_json::Value::Null } else { json!(failures) };
        api.patch_status(
            &self.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"announceFailures": list}})),
        )
        .await
        .map_err(api_error(
            "writing the announce failures of",
            format!("ConfigurationState {}", self.name),
        ))?;
        self.failures_written = Some(failures.to_vec());
        Ok(())
    }

    /// A condition whose lastTransitionTime moves only when its status does.
    fn condition(
        &mut self,
        type_: &str,
        status: &'static str,
        reason: &str,
        message: &str,
    ) -> serde_json::Value {
        let since = match self.since.iter().position(|(t, _, _)| t == type_) {
            Some(i) if self.since[i].1 == status => self.since[i].2.clone(),
            found => {
                let now = Time(k8s_openapi::jiff::Timestamp::now());
                if let Some(i) = found {
                    self.since.remove(i);
                }
                self.since.push((type_.to_string(), status, now.clone()));
                now
            }
        };
        json!({"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": since})
    }
}

/// Creates `name` if missing and sets its result, summary and conditions.
async fn write(
    client: &Client,
    ns: &str,
    name: &str,
    labels: &[(String, String)],
    owner: Option<OwnerReference>,
    errors: Option<&str>,
    conditions: Vec<serde_json::Value>,
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
    let result = if errors.is_none() { "Valid" } else { "Invalid" };
    let status = json!({"status": {
        "result": result,
        "errorSummary": errors.unwrap_or(""),
        "conditions": conditions,
    }});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .map_err(api_error("writing the status of", format!("ConfigurationState {name}")))?;
    Ok(())
}
