//! Kubernetes `Status` errors: every failure the API answers with.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{json, Value};

/// A failed API call, rendered as a `meta/v1 Status` object.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", m)
    }
    pub fn not_found(group: &str, plural: &str, name: &str) -> Self {
        let res = qualified(plural, group);
        let mut e = Self::new(404, "NotFound", format!("{res} \"{name}\" not found"));
        e.details = Some(json!({"name": name, "group": group, "kind": plural}));
        e
    }
    pub fn already_exists(group: &str, plural: &str, name: &str) -> Self {
        let res = qualified(plural, group);
        let mut e = Self::new(
            409,
            "AlreadyExists",
            format!("{res} \"{name}\" already exists"),
        );
        e.details = Some(json!({"name": name, "group": group, "kind": plural}));
        e
    }
    pub fn conflict(group: &str, plural: &str, name: &str) -> Self {
        let res = qualified(plural, group);
        let mut e = Self::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {res} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"),
        );
        e.details = Some(json!({"name": name, "group": group, "kind": plural}));
        e
    }
    pub fn gone(m: impl Into<String>) -> Self {
        Self::new(410, "Expired", m)
    }
    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(500, "InternalError", m)
    }
    /// 422 with one cause per (field, message).
    pub fn invalid(kind: &str, group: &str, name: &str, causes: &[(String, String)]) -> Self {
        let kq = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let msgs: Vec<String> = causes.iter().map(|(f, m)| format!("{f}: {m}")).collect();
        let msg = if msgs.len() == 1 {
            msgs[0].clone()
        } else {
            format!("[{}]", msgs.join(", "))
        };
        let mut e = Self::new(422, "Invalid", format!("{kq} \"{name}\" is invalid: {msg}"));
        e.details = Some(json!({
            "name": name, "group": group, "kind": kind,
            "causes": causes.iter().map(|(f, m)| json!({"reason": "FieldValueInvalid", "message": m, "field": f})).collect::<Vec<_>>(),
        }));
        e
    }
    pub fn to_status(&self) -> Value {
        let mut v = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.message, "reason": self.reason, "code": self.code,
        });
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }
}

fn qualified(plural: &str, group: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

impl From<gabang_store::StoreError> for ApiError {
    fn from(e: gabang_store::StoreError) -> Self {
        use gabang_store::StoreError as S;
        match e {
            S::Compacted { .. } => ApiError::gone(format!("too old resource version: {e}")),
            S::TooLarge { .. } => ApiError::new(413, "RequestEntityTooLarge", e.to_string()),
            S::FutureRevision { .. } => {
                ApiError::new(504, "Timeout", format!("Too large resource version: {e}"))
            }
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.to_status()).unwrap_or_default();
        (
            code,
            [(http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    }
}
