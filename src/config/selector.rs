//! Label selectors, validated once and matched without allocation.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Requirement {
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed selector; equal selectors compare equal whatever order their values were written in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Selector {
    labels: BTreeMap<String, String>,
    requirements: BTreeSet<Requirement>,
}

impl Selector {
    pub fn parse(sel: &LabelSelector) -> Result<Selector, String> {
        let mut requirements = BTreeSet::new();
        for expr in sel.match_expressions.iter().flatten() {
            let mut values = BTreeSet::new();
            for v in expr.values.iter().flatten() {
                if !values.insert(v.clone()) {
                    return Err(format!("duplicate value {v:?} in the expression on {:?}", expr.key));
                }
            }
            let key = expr.key.clone();
            if key.is_empty() {
                return Err("a match expression has an empty key".into());
            }
            let req = match expr.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(format!("operator {} on {key:?} needs values", expr.operator));
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(format!("operator {} on {key:?} takes no values", expr.operator));
                }
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::DoesNotExist(key),
                other => {
                    return Err(format!(
                        "unknown operator {other:?} on {key:?} (In, NotIn, Exists, DoesNotExist)"
                    ));
                }
            };
            if !requirements.insert(req) {
                return Err(format!("duplicate match expression on {:?}", expr.key));
            }
        }
        Ok(Selector { labels: sel.match_labels.clone().unwrap_or_default(), requirements })
    }

    /// Parses a list of selectors, naming the index of the first bad or repeated one.
    pub fn parse_list(list: &[LabelSelector]) -> Result<Vec<Selector>, (usize, String)> {
        let mut out: Vec<Selector> = Vec::with_capacity(list.len());
        for (i, s) in list.iter().enumerate() {
            let parsed = Selector::parse(s).map_err(|e| (i, e))?;
            if let Some(j) = out.iter().position(|o| *o == parsed) {
                return Err((i, format!("duplicate of selector [{j}]")));
            }
            out.push(parsed);
        }
        Ok(out)
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.requirements.iter().all(|r| match r {
                Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
                Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
                Requirement::Exists(k) => labels.contains_key(k),
                Requirement::DoesNotExist(k) => !labels.contains_key(k),
            })
    }
}

/// Kubernetes' rule for selector lists on these kinds: empty selects everything, otherwise any
/// one matching selector is enough.
pub fn any_matches(selectors: &[Selector], labels: &Labels) -> bool {
    selectors.is_empty() || selectors.iter().any(|s| s.matches(labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|s| s.to_string()).collect()),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn matches_like_kubernetes() {
        let sel = Selector::parse(&LabelSelector {
            match_labels: Some(labels(&[("zone", "a")])),
            match_expressions: Some(vec![
                expr("tier", "In", &["web", "api"]),
                expr("canary", "DoesNotExist", &[]),
                expr("env", "NotIn", &["dev"]),
            ]),
        })
        .unwrap();
        assert!(sel.matches(&labels(&[("zone", "a"), ("tier", "web")])));
        assert!(!sel.matches(&labels(&[("zone", "a"), ("tier", "db")])));
        assert!(!sel.matches(&labels(&[("zone", "a"), ("tier", "web"), ("canary", "1")])));
        assert!(!sel.matches(&labels(&[("zone", "a"), ("tier", "web"), ("env", "dev")])));
        assert!(Selector::default().matches(&labels(&[])));
        assert!(any_matches(&[], &labels(&[])));
    }

    #[test]
    fn rejects_malformed_selectors() {
        let bad = [
            (expr("a", "Like", &["x"]), "unknown operator"),
            (expr("a", "In", &[]), "needs values"),
            (expr("a", "Exists", &["x"]), "takes no values"),
            (expr("a", "In", &["x", "x"]), "duplicate value"),
        ];
        for (e, want) in bad {
            let s = LabelSelector { match_expressions: Some(vec![e]), ..Default::default() };
            assert!(Selector::parse(&s).unwrap_err().contains(want));
        }
        let twice = LabelSelector {
            match_expressions: Some(vec![expr("a", "In", &["x", "y"]), expr("a", "In", &["y", "x"])]),
            ..Default::default()
        };
        assert!(Selector::parse(&twice).unwrap_err().contains("duplicate match expression"));
        let list = [
            LabelSelector {
                match_expressions: Some(vec![expr("a", "In", &["x", "y"])]),
                ..Default::default()
            },
            LabelSelector {
                match_expressions: Some(vec![expr("a", "In", &["y", "x"])]),
                ..Default::default()
            },
        ];
        assert_eq!(Selector::parse_list(&list).unwrap_err().0, 1);
    }
}
