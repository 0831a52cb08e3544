//! Schemas of the worker pod knobs: Kubernetes' own schema for each type, tightened with the
//! checks the API server makes on a Pod (enums, minimums, CEL), so a bad value is refused
//! when the PipelineDeployment is applied, naming its field, instead of failing later when
//! the operator applies the Deployment.
//!
//! Only schema keywords and cheap CEL rules over bounded lists are added: the API server
//! estimates every CEL rule's cost and refuses a CRD whose rules could run long on unbounded
//! lists.

use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Value, json};

/// Operators of a LabelSelectorRequirement.
const LABEL_OPERATORS: [&str; 4] = ["In", "NotIn", "Exists", "DoesNotExist"];
/// Operators of a NodeSelectorRequirement.
const NODE_OPERATORS: [&str; 6] = ["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"];
/// A Kubernetes label value (empty allowed).
const LABEL_VALUE: &str = "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$";
/// A label or annotation key, `[prefix/]name`, as a CEL rule on every key of `self`.
const QUALIFIED_KEYS: &str = "self.all(k, k.size() <= 317 && k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$'))";
/// A resource quantity (`500m`, `1Gi`, `2`), never negative.
const QUANTITY: &str = r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";

fn schema_of<T: JsonSchema>(g: &mut SchemaGenerator) -> Value {
    serde_json::to_value(g.subschema_for::<T>()).expect("a schema is JSON")
}

fn into_schema(v: Value) -> Schema {
    Schema::try_from(v).expect("an object schema")
}

/// The object at `path` (property names) under `v`; panics when the upstream schema changed
/// shape, which the unit tests and `crdgen` would show at once.
fn at<'a>(v: &'a mut Value, path: &[&str]) -> &'a mut Value {
    path.iter().fold(v, |cur, p| {
        cur.get_mut(*p)
            .unwrap_or_else(|| panic!("the upstream schema has no {p} in {path:?}"))
    })
}

fn rule(rule: &str, message: &str) -> Value {
    json!({"rule": rule, "message": message})
}

/// Adds the operator enums to every label and node selector under `v`, the 1–100 range to
/// preference weights, and a non-empty `topologyKey` to pod affinity terms.
fn tighten_selectors(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = map.get_mut("properties") {
                let node = props.contains_key("matchFields");
                if node || props.contains_key("matchLabels") {
                    let ops: &[&str] = if node {
                        &NODE_OPERATORS
                    } else {
                        &LABEL_OPERATORS
                    };
                    for list in ["matchExpressions", "matchFields"] {
                        if let Some(list) = props.get_mut(list) {
                            at(list, &["items", "properties", "operator"])["enum"] = json!(ops);
                        }
                    }
                }
                if let Some(weight) = props.get_mut("weight") {
                    weight["minimum"] = json!(1);
                    weight["maximum"] = json!(100);
                }
                if !props.contains_key("maxSkew")
                    && let Some(key) = props.get_mut("topologyKey")
                {
                    key["minLength"] = json!(1);
                }
            }
            map.values_mut().for_each(tighten_selectors);
        }
        Value::Array(items) => items.iter_mut().for_each(tighten_selectors),
        _ => {}
    }
}

/// A string map with label-value values (or any string), at most `max` entries, keys checked
/// by CEL: their syntax and `forbidden` (a CEL rule and its message), if any.
fn string_map(max: u32, label_values: bool, forbidden: Option<(&str, &str)>, what: &str) -> Schema {
    let mut values = json!({"type": "string"});
    if label_values {
        values["maxLength"] = json!(63);
        values["pattern"] = json!(LABEL_VALUE);
    }
    let mut rules = vec![rule(
        QUALIFIED_KEYS,
        &format!(
            "{what} keys must be Kubernetes label keys ([prefix/]name, name at most 63 characters)"
        ),
    )];
    if let Some((r, m)) = forbidden {
        rules.push(rule(r, m));
    }
    into_schema(json!({
        "type": "object",
        "maxProperties": max,
        "additionalProperties": values,
        "x-kubernetes-validations": rules,
    }))
}

