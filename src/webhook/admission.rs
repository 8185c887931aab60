//! Whether a change to a configuration object may land (pure).
//!
//! The incoming object is merged into the cluster's current objects and the whole set goes
//! through [`config::parse`], the function `plan`, the controller and the speaker use, so the
//! webhook can never accept what they would refuse. Only problems the change *introduces* are
//! held against it: a cluster that already holds a bad object (created before the webhook ran)
//! must still accept the edit that fixes it, and unrelated objects must stay editable meanwhile.
//! Problems fixed by creating another object (a missing BFDProfile, Secret or Community alias)
//! never reject: objects may be created in any order.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::api;
use crate::config::{self, ClusterObjects, ConfigError};

/// A configuration object as the API server sends it.
#[derive(Debug, Clone)]
pub enum ConfigObject {
    Pool(api::IPAddressPool),
    L2Advertisement(api::L2Advertisement),
    BgpAdvertisement(api::BGPAdvertisement),
    Peer(api::BGPPeer),
    BfdProfile(api::BFDProfile),
    Community(api::Community),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow { warnings: Vec<String> },
    Deny { reason: String },
}

/// The kinds the webhook guards, as named in AdmissionReview requests.
pub const KINDS: &[&str] =
    &["IPAddressPool", "L2Advertisement", "BGPAdvertisement", "BGPPeer", "BFDProfile", "Community"];

impl ConfigObject {
    /// Decodes `object` as `kind`; the error names the object and the offending field.
    pub fn decode(kind: &str, object: Value) -> Result<ConfigObject, String> {
        let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
        fn typed<T: serde::de::DeserializeOwned>(kind: &str, name: &str, v: Value) -> Result<T, String> {
            serde_path_to_error::deserialize(v)
                .map_err(|e| format!("{kind} {name:?}: {}: {}", e.path(), e.inner()))
        }
        Ok(match kind {
            "IPAddressPool" => ConfigObject::Pool(typed(kind, &name, object)?),
            "L2Advertisement" => ConfigObject::L2Advertisement(typed(kind, &name, object)?),
            "BGPAdvertisement" => ConfigObject::BgpAdvertisement(typed(kind, &name, object)?),
            "BGPPeer" => ConfigObject::Peer(typed(kind, &name, object)?),
            "BFDProfile" => ConfigObject::BfdProfile(typed(kind, &name, object)?),
            "Community" => ConfigObject::Community(typed(kind, &name, object)?),
            other => return Err(format!("ferrolb does not validate {other} objects")),
        })
    }

    /// Puts this object into `objects`, replacing the one of the same kind and name.
    fn merge_into(&self, objects: &mut ClusterObjects) {
        fn put<K: kube::Resource + Clone>(list: &mut Vec<K>, o: &K) {
            let name = o.meta().name.clone();
            match list.iter_mut().find(|x| x.meta().name == name) {
                Some(slot) => *slot = o.clone(),
                None => list.push(o.clone()),
            }
        }
        match self {
            ConfigObject::Pool(o) => put(&mut objects.pools, o),
            ConfigObject::L2Advertisement(o) => put(&mut objects.l2_advertisements, o),
            ConfigObject::BgpAdvertisement(o) => put(&mut objects.bgp_advertisements, o),
            ConfigObject::Peer(o) => put(&mut objects.peers, o),
            ConfigObject::BfdProfile(o) => put(&mut objects.bfd_profiles, o),
            ConfigObject::Community(o) => put(&mut objects.communities, o),
        }
    }
}

/// The decision for `operation` on `object` given the cluster's `current` objects.
pub fn admit(current: &ClusterObjects, operation: Operation, object: &ConfigObject) -> Verdict {
    if operation == Operation::Delete {
        return admit_delete(current, object);
    }
    let mut merged = current.clone();
    object.merge_into(&mut merged);
    let (before, before_warnings) = problems(current);
    let (after, after_warnings) = problems(&merged);
    let introduced: Vec<&String> = after.iter().filter(|e| !before.contains(*e)).collect();
    if !introduced.is_empty() {
        let reason = introduced.iter().map(|e| e.as_str()).collect::<Vec<_>>().join("; ");
        return Verdict::Deny { reason };
    }
    let warnings = after_warnings.into_iter().filter(|w| !before_warnings.contains(w)).collect();
    Verdict::Allow { warnings }
}

/// Deleting never breaks parsing, except a BFDProfile a peer still names: its sessions would
/// silently lose BFD, so the profile stays until the peers let go of it.
fn admit_delete(current: &ClusterObjects, object: &ConfigObject) -> Verdict {
    let ConfigObject::BfdProfile(profile) = object else {
        return Verdict::Allow { warnings: vec![] };
    };
    let name = profile.metadata.name.as_deref().unwrap_or("");
    let users: Vec<&str> = current
        .peers
        .iter()
        .filter(|p| p.spec.bfd_profile.as_deref() == Some(name))
        .filter_map(|p| p.metadata.name.as_deref())
        .collect();
    if users.is_empty() {
        return Verdict::Allow { warnings: vec![] };
    }
    Verdict::Deny {
        reason: format!(
            "BFDProfile {name:?} is in use: referenced by spec.bfdProfile of BGPPeer {}; \
             change those peers first",
            users.iter().map(|u| format!("{u:?}")).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Errors (those the object's author must fix) and warnings, each as its message.
fn problems(objects: &ClusterObjects) -> (BTreeSet<String>, BTreeSet<String>) {
    let parsed = config::parse(objects);
    let text = |e: &ConfigError| e.to_string();
    let errors = match &parsed.result {
        Ok(_) => BTreeSet::new(),
        Err(errs) => errs.0.iter().filter(|e| !e.transient).map(text).collect(),
    };
    (errors, parsed.warnings.iter().map(text).collect())
}

#[cfg(test)]
mod tests;
