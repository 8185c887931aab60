//! `crds/` is generated from the Rust types. This test fails when they drift apart; with
//! `UPDATE_CRDS=1` it rewrites the files instead. It also lints every schema for the
//! structural rules the API server enforces, since no API server runs in this test.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

use ferrolb::api::all_crds;

fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural)
}

#[test]
fn crd_files_match_the_types() {
    let dir = crate::repo_root().join("crds");
    let update = std::env::var_os("UPDATE_CRDS").is_some();
    let mut expected_files = Vec::new();
    for crd in all_crds() {
        let name = file_name(&crd);
        let path = dir.join(&name);
        let generated = serde_saphyr::to_string(&crd).expect("CRD serialises");
        expected_files.push(name.clone());
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &generated).unwrap();
            // The chart ships the same files (tests/integration/chart.rs checks they match).
            std::fs::write(crate::repo_root().join("charts/ferrolb/crds").join(&name), &generated).unwrap();
            continue;
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("{}: {e}; run UPDATE_CRDS=1 cargo test --test integration crds", path.display())
        });
        // Compare meaning, not bytes: YAML emitters differ in folding and quoting.
        let disk: Value = serde_saphyr::from_str(&on_disk).expect("checked-in CRD parses");
        let want = serde_json::to_value(&crd).unwrap();
        assert!(disk == want, "{name} is stale; run UPDATE_CRDS=1 cargo test --test integration crds");
    }
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    present.sort();
    expected_files.sort();
    assert_eq!(present, expected_files, "crds/ holds files no type generates");
}

/// Kubernetes structural schema rules that matter for derived schemas.
fn lint(schema: &Value, path: &str, in_junctor: bool, problems: &mut Vec<String>) {
    let Some(obj) = schema.as_object() else { return };
    for key in ["$ref", "$defs", "definitions"] {
        if obj.contains_key(key) {
            problems.push(format!("{path}: {key} is not allowed"));
        }
    }
    if in_junctor {
        for key in ["title", "type", "description", "default", "nullable", "additionalProperties"] {
            if obj.contains_key(key) {
                problems.push(format!("{path}: {key} inside oneOf/anyOf/allOf/not"));
            }
        }
    } else if !obj.contains_key("type")
        && !obj.contains_key("x-kubernetes-int-or-string")
        && !obj.contains_key("x-kubernetes-preserve-unknown-fields")
    {
        problems.push(format!("{path}: no type"));
    }
    if let Some(values) = obj.get("enum").and_then(Value::as_array)
        && values.iter().any(Value::is_null)
    {
        problems.push(format!("{path}: null listed as an enum value"));
    }
    for (key, child) in obj {
        match key.as_str() {
            "properties" | "patternProperties" => {
                for (name, sub) in child.as_object().into_iter().flatten() {
                    lint(sub, &format!("{path}.{name}"), in_junctor, problems);
                }
            }
            "items" | "additionalProperties" | "not" => {
                lint(child, &format!("{path}[{key}]"), in_junctor || key == "not", problems)
            }
            "oneOf" | "anyOf" | "allOf" => {
                for (i, sub) in child.as_array().into_iter().flatten().enumerate() {
                    lint(sub, &format!("{path}.{key}[{i}]"), true, problems);
                }
            }
            _ => {}
        }
    }
}

#[test]
fn every_schema_is_structural() {
    let mut problems = Vec::new();
    for crd in all_crds() {
        for v in &crd.spec.versions {
            let schema = v.schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref()).expect("schema");
            let json = serde_json::to_value(schema).unwrap();
            lint(&json, &format!("{}/{}", crd.spec.names.kind, v.name), false, &mut problems);
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_lint_catches_what_it_is_for() {
    let bad = serde_json::json!({
        "type": "object",
        "properties": {
            "a": {"oneOf": [{"type": "string", "title": "x"}]},
            "b": {"description": "no type"},
            "c": {"type": "string", "enum": ["x", null]}
        }
    });
    let mut problems = Vec::new();
    lint(&bad, "t", false, &mut problems);
    // a: oneOf node without its own type, title and type inside the branch; b: no type;
    // c: null as an enum value.
    assert_eq!(problems.len(), 5, "{problems:#?}");
}

#[test]
fn bgppeer_serves_both_versions_and_stores_v1beta2() {
    let crd = all_crds().into_iter().find(|c| c.spec.names.kind == "BGPPeer").unwrap();
    let mut versions: Vec<(String, bool, bool)> =
        crd.spec.versions.iter().map(|v| (v.name.clone(), v.served, v.storage)).collect();
    versions.sort();
    assert_eq!(versions, [("v1beta1".into(), true, false), ("v1beta2".into(), true, true)]);
    let kinds: Vec<String> = all_crds().iter().map(|c| c.spec.names.kind.clone()).collect();
    assert_eq!(kinds.len(), 9, "{kinds:?}");
    assert!(all_crds().iter().all(|c| c.spec.group == "metallb.io" && c.spec.scope == "Namespaced"));
}

#[test]
fn kinds_documented_without_spec_do_not_require_one() {
    for crd in all_crds() {
        let kind = crd.spec.names.kind.clone();
        for v in &crd.spec.versions {
            let root = v.schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref()).unwrap();
            let requires_spec = root.required.iter().flatten().any(|r| r == "spec");
            let must = matches!(kind.as_str(), "IPAddressPool" | "BGPPeer");
            assert_eq!(requires_spec, must, "{kind}/{}", v.name);
            if !must {
                let spec = &root.properties.as_ref().unwrap()["spec"];
                assert_eq!(spec.default.as_ref().map(|d| d.0.clone()), Some(serde_json::json!({})), "{kind}");
            }
        }
    }
}
