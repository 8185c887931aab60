//! Multi-document YAML manifests into the objects `plan` works on.
//!
//! Decoding a known kind with the wrong shape is a configuration error (it names the object and
//! the field path); YAML that cannot be read at all is a read error.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::legacy;
use crate::api;
use crate::config::{ClusterObjects, ConfigError};
use crate::topology::SliceEndpoints;

/// Everything read from the manifests.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub objects: ClusterObjects,
    /// Shared with the cache they came from: a pass never copies the world.
    pub services: Vec<Arc<Service>>,
    /// What each EndpointSlice says of its endpoints ([`SliceEndpoints`]), not the slices.
    pub endpoint_slices: Vec<Arc<SliceEndpoints>>,
    /// Objects of a known kind that could not be decoded.
    pub decode_errors: Vec<ConfigError>,
    /// Documents skipped (unknown kinds) and similar notes.
    pub notes: Vec<String>,
    /// The raw FRR configuration of the ConfigMap `bgpextras` (key `extras`), as MetalLB reads it.
    pub bgp_extras: Option<String>,
}

/// The most ferrolb reads from one manifest: its size in bytes (`manifests::read` refuses a
/// bigger file before reading it), and the text of its values (so aliases cannot multiply text
/// past it). The biggest real manifest, ferrolb.yaml with its CRDs, is a few hundred KiB; a dump
/// of 10,000 Services (`kubectl get -o yaml`, managed fields and all) 14 MiB. Twice that leaves
/// room, and keeps a wrong file (a log, an image, one 50 MiB string) from being read and parsed
/// whole.
pub const MAX_MANIFEST_BYTES: usize = 32 << 20;
/// 10,000 Services as `kubectl get -o yaml` prints them are 14 MiB and 2 million nodes, so a file
/// of real objects at [`MAX_MANIFEST_BYTES`] holds about 4.5 million; a hostile one of
/// `[0,0,0,…]` could hold 16 million (8 s and 560 MB in a release build). At this bound no file
/// costs more than the largest real one (2.4 s and 180 MB).
const MAX_NODES: usize = 5_000_000;
/// An object ferrolb reads takes 100 bytes at the least (a Service in flow style), so a full
/// file holds about this many; 10,000 Services with their EndpointSlices are 20,000. A storm of
/// empty documents is refused in 0.8 s in a debug build, 0.2 s in release.
const MAX_DOCUMENTS: usize = 300_000;
/// Kubernetes objects nest about 15 levels deep (managed fields are the deepest); deeper is not a
/// manifest, and recursion that deep would risk the stack.
const MAX_DEPTH: usize = 64;
/// Events replayed by aliases, and copied to remember anchors. Manifests rarely use anchors and
/// never heavily (serde-saphyr already refuses more than 10 aliases per anchor); a "billion
/// laughs" is refused within 100,000 in 0.4 s in a debug build, 40 ms in release (the default
/// 1,000,000 took 3 s and 180 MB).
const MAX_ALIAS_EVENTS: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{source_name}: not valid YAML: {message}")]
    Yaml { source_name: String, message: String },
    /// Valid YAML, maybe, but past a limit on what is read.
    #[error("{source_name}: refused: {limit}: {message}")]
    TooMuch { source_name: String, limit: String, message: String },
    #[error("{source_name}: document {index}: {message}")]
    Document { source_name: String, index: usize, message: String },
}

impl Inputs {
    pub fn new(namespace: &str) -> Inputs {
        Inputs { objects: ClusterObjects::new(namespace), ..Default::default() }
    }

    /// Adds every document of one YAML text; `source_name` is used in messages.
    pub fn add_yaml(&mut self, source_name: &str, text: &str) -> Result<(), ManifestError> {
        let docs: Vec<Value> =
            serde_saphyr::from_multiple_with_options(text, yaml_options()).map_err(|e| {
                let (source_name, message) = (source_name.to_string(), e.to_string());
                match limit_hit(&e) {
                    Some(limit) => ManifestError::TooMuch { source_name, limit, message },
                    None => ManifestError::Yaml { source_name, message },
                }
            })?;
        for (i, doc) in docs.into_iter().enumerate() {
            self.add_document(source_name, i + 1, doc)?;
        }
        Ok(())
    }

