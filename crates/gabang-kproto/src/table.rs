//! The shape of the generated schema table (`schema.rs`): messages, their fields
//! by tag, and the kinds that can be decoded.

/// What a field holds on the wire and how it is rendered in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    /// `string`: a JSON string (must be UTF-8).
    Str,
    /// `bytes`: a base64 JSON string, as Kubernetes' JSON writes `[]byte`.
    Bytes,
    Bool,
    I32,
    /// `int64`: a JSON number.
    I64,
    /// `double`: a JSON number (NaN and infinities are refused).
    F64,
    /// A nested message: the index in [`crate::schema::MESSAGES`].
    Msg(u16),
    /// meta/v1 Time {seconds, nanos}: RFC 3339 with whole seconds.
    Time,
    /// meta/v1 MicroTime {seconds, nanos}: RFC 3339 with microseconds.
    MicroTime,
    /// meta/v1 Duration {duration (ns)}: Go's duration string ("1h2m3s").
    Duration,
    /// resource.Quantity {string}: the string.
    Quantity,
    /// intstr.IntOrString {type, intVal, strVal}: a number or a string.
    IntOrString,
    /// runtime.RawExtension / meta/v1 FieldsV1 {raw}: raw JSON bytes, embedded.
    RawJson,
}

/// How many values a field holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Card {
    /// One value (proto2 `optional`): absent when not on the wire.
    One,
    /// `repeated`: a JSON array.
    List,
    /// `map<string, T>`: a JSON object.
    Map,
    /// A message Go embeds with `json:",inline"`: its fields go into the parent.
    Inline,
}

/// One field of a message.
#[derive(Debug)]
pub struct Field {
    pub tag: u32,
    /// The JSON name ("podIP"); empty for [`Card::Inline`].
    pub json: &'static str,
    pub ty: Ty,
    pub card: Card,
    /// Go `omitempty` on a non-pointer field: the zero value ("", 0, false) is
    /// "unset" and left out of the JSON, as Kubernetes' JSON leaves it out.
    pub omit_empty: bool,
}

/// One message, fields sorted by tag.
#[derive(Debug)]
pub struct Message {
    /// "core.v1.PodSpec" (for error messages).
    pub name: &'static str,
    pub fields: &'static [Field],
}

impl Message {
    pub fn field(&self, tag: u32) -> Option<&'static Field> {
        self.fields
            .binary_search_by_key(&tag, |f| f.tag)
            .ok()
            .map(|i| &self.fields[i])
    }
}

/// A top-level kind that can arrive in an envelope.
#[derive(Debug)]
pub struct Kind {
    /// API group ("" for core; "*": any).
    pub group: &'static str,
    /// Version ("*": any).
    pub version: &'static str,
    pub kind: &'static str,
    /// Index in [`crate::schema::MESSAGES`].
    pub message: u16,
}
