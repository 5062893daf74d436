//! JSON Schemas generated from the Rust types (checked in under `events/schemas/`, with a
//! drift test) and the Arrow schema of each event for the warehouse, derived from the same
//! JSON Schema so the two can never disagree.

use std::path::Path;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};
use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::event::json_schemas;

/// The JSON Schema (draft 2020-12) of one event payload type.
pub fn json_schema_of<T: JsonSchema>(event_type: &str) -> Value {
    let schema = SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<T>();
    let mut value = serde_json::to_value(&schema).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.insert(
            "$id".into(),
            json!(format!("https://shopstream.dev/schemas/{event_type}.json")),
        );
        map.insert("x-cloudevents-type".into(), json!(event_type));
    }
    value
}

/// File name of an event type's schema, e.g. `order.placed.v1.json`.
pub fn schema_file_name(event_type: &str) -> String {
    format!("{event_type}.json")
}

/// Every schema file as (file name, pretty JSON with a trailing newline).
pub fn schema_files() -> Vec<(String, String)> {
    json_schemas()
        .into_iter()
        .map(|(t, v)| {
            let text = serde_json::to_string_pretty(&v).unwrap_or_default() + "\n";
            (schema_file_name(t), text)
        })
        .collect()
}

/// A difference between the checked-in schemas and the Rust types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaDrift {
    Missing(String),
    Changed(String),
    Stale(String),
}

/// Compares a schema directory with the generated schemas.
pub fn check_schema_dir(dir: &Path) -> std::io::Result<Vec<SchemaDrift>> {
    let files = schema_files();
    let mut drift = Vec::new();
    for (name, text) in &files {
        match std::fs::read_to_string(dir.join(name)) {
            Ok(on_disk) if &on_disk == text => {}
            Ok(_) => drift.push(SchemaDrift::Changed(name.clone())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                drift.push(SchemaDrift::Missing(name.clone()))
            }
            Err(e) => return Err(e),
        }
    }
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") && !files.iter().any(|(n, _)| *n == name) {
            drift.push(SchemaDrift::Stale(name));
        }
    }
    Ok(drift)
}

/// Writes every schema file into `dir` and removes stale ones; returns the files written.
pub fn write_schema_dir(dir: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    for drift in check_schema_dir(dir)? {
        if let SchemaDrift::Stale(name) = drift {
            std::fs::remove_file(dir.join(name))?;
        }
    }
    let files = schema_files();
    for (name, text) in &files {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(files.len())
}

/// A JSON Schema construct the Arrow mapping does not support.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot map {path} to Arrow: {reason}")]
pub struct ArrowMappingError {
    pub path: String,
    pub reason: String,
}

/// Envelope columns that lead every event table.
pub fn envelope_fields() -> Vec<Field> {
    vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("event_source", DataType::Utf8, false),
        Field::new("event_time", timestamp(), false),
        Field::new("event_subject", DataType::Utf8, true),
    ]
}

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The Arrow schema of an event type's warehouse table: envelope columns, then payload fields.
pub fn arrow_schema_for(event_type: &str) -> Result<Schema, ArrowMappingError> {
    let (_, json) = json_schemas()
        .into_iter()
        .find(|(t, _)| *t == event_type)
        .ok_or_else(|| ArrowMappingError {
            path: event_type.to_owned(),
            reason: "unknown event type".into(),
        })?;
    arrow_schema_from_json(event_type, &json)
}

/// Maps a payload JSON Schema to an Arrow schema with the envelope columns first.
pub fn arrow_schema_from_json(event_type: &str, json: &Value) -> Result<Schema, ArrowMappingError> {
    let empty = Map::new();
    let defs = json
        .get("$defs")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mapper = Mapper { defs };
    let DataType::Struct(payload) = mapper.data_type(event_type, json)?.0 else {
        return Err(ArrowMappingError {
            path: event_type.to_owned(),
            reason: "payload is not an object".into(),
        });
    };
    let mut fields = envelope_fields();
    fields.extend(payload.iter().map(|f| f.as_ref().clone()));
    Ok(Schema::new(fields))
}

