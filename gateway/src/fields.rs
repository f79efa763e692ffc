//! Reading a client's JSON request field by field, so that every refusal names the field
//! (`messages[2].content[0].type`) and says why.
//!
//! A field whose value is `null` counts as absent, as both vendors treat it. A field the
//! front end does not know is refused (see the field tables in docs/gateway.md).

use arcllm::types::ToolDefinition;
use serde_json::{Map, Value};

use crate::errors::ApiError;

/// One JSON object of the request and where it is.
pub(crate) struct Fields<'a> {
    path: String,
    map: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    /// `value`, which must be an object, found at `path` (empty for the body itself).
    pub(crate) fn new(path: impl Into<String>, value: &'a Value) -> Result<Self, ApiError> {
        let path = path.into();
        match value {
            Value::Object(map) => Ok(Fields { path, map }),
            _ => Err(ApiError::invalid(format!("{} must be a JSON object", shown(&path)))),
        }
    }

    /// The path of field `key` of this object.
    pub(crate) fn path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Refuses any non-null field outside `known`.
    pub(crate) fn only(&self, known: &[&str]) -> Result<(), ApiError> {
        match self.map.iter().find(|(k, v)| !v.is_null() && !known.contains(&k.as_str())) {
            Some((key, _)) => Err(ApiError::invalid(format!(
                "unsupported field `{}`: arcllm serve does not translate it (see the gateway's field table)",
                self.path(key)
            ))),
            None => Ok(()),
        }
    }

    /// Field `key`, unless absent or null.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// A required field.
    pub(crate) fn required(&self, key: &str) -> Result<&'a Value, ApiError> {
        self.get(key).ok_or_else(|| ApiError::invalid(format!("missing field `{}`", self.path(key))))
    }

    fn wrong(&self, key: &str, what: &str) -> ApiError {
        ApiError::invalid(format!("`{}` must be {what}", self.path(key)))
    }

    /// An optional string.
    pub(crate) fn str(&self, key: &str) -> Result<Option<&'a str>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.wrong(key, "a string")),
        }
    }

    /// A required string.
    pub(crate) fn req_str(&self, key: &str) -> Result<&'a str, ApiError> {
        self.str(key)?.ok_or_else(|| ApiError::invalid(format!("missing field `{}`", self.path(key))))
    }

    /// An optional boolean.
    pub(crate) fn bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.wrong(key, "true or false")),
        }
    }

    /// An optional finite number.
    pub(crate) fn number(&self, key: &str) -> Result<Option<f64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => {
                v.as_f64().filter(|n| n.is_finite()).map(Some).ok_or_else(|| self.wrong(key, "a number"))
            }
        }
    }

    /// An optional positive integer that fits 32 bits.
    pub(crate) fn positive(&self, key: &str) -> Result<Option<u32>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .filter(|n| *n > 0)
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| self.wrong(key, "a positive integer")),
        }
    }

    /// An optional array.
    pub(crate) fn array(&self, key: &str) -> Result<Option<&'a Vec<Value>>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(_) => Err(self.wrong(key, "an array")),
        }
    }

    /// An optional object.
    pub(crate) fn object(&self, key: &str) -> Result<Option<Fields<'a>>, ApiError> {
        self.get(key).map(|v| Fields::new(self.path(key), v)).transpose()
    }

    /// A required object.
    pub(crate) fn req_object(&self, key: &str) -> Result<Fields<'a>, ApiError> {
        self.object(key)?.ok_or_else(|| ApiError::invalid(format!("missing field `{}`", self.path(key))))
    }

    /// An optional object kept as JSON (a schema, a tool call's input); `what` names it in
    /// the refusal of anything else.
    pub(crate) fn json_object(&self, key: &str, what: &str) -> Result<Option<Value>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(value @ Value::Object(_)) => Ok(Some(value.clone())),
            Some(_) => Err(self.wrong(key, what)),
        }
    }

    /// Each object of the optional array `key`, read by `item`.
    pub(crate) fn each<T>(
        &self,
        key: &str,
        mut item: impl FnMut(&Fields) -> Result<T, ApiError>,
    ) -> Result<Vec<T>, ApiError> {
        let items = self.array(key)?.into_iter().flatten().enumerate();
        items.map(|(i, value)| item(&Fields::new(format!("{}[{i}]", self.path(key)), value)?)).collect()
    }

    /// A tool definition: this object's `name` and `description`, and `schema` as its
    /// parameters' JSON Schema.
    pub(crate) fn tool_definition(&self, schema: Value) -> Result<ToolDefinition, ApiError> {
        Ok(ToolDefinition {
            name: self.req_str("name")?.to_string(),
            description: self.str("description")?.unwrap_or_default().to_string(),
            parameters: schema.to_string(),
        })
    }

    /// Optional stop sequences: one string or an array of strings.
    pub(crate) fn strings(&self, key: &str) -> Result<Vec<String>, ApiError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| self.wrong(key, "a string or an array of strings")),
            Some(_) => Err(self.wrong(key, "a string or an array of strings")),
        }
    }
}

fn shown(path: &str) -> String {
    if path.is_empty() {
        "the request body".into()
    } else {
        format!("`{path}`")
    }
}

/// Parses a request body as JSON.
pub(crate) fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("the request body is not valid JSON: {e}")))
}