    fn add_document(&mut self, source_name: &str, index: usize, doc: Value) -> Result<(), ManifestError> {
        let bad = |message: String| ManifestError::Document {
            source_name: source_name.to_string(),
            index,
            message,
        };
        let obj = match doc {
            Value::Null => return Ok(()),
            Value::Object(map) => map,
            other => {
                return Err(bad(format!("expected a Kubernetes object, found {}", kind_of_value(&other))));
            }
        };
        if legacy::looks_legacy(&obj) {
            let n = legacy::convert(Value::Object(obj), &mut self.objects)
                .map_err(|e| bad(format!("legacy MetalLB configuration: {e}")))?;
            self.notes.push(format!(
                "{source_name}: document {index}: legacy MetalLB configuration converted into {n} objects"
            ));
            return Ok(());
        }
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("").to_string();
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("").to_string();
        if kind.is_empty() || api_version.is_empty() {
            return Err(bad("missing apiVersion or kind".into()));
        }
        let name =
            obj.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or("").to_string();
        let mut obj = obj;
        if api_version.starts_with(api::GROUP) && api::OPTIONAL_SPEC_KINDS.contains(&kind.as_str()) {
            // The same default the CRD gives the API server.
            obj.entry("spec").or_insert_with(|| Value::Object(Default::default()));
        }
        let doc = Value::Object(obj);
        let group = api_version.split_once('/').map_or("", |(g, _)| g);
        let o = &mut self.objects;
        let errs = &mut self.decode_errors;
        match (group, api_version.as_str(), kind.as_str()) {
            (_, _, "List") if api_version == "v1" => {
                let items = doc.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
                for item in items {
                    self.add_document(source_name, index, item)?;
                }
            }
            (api::GROUP, _, "IPAddressPool") => push(&mut o.pools, decode(doc, &kind, &name, errs)),
            (api::GROUP, _, "L2Advertisement") => {
                push(&mut o.l2_advertisements, decode(doc, &kind, &name, errs))
            }
            (api::GROUP, _, "BGPAdvertisement") => {
                push(&mut o.bgp_advertisements, decode(doc, &kind, &name, errs))
            }
            (api::GROUP, _, "BFDProfile") => push(&mut o.bfd_profiles, decode(doc, &kind, &name, errs)),
            (api::GROUP, _, "Community") => push(&mut o.communities, decode(doc, &kind, &name, errs)),
            (api::GROUP, "metallb.io/v1beta1", "BGPPeer") => {
                let old: Option<api::bgppeer::v1beta1::BGPPeer> = decode(doc, &kind, &name, errs);
                if let Some(old) = old {
                    let mut new = api::BGPPeer::new(&name, old.spec.upgrade());
                    new.metadata = old.metadata;
                    o.peers.push(new);
                }
            }
            (api::GROUP, _, "BGPPeer") => push(&mut o.peers, decode(doc, &kind, &name, errs)),
            (api::GROUP, _, "ServiceL2Status" | "ServiceBGPStatus" | "ConfigurationState") => {}
            ("", "v1", "ConfigMap") if name == "config" => {
                // MetalLB <= 0.12 read its whole configuration from this ConfigMap.
                let text = doc.pointer("/data/config").and_then(Value::as_str).unwrap_or("");
                let inner: Value = serde_saphyr::from_str(text)
                    .map_err(|e| bad(format!("ConfigMap config: data.config: {e}")))?;
                match inner {
                    Value::Object(map) if legacy::looks_legacy(&map) => {
                        self.add_document(source_name, index, Value::Object(map))?
                    }
                    _ => self.notes.push(format!(
                        "{source_name}: document {index}: ConfigMap config has no MetalLB configuration"
                    )),
                }
            }
            ("", "v1", "ConfigMap") if name == crate::bgp::extras::CONFIG_MAP => {
                let namespace = doc.pointer("/metadata/namespace").and_then(Value::as_str);
                match namespace {
                    Some(ns) if ns != self.objects.namespace => self.notes.push(format!(
                        "{source_name}: document {index}: skipped ConfigMap {ns}/{name}: bgpextras is read from namespace {}",
                        self.objects.namespace
                    )),
                    _ => {
                        let extras = doc.pointer(&format!("/data/{}", crate::bgp::extras::KEY));
                        self.bgp_extras = extras.and_then(Value::as_str).map(str::to_string);
                    }
                }
            }
            ("", "v1", "Service") => push(&mut self.services, decode(doc, &kind, &name, errs).map(Arc::new)),
            ("", "v1", "Namespace") => push(&mut o.namespaces, decode(doc, &kind, &name, errs)),
            ("", "v1", "Node") => push(&mut o.nodes, decode(doc, &kind, &name, errs)),
            ("", "v1", "Secret") => push(&mut o.secrets, decode::<Secret>(doc, &kind, &name, errs)),
            ("discovery.k8s.io", _, "EndpointSlice") => {
                let slice = decode::<EndpointSlice>(doc, &kind, &name, errs);
                push(&mut self.endpoint_slices, slice.map(|s| Arc::new(SliceEndpoints::of(&s))))
            }
            _ => self
                .notes
                .push(format!("{source_name}: document {index}: skipped {api_version} {kind} {name:?}")),
        }
        Ok(())
    }
}

