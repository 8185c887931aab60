//! Which configuration objects get a Warning Event saying why the configuration is invalid:
//! each offending object once for a set of problems, and again only when that set changes, so a
//! controller deciding many times a second with a bad object present does not flood the API.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;

use crate::config::{ClusterObjects, ConfigError};

#[derive(Debug, Clone, PartialEq)]
pub struct ObjectWarning {
    pub object: ObjectReference,
    /// Every problem of that object, one per line.
    pub message: String,
}

/// What each key was last told: a warning is said once for a message, again only when the
/// message changes, and again after the key went away and came back.
#[derive(Debug)]
pub struct Said<K> {
    said: BTreeMap<K, String>,
}

impl<K: Ord> Default for Said<K> {
    fn default() -> Self {
        Said { said: BTreeMap::new() }
    }
}

impl<K: Ord + Clone> Said<K> {
    /// The (key, message) pairs of `now` that were not said before; forgets the keys `now`
    /// lacks.
    pub fn update(&mut self, now: impl IntoIterator<Item = (K, String)>) -> Vec<(K, String)> {
        let now: BTreeMap<K, String> = now.into_iter().collect();
        let out = now
            .iter()
            .filter(|(k, m)| self.said.get(*k) != Some(*m))
            .map(|(k, m)| (k.clone(), m.clone()))
            .collect();
        self.said = now;
        out
    }

    /// [`Said::update`] for the keys in `scope` alone (a pass that decided only those); what
    /// was said of the others stands.
    pub fn update_within(
        &mut self,
        scope: &std::collections::BTreeSet<K>,
        now: impl IntoIterator<Item = (K, String)>,
    ) -> Vec<(K, String)> {
        let (inside, outside): (BTreeMap<K, String>, BTreeMap<K, String>) =
            std::mem::take(&mut self.said).into_iter().partition(|(k, _)| scope.contains(k));
        self.said = inside;
        let out = self.update(now.into_iter().filter(|(k, _)| scope.contains(k)));
        self.said.extend(outside);
        out
    }
}

/// What each configuration object was last told, keyed (kind, name).
#[derive(Debug, Default)]
pub struct Warned {
    said: Said<(String, String)>,
}

impl Warned {
    /// The warnings to publish now for `errors`; forgets objects that are fine again, so a
    /// problem coming back is said again.
    pub fn update(&mut self, objects: &ClusterObjects, errors: &[ConfigError]) -> Vec<ObjectWarning> {
        let mut now: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for e in errors {
            now.entry((e.kind.clone(), e.name.clone()))
                .or_default()
                .push(format!("{}: {}", e.field, e.message));
        }
        self.said
            .update(now.into_iter().map(|(key, lines)| (key, lines.join("\n"))))
            .into_iter()
            .filter_map(|((kind, name), message)| {
                reference(objects, &kind, &name).map(|object| ObjectWarning { object, message })
            })
            .collect()
    }
}

/// The object a configuration error names, if it is in the cluster (an error may name an
/// object that exists only as a reference).
pub fn reference(objects: &ClusterObjects, kind: &str, name: &str) -> Option<ObjectReference> {
    fn find<K: Resource<DynamicType = ()>>(list: &[K], name: &str) -> Option<ObjectReference> {
        list.iter().find(|o| o.meta().name.as_deref() == Some(name)).map(|o| o.object_ref(&()))
    }
    match kind {
        "IPAddressPool" => find(&objects.pools, name),
        "L2Advertisement" => find(&objects.l2_advertisements, name),
        "BGPAdvertisement" => find(&objects.bgp_advertisements, name),
        "BGPPeer" => find(&objects.peers, name),
        "BFDProfile" => find(&objects.bfd_profiles, name),
        "Community" => find(&objects.communities, name),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_over_some_keys_keeps_what_was_said_of_the_others() {
        let mut said = Said::<String>::default();
        assert_eq!(said.update([("a".into(), "x".into()), ("b".into(), "y".into())]).len(), 2);
        let scope: std::collections::BTreeSet<String> = ["b".to_string()].into();
        // b is fine now; a, outside the pass, is not forgotten, so not said again later.
        assert!(said.update_within(&scope, []).is_empty());
        assert!(said.update([("a".into(), "x".into())]).is_empty());
        assert_eq!(
            said.update_within(&scope, [("b".into(), "y".into())]),
            [("b".to_string(), "y".to_string())]
        );
    }

    fn error(kind: &str, name: &str, message: &str) -> ConfigError {
        ConfigError {
            kind: kind.into(),
            name: name.into(),
            field: "spec.bfdProfile".into(),
            message: message.into(),
            transient: true,
        }
    }

    #[test]
    fn each_object_is_told_once_per_set_of_problems() {
        let mut i = crate::plan::Inputs::new("metallb-system");
        i.add_yaml(
            "t",
            "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: tor, namespace: metallb-system}\nspec: {myASN: 64500, peerASN: 64501, peerAddress: 192.0.2.254, bfdProfile: fast}\n",
        )
        .unwrap();
        let errors = crate::plan::plan(&i, &Default::default()).errors;
        assert_eq!(errors.len(), 1, "{errors:?}");
        let mut w = Warned::default();
        let first = w.update(&i.objects, &errors);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].object.kind.as_deref(), Some("BGPPeer"));
        assert_eq!(first[0].object.name.as_deref(), Some("tor"));
        assert!(first[0].message.contains("BFDProfile \"fast\" does not exist"), "{}", first[0].message);
        assert!(w.update(&i.objects, &errors).is_empty(), "said once");
        let other = [error("BGPPeer", "tor", "something else")];
        assert_eq!(w.update(&i.objects, &other).len(), 1, "a new problem is said");
        assert!(w.update(&i.objects, &[]).is_empty());
        assert_eq!(w.update(&i.objects, &other).len(), 1, "a problem coming back is said again");
        assert!(w.update(&i.objects, &[error("BGPPeer", "not-there", "x")]).is_empty());
    }
}