pub fn resources(g: &mut SchemaGenerator) -> Schema {
    let mut s = schema_of::<ResourceRequirements>(g);
    for side in ["limits", "requests"] {
        let q = at(&mut s, &["properties", side, "additionalProperties"]);
        q["pattern"] = json!(QUANTITY);
    }
    into_schema(s)
}

pub fn image_pull_secrets(g: &mut SchemaGenerator) -> Schema {
    let mut s = schema_of::<Vec<LocalObjectReference>>(g);
    s["maxItems"] = json!(16);
    let item = at(&mut s, &["items"]);
    item["required"] = json!(["name"]);
    at(item, &["properties", "name"])["minLength"] = json!(1);
    into_schema(s)
}

pub fn node_selector(_: &mut SchemaGenerator) -> Schema {
    string_map(32, true, None, "spec.workers.nodeSelector")
}

pub fn pod_labels(_: &mut SchemaGenerator) -> Schema {
    string_map(
        32,
        true,
        Some((
            "self.all(k, !(k in ['app.kubernetes.io/name', 'app.kubernetes.io/instance', 'app.kubernetes.io/component', 'app.kubernetes.io/part-of', 'app.kubernetes.io/managed-by']) && !k.startsWith('sluice.dev/'))",
            "spec.workers.podLabels cannot set the operator's own labels (app.kubernetes.io/name, instance, component, part-of, managed-by; sluice.dev/*): the workers are selected by them",
        )),
        "spec.workers.podLabels",
    )
}

pub fn pod_annotations(_: &mut SchemaGenerator) -> Schema {
    string_map(
        64,
        false,
        Some((
            "self.all(k, !k.startsWith('sluice.dev/'))",
            "spec.workers.podAnnotations cannot set sluice.dev/* annotations (the operator's, e.g. the config hash that rolls the workers)",
        )),
        "spec.workers.podAnnotations",
    )
}

pub fn tolerations(g: &mut SchemaGenerator) -> Schema {
    let mut s = schema_of::<Vec<Toleration>>(g);
    s["maxItems"] = json!(64);
    let item = at(&mut s, &["items"]);
    let props = at(item, &["properties"]);
    props["operator"]["enum"] = json!(["", "Equal", "Exists", "Lt", "Gt"]);
    props["effect"]["enum"] = json!(["", "NoSchedule", "PreferNoSchedule", "NoExecute"]);
    item["x-kubernetes-validations"] = json!([
        rule(
            "(has(self.key) && self.key != '') || (has(self.operator) && self.operator == 'Exists')",
            "a toleration without a key must have operator Exists (it then tolerates every taint)",
        ),
        rule(
            "!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
            "a toleration with operator Exists matches any value: leave value empty",
        ),
        rule(
            "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
            "tolerationSeconds needs effect NoExecute",
        ),
    ]);
    into_schema(s)
}

pub fn affinity(g: &mut SchemaGenerator) -> Schema {
    let mut s = schema_of::<Affinity>(g);
    tighten_selectors(&mut s);
    into_schema(s)
}

pub fn topology_spread_constraints(g: &mut SchemaGenerator) -> Schema {
    let mut s = schema_of::<Vec<TopologySpreadConstraint>>(g);
    s["maxItems"] = json!(16);
    // The Pod's own list semantics: one constraint per (topologyKey, whenUnsatisfiable).
    s["x-kubernetes-list-type"] = json!("map");
    s["x-kubernetes-list-map-keys"] = json!(["topologyKey", "whenUnsatisfiable"]);
    let item = at(&mut s, &["items"]);
    let props = at(item, &["properties"]);
    props["maxSkew"]["minimum"] = json!(1);
    props["minDomains"]["minimum"] = json!(1);
    props["topologyKey"]["minLength"] = json!(1);
    props["whenUnsatisfiable"]["enum"] = json!(["DoNotSchedule", "ScheduleAnyway"]);
    props["nodeAffinityPolicy"]["enum"] = json!(["Honor", "Ignore"]);
    props["nodeTaintsPolicy"]["enum"] = json!(["Honor", "Ignore"]);
    item["x-kubernetes-validations"] = json!([rule(
        "!has(self.minDomains) || self.whenUnsatisfiable == 'DoNotSchedule'",
        "minDomains needs whenUnsatisfiable DoNotSchedule",
    )]);
    tighten_selectors(item);
    into_schema(s)
}