/// serde-saphyr's default budget suits configuration files (1,024 documents, 250,000 nodes);
/// a dump of a cluster's Services holds more. Sizes scale to a file of [`MAX_MANIFEST_BYTES`],
/// alias expansion and nesting stay tight.
fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_documents: MAX_DOCUMENTS,
            max_nodes: MAX_NODES,
            // A scalar is one event, a list or map two (start, end), a document two.
            max_events: 3 * MAX_NODES,
            max_total_scalar_bytes: MAX_MANIFEST_BYTES,
            max_depth: MAX_DEPTH,
            max_recorded_anchor_events: MAX_ALIAS_EVENTS,
        },
    };
    options.alias_limits.max_total_replayed_events = MAX_ALIAS_EVENTS;
    options
}

/// Which limit on reading `e` reports, in the reader's words; None for a syntax error.
fn limit_hit(e: &serde_saphyr::Error) -> Option<String> {
    use serde_saphyr::Error as E;
    use serde_saphyr::budget::BudgetBreach as B;
    let mut e = e;
    while let E::WithSnippet { error, .. } | E::AliasError { error, .. } = e {
        e = error;
    }
    let aliases = || format!("aliases expand to more than {MAX_ALIAS_EVENTS} nodes (an alias bomb?)");
    Some(match e {
        E::Budget { breach, .. } => match breach {
            B::Depth { .. } => format!("nested more than {MAX_DEPTH} levels deep"),
            B::ScalarBytes { .. } => format!("more than {} MiB of text in values", MAX_MANIFEST_BYTES >> 20),
            B::Nodes { .. } | B::Events { .. } => format!("more than {MAX_NODES} nodes"),
            B::Documents { .. } => format!("more than {MAX_DOCUMENTS} documents"),
            B::Aliases { .. }
            | B::Anchors { .. }
            | B::AliasAnchorRatio { .. }
            | B::RecordedAnchorEvents { .. }
            | B::RecordedAnchorBytes { .. } => aliases(),
            other => format!("past a limit on reading ({other:?})"),
        },
        E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. }
        | E::AliasReplayCounterOverflow { .. } => aliases(),
        _ => return None,
    })
}

fn push<T>(list: &mut Vec<T>, item: Option<T>) {
    list.extend(item);
}

fn decode<T: DeserializeOwned>(
    doc: Value,
    kind: &str,
    name: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(doc) {
        Ok(v) => Some(v),
        Err(e) => {
            let path = e.path().to_string();
            errors.push(ConfigError {
                kind: kind.to_string(),
                name: name.to_string(),
                field: if path == "." { "(object)".into() } else { path },
                message: hint(e.into_inner().to_string()),
                transient: false,
            });
            None
        }
    }
}

/// YAML 1.1, which kubectl also follows, reads unquoted y/n/yes/no/on/off as booleans.
fn hint(message: String) -> String {
    if message.starts_with("invalid type: boolean") && message.contains("expected a string") {
        format!("{message} (quote the value: YAML reads unquoted y, n, yes, no, on and off as booleans)")
    } else {
        message
    }
}

fn kind_of_value(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