struct Mapper<'a> {
    defs: &'a Map<String, Value>,
}

impl Mapper<'_> {
    fn err(path: &str, reason: impl Into<String>) -> ArrowMappingError {
        ArrowMappingError {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }

    /// (type, nullable) of a schema node.
    fn data_type(&self, path: &str, s: &Value) -> Result<(DataType, bool), ArrowMappingError> {
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            let name = r
                .strip_prefix("#/$defs/")
                .ok_or_else(|| Self::err(path, format!("unsupported $ref {r}")))?;
            let def = self
                .defs
                .get(name)
                .ok_or_else(|| Self::err(path, format!("missing definition {name}")))?;
            return self.data_type(path, def);
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(variants) = s.get(key).and_then(Value::as_array) {
                let non_null: Vec<&Value> = variants
                    .iter()
                    .filter(|v| v.get("type").and_then(Value::as_str) != Some("null"))
                    .collect();
                let nullable = non_null.len() < variants.len();
                if let [single] = non_null.as_slice() {
                    let (dt, n) = self.data_type(path, single)?;
                    return Ok((dt, n || nullable));
                }
                if non_null
                    .iter()
                    .all(|v| v.get("const").is_some() || v.get("enum").is_some())
                {
                    return Ok((DataType::Utf8, nullable));
                }
                return Err(Self::err(path, format!("{key} of several non-null shapes")));
            }
        }
        if s.get("enum").is_some() || s.get("const").is_some() {
            let nullable = s
                .get("enum")
                .and_then(Value::as_array)
                .is_some_and(|e| e.iter().any(Value::is_null));
            return Ok((DataType::Utf8, nullable));
        }
        let (ty, nullable) = match s.get("type") {
            Some(Value::String(t)) => (t.as_str(), false),
            Some(Value::Array(ts)) => {
                let non_null: Vec<&str> = ts
                    .iter()
                    .filter_map(Value::as_str)
                    .filter(|t| *t != "null")
                    .collect();
                match non_null.as_slice() {
                    [t] => (*t, non_null.len() < ts.len()),
                    _ => return Err(Self::err(path, "a union of several types")),
                }
            }
            _ => return Err(Self::err(path, "no type")),
        };
        let format = s.get("format").and_then(Value::as_str);
        let dt = match (ty, format) {
            ("string", Some("date-time")) => timestamp(),
            ("string", _) => DataType::Utf8,
            ("boolean", _) => DataType::Boolean,
            ("number", _) => DataType::Float64,
            ("integer", Some("int8")) => DataType::Int8,
            ("integer", Some("int16")) => DataType::Int16,
            ("integer", Some("int32")) => DataType::Int32,
            ("integer", Some("uint8")) => DataType::UInt8,
            ("integer", Some("uint16")) => DataType::UInt16,
            ("integer", Some("uint32")) => DataType::UInt32,
            ("integer", Some("uint64")) => DataType::UInt64,
            ("integer", _) => DataType::Int64,
            ("array", _) => {
                let items = s
                    .get("items")
                    .ok_or_else(|| Self::err(path, "array without items"))?;
                let (item, n) = self.data_type(&format!("{path}[]"), items)?;
                DataType::List(Arc::new(Field::new("item", item, n)))
            }
            ("object", _) => {
                let props = s
                    .get("properties")
                    .and_then(Value::as_object)
                    .ok_or_else(|| Self::err(path, "object without properties (a free map)"))?;
                let required: Vec<&str> = s
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let mut fields = Vec::with_capacity(props.len());
                for (name, prop) in props {
                    let (dt, n) = self.data_type(&format!("{path}.{name}"), prop)?;
                    fields.push(Field::new(
                        name,
                        dt,
                        n || !required.contains(&name.as_str()),
                    ));
                }
                DataType::Struct(Fields::from(fields))
            }
            (other, _) => return Err(Self::err(path, format!("unsupported type {other}"))),
        };
        Ok((dt, nullable))
    }
}
