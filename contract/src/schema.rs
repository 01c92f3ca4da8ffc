//! The JSON Schemas of the contract, generated from its types and checked in under docs/contract/ (a test fails
//! when they differ), for implementations in other languages to validate against.

use schemars::{schema_for, Schema};
use serde_json::{Map, Value};

use crate::{
    commands::{CommandLine, Request, Response},
    config::PeerConfig,
    events::EventLine,
    participant::{GatewayConfig, ParticipantLine},
};

/// The schemas by file name under docs/contract/.
pub fn all() -> [(&'static str, Schema); 7] {
    [
        ("config.schema.json", schema_for!(PeerConfig)),
        ("commands.schema.json", schema_for!(CommandLine)),
        ("events.schema.json", events()),
        ("request.schema.json", schema_for!(Request)),
        ("response.schema.json", schema_for!(Response)),
        ("gateway-config.schema.json", schema_for!(GatewayConfig)),
        ("participant-events.schema.json", participant_events()),
    ]
}

/// The schema of a non-peer participant's line.
pub fn participant_events() -> Schema {
    schema_for!(ParticipantLine)
}

/// The schema of an event line, for readers that validate peers' output.
pub fn events() -> Schema {
    schema_for!(EventLine)
}

/// A schema as checked in: pretty JSON with a final newline.
pub fn render(schema: &Schema) -> String {
    let mut text = serde_json::to_string_pretty(schema).expect("a schema is JSON");
    text.push('\n');
    text
}

/// The fields of `value` that `schema` does not name, as paths (`gossipsub.dd`), for readers that ignore unknown
/// fields but want to say so. For a tagged line (an event, a command) the fields are the envelope's and those of
/// the variant whose tag matches.
pub fn unknown_fields(schema: &Schema, value: &serde_json::Value) -> Vec<String> {
    let root = schema.as_value();
    let mut unknown = Vec::new();
    walk(root, root, value, "", &mut unknown);
    unknown
}

fn walk(root: &Value, schema: &Value, value: &Value, path: &str, unknown: &mut Vec<String>) {
    let Value::Object(fields) = value else { return };
    let schema = resolve(root, schema);
    if schema.get("properties").is_none() && schema.get("oneOf").is_none() {
        return; // a map (`versions`): any key is a value, not a field
    }
    // The envelope's properties, and those of the one variant (of `oneOf`) whose `const` fields match.
    let mut known: Vec<&Map<String, Value>> = schema.get("properties").and_then(Value::as_object).into_iter().collect();
    if let Some(variants) = schema.get("oneOf").and_then(Value::as_array) {
        let matching = variants.iter().map(|v| resolve(root, v)).find(|v| {
            v.get("properties").and_then(Value::as_object).is_some_and(|props| {
                props.iter().all(|(name, p)| match p.get("const") {
                    Some(c) => fields.get(name) == Some(c),
                    None => true,
                })
            })
        });
        known.extend(matching.and_then(|v| v.get("properties")).and_then(Value::as_object));
    }
    for (name, field) in fields {
        let full = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
        match known.iter().find_map(|props| props.get(name)) {
            Some(sub) => walk(root, sub, field, &full, unknown),
            None => unknown.push(full),
        }
    }
}

/// Follows a local `$ref` (`#/$defs/Offer`), also through `anyOf` of one object and null (an `Option`).
fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    if let Some(name) = schema.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/$defs/")) {
        if let Some(def) = root.get("$defs").and_then(|d| d.get(name)) {
            return resolve(root, def);
        }
    }
    if let Some(alts) = schema.get("anyOf").and_then(Value::as_array) {
        if let Some(object) = alts.iter().find(|a| a.get("$ref").is_some() || a.get("properties").is_some()) {
            return resolve(root, object);
        }
    }
    schema
}
