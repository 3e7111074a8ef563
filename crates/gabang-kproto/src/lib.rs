//! Decodes Kubernetes protobuf bodies (`application/vnd.kubernetes.protobuf`, as
//! kubectl and client-go send for built-in kinds) into the JSON object the API
//! server already handles: the same field names, omissions and special forms
//! (times, quantities, int-or-string, base64 bytes) that Kubernetes' own JSON has.
//!
//! Start with [`decode`]: it strips the `k8s\0` magic, reads the `runtime.Unknown`
//! envelope ([`envelope`]), looks the kind up in the generated schema table
//! ([`schema`], written by `scripts/gen-kproto-schema.py` from the k8s-pb and
//! k8s-openapi crates) and walks the wire bytes with the decoder in `wire.rs` and
//! `decode.rs`. Special message types (Time, Quantity, …) are rendered in
//! `special.rs`. Errors name the JSON field path and the byte offset at fault;
//! nothing panics on input, recursion is bounded by [`MAX_DEPTH`].

mod decode;
mod envelope;
#[rustfmt::skip]
pub mod schema;
mod special;
pub mod table;
mod wire;

use serde_json::{Map, Value};

pub use envelope::{envelope, Envelope};

/// The 4 bytes every Kubernetes protobuf body starts with.
pub const MAGIC: &[u8; 4] = b"k8s\0";

/// Deepest nesting of messages accepted (Kubernetes kinds nest about 12 deep).
pub const MAX_DEPTH: usize = 64;

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("the protobuf body does not start with the Kubernetes magic bytes \"k8s\\x00\"")]
    NoMagic,
    #[error("{kind} in version \"{api_version}\" cannot be decoded from protobuf: this server has no protobuf schema for it (send application/json)")]
    UnknownKind { api_version: String, kind: String },
    #[error("the protobuf envelope has {what} {value:?}, which this server does not support (send application/json)")]
    Unsupported { what: &'static str, value: String },
    #[error("malformed protobuf {}at byte {offset}: {what}", if path.is_empty() { String::new() } else { format!("in {path} ") })]
    Malformed {
        /// JSON path of the field at fault ("spec.template.spec.containers[0].image").
        path: String,
        /// Byte offset in the whole body.
        offset: usize,
        what: String,
    },
}

impl Error {
    /// The HTTP status to answer with: 415 for kinds or encodings this server
    /// cannot decode, 400 for broken bodies.
    pub fn http_status(&self) -> u16 {
        match self {
            Error::UnknownKind { .. } | Error::Unsupported { .. } => 415,
            Error::NoMagic | Error::Malformed { .. } => 400,
        }
    }

    /// The Kubernetes `Status.reason` for [`Error::http_status`].
    pub fn reason(&self) -> &'static str {
        match self.http_status() {
            415 => "UnsupportedMediaType",
            _ => "BadRequest",
        }
    }
}

/// Whether a `Content-Type` header names Kubernetes protobuf.
pub fn is_protobuf(content_type: &str) -> bool {
    content_type.split(';').next().is_some_and(|m| {
        m.trim()
            .eq_ignore_ascii_case("application/vnd.kubernetes.protobuf")
    })
}

/// Decodes a whole body (magic + envelope + object) into a JSON object with
/// `apiVersion` and `kind` set from the envelope.
pub fn decode(body: &[u8]) -> Result<Value, Error> {
    let env = envelope(body)?;
    let mut obj = decode_object(&env.api_version, &env.kind, env.raw, env.raw_offset)?;
    obj.insert("apiVersion".into(), Value::String(env.api_version));
    obj.insert("kind".into(), Value::String(env.kind));
    Ok(Value::Object(obj))
}

/// The schema of a kind, if this crate can decode it.
pub fn message_for(api_version: &str, kind: &str) -> Option<&'static table::Message> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    schema::KINDS
        .iter()
        .find(|k| {
            k.kind == kind
                && (k.group == "*" || k.group == group)
                && (k.version == "*" || k.version == version)
        })
        .and_then(|k| schema::MESSAGES.get(usize::from(k.message)))
}

/// Decodes the message bytes of one object of a known kind (no magic, no
/// envelope). `offset` is where `raw` starts in the body, for error messages.
pub fn decode_object(
    api_version: &str,
    kind: &str,
    raw: &[u8],
    offset: usize,
) -> Result<Map<String, Value>, Error> {
    let msg = message_for(api_version, kind).ok_or_else(|| Error::UnknownKind {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
    })?;
    let mut out = Map::new();
    decode::message(msg, raw, offset, 0, &mut out).map_err(|e| e.into_error())?;
    Ok(out)
}

#[cfg(test)]
mod tests;
