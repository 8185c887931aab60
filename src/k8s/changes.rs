//! What each watch event changed, for deciding again at the cost of what changed
//! ([`crate::plan::incremental`]): an object about one Service names that Service; a
//! configuration object that really changed (not merely its resourceVersion or the status
//! the controller writes) means everything.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use k8s_openapi::api::core::v1::Service;
use kube::runtime::reflector::Lookup;
use kube::runtime::watcher;

use crate::api;
use crate::plan::incremental::Dirty;
use crate::service::ServiceKey;
use crate::topology::SliceEndpoints;

/// How an object's changes reach the decisions.
#[derive(Clone, Copy)]
pub enum Marks {
    /// Configuration (and what it refers to): a change decides everything again. Only a change
    /// of what `significant` keeps counts.
    Everything(fn(&serde_json::Value) -> serde_json::Value),
    /// About one Service (the Service itself, its EndpointSlices, speakers' reports on it),
    /// indexed by that Service when `indexed`.
    Service { about: fn(&dyn std::any::Any) -> Option<ServiceKey>, indexed: bool },
}

/// One kind's bookkeeping: the Services its objects are about (kinds indexed), and the
/// fingerprints of configuration objects.
#[derive(Default)]
pub struct Tracker {
    /// A Vec, not a set: a Service has one or two of them, and a one-entry B-tree set costs
    /// ~0.5 KB (benches/heap_profile).
    pub by_service: HashMap<ServiceKey, Vec<(String, String)>>,
    about: HashMap<(String, String), ServiceKey>,
    fingerprints: HashMap<(String, String), u64>,
}

fn name_of<K: Lookup>(o: &K) -> (String, String) {
    let owned = |s: Option<std::borrow::Cow<'_, str>>| s.map(|s| s.into_owned()).unwrap_or_default();
    (owned(o.namespace()), owned(o.name()))
}

impl Tracker {
    /// Records one watch event and says what it changed.
    pub fn note<K: Lookup + serde::Serialize + 'static>(
        &mut self,
        event: &watcher::Event<K>,
        marks: Marks,
    ) -> Dirty {
        let (object, deleted) = match event {
            watcher::Event::Apply(o) => (o, false),
            watcher::Event::Delete(o) => (o, true),
            // A relist ends: whatever happened meanwhile is unknown.
            watcher::Event::InitDone => return Dirty::everything(),
            watcher::Event::Init | watcher::Event::InitApply(_) => {
                if let watcher::Event::InitApply(o) = event {
                    self.remember(o, marks);
                }
                return Dirty::default();
            }
        };
        let name = name_of(object);
        match marks {
            Marks::Everything(significant) => {
                let print = (!deleted).then(|| fingerprint(object, significant));
                let before = match print {
                    Some(p) => self.fingerprints.insert(name, p),
                    None => self.fingerprints.remove(&name),
                };
                if before.is_some() && before == print { Dirty::default() } else { Dirty::everything() }
            }
            Marks::Service { about, indexed } => {
                let key = about(object);
                // The Service it was about before, too: a slice relabelled leaves one.
                let old = if deleted { self.about.remove(&name) } else { self.about.get(&name).cloned() };
                let dirty =
                    Dirty { everything: false, services: old.iter().chain(key.iter()).cloned().collect() };
                if indexed {
                    self.unindex(&name, old.as_ref());
                    if !deleted {
                        self.index(name, key);
                    }
                }
                dirty
            }
        }
    }

    /// A listed object: known from now on, changing nothing by itself (the relist's end does).
    fn remember<K: Lookup + serde::Serialize + 'static>(&mut self, o: &K, marks: Marks) {
        let name = name_of(o);
        match marks {
            Marks::Everything(significant) => {
                self.fingerprints.insert(name, fingerprint(o, significant));
            }
            Marks::Service { about, indexed: true } => {
                let old = self.about.get(&name).cloned();
                self.unindex(&name, old.as_ref());
                self.index(name, about(o));
            }
            Marks::Service { indexed: false, .. } => {}
        }
    }

    fn index(&mut self, name: (String, String), key: Option<ServiceKey>) {
        if let Some(k) = key {
            let names = self.by_service.entry(k.clone()).or_default();
            if !names.contains(&name) {
                names.push(name.clone());
            }
            self.about.insert(name, k);
        }
    }

    fn unindex(&mut self, name: &(String, String), old: Option<&ServiceKey>) {
        if let Some(old) = old
            && let Some(set) = self.by_service.get_mut(old)
        {
            set.retain(|n| n != name);
            if set.is_empty() {
                self.by_service.remove(old);
            }
        }
    }
}

/// A hash of what of `o` decisions read: its JSON without the fields every write changes.
fn fingerprint<K: serde::Serialize>(o: &K, significant: fn(&serde_json::Value) -> serde_json::Value) -> u64 {
    let mut v = serde_json::to_value(o).unwrap_or_default();
    if let Some(m) = v.get_mut("metadata").and_then(serde_json::Value::as_object_mut) {
        for volatile in ["resourceVersion", "managedFields", "generation"] {
            m.remove(volatile);
        }
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    significant(&v).to_string().hash(&mut h);
    h.finish()
}

pub fn whole(v: &serde_json::Value) -> serde_json::Value {
    v.clone()
}

/// Without its status: what the controller writes there (pool counts) decides nothing, and
/// each of its own writes must not make a full pass.
pub fn without_status(v: &serde_json::Value) -> serde_json::Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("status");
    }
    v
}

/// A speaker's ConfigurationState: only the announcements it says it cannot make decide
/// anything (the Services' conditions); its other conditions are for people.
pub fn announce_failures(v: &serde_json::Value) -> serde_json::Value {
    v.pointer("/status/announceFailures").cloned().unwrap_or_default()
}

pub fn service_itself(o: &dyn std::any::Any) -> Option<ServiceKey> {
    o.downcast_ref::<Service>().map(crate::service::key_of)
}

pub fn slice_service(o: &dyn std::any::Any) -> Option<ServiceKey> {
    o.downcast_ref::<SliceEndpoints>()?.service_key()
}

pub fn l2_report_service(o: &dyn std::any::Any) -> Option<ServiceKey> {
    let s = o.downcast_ref::<api::ServiceL2Status>()?.status.as_ref()?;
    Some(format!("{}/{}", s.service_namespace.as_deref()?, s.service_name.as_deref()?))
}

pub fn bgp_report_service(o: &dyn std::any::Any) -> Option<ServiceKey> {
    let s = o.downcast_ref::<api::ServiceBGPStatus>()?.status.as_ref()?;
    Some(format!("{}/{}", s.service_namespace.as_deref()?, s.service_name.as_deref()?))
}
