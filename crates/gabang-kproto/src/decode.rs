//! Walks a message's wire bytes with its schema table entry and builds the JSON
//! object Kubernetes' JSON encoding would produce for the same Go struct.

use base64::Engine;
use serde_json::{Map, Value};

use crate::schema::MESSAGES;
use crate::special;
use crate::table::{Card, Field, Message, Ty};
use crate::wire::{wire_name, Bad, Reader, Res, FIXED64, LEN, VARINT};
use crate::MAX_DEPTH;

/// Decodes `buf` (a `msg`, starting at body offset `base`) into `out`, merging
/// with what is there: a message field that appears twice is merged, as in
/// protobuf.
pub fn message(
    msg: &Message,
    buf: &[u8],
    base: usize,
    depth: usize,
    out: &mut Map<String, Value>,
) -> Res<()> {
    if depth > MAX_DEPTH {
        return Err(Bad::new(
            base,
            format!("messages nest deeper than {MAX_DEPTH} levels"),
        ));
    }
    let mut r = Reader::new(buf, base);
    while !r.done() {
        let at = r.offset();
        let (tag, wt) = r.key()?;
        let Some(f) = msg.field(tag) else {
            r.skip(wt)?;
            continue;
        };
        field(f, wt, at, &mut r, depth, out).map_err(|e| match f.card {
            Card::Inline => e,
            Card::List => {
                let n = out
                    .get(f.json)
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                e.within(format!("[{n}]")).within(f.json.to_string())
            }
            _ => e.within(f.json.to_string()),
        })?;
    }
    Ok(())
}

/// The wire type a value of `ty` is written with.
fn wire_of(ty: Ty) -> u8 {
    match ty {
        Ty::Bool | Ty::I32 | Ty::I64 => VARINT,
        Ty::F64 => FIXED64,
        _ => LEN,
    }
}

fn sub(ty: Ty) -> Option<&'static Message> {
    match ty {
        Ty::Msg(i) => MESSAGES.get(usize::from(i)),
        _ => None,
    }
}

fn field(
    f: &Field,
    wt: u8,
    at: usize,
    r: &mut Reader,
    depth: usize,
    out: &mut Map<String, Value>,
) -> Res<()> {
    let expect = if f.card == Card::Map {
        LEN
    } else {
        wire_of(f.ty)
    };
    // Repeated numbers may come packed (one length-delimited run).
    let packed = f.card == Card::List && expect != LEN && wt == LEN;
    if wt != expect && !packed {
        return Err(Bad::new(
            at,
            format!(
                "wire type {} where {} was expected",
                wire_name(wt),
                wire_name(expect)
            ),
        ));
    }
    match f.card {
        Card::Inline => {
            let m = sub(f.ty).ok_or_else(|| Bad::new(at, "inline field is not a message"))?;
            let (b, off) = r.bytes()?;
            message(m, b, off, depth + 1, out)
        }
        Card::One => {
            if let Some(m) = sub(f.ty) {
                let (b, off) = r.bytes()?;
                let slot = out
                    .entry(f.json)
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Value::Object(o) = slot {
                    message(m, b, off, depth + 1, o)?;
                }
                return Ok(());
            }
            let v = value(f.ty, r)?;
            let zero = match &v {
                Value::String(s) => s.is_empty(),
                Value::Bool(b) => !b,
                Value::Number(n) => n.as_f64() == Some(0.0),
                _ => false,
            };
            // Special types (Quantity "0", IntOrString 0) are never omitted.
            let plain = matches!(
                f.ty,
                Ty::Str | Ty::Bytes | Ty::Bool | Ty::I32 | Ty::I64 | Ty::F64
            );
            if zero && plain && f.omit_empty {
                out.remove(f.json);
            } else {
                out.insert(f.json.to_string(), v);
            }
            Ok(())
        }
        Card::List => {
            let mut items = Vec::new();
            if packed {
                let (b, off) = r.bytes()?;
                let mut pr = Reader::new(b, off);
                while !pr.done() {
                    items.push(value(f.ty, &mut pr)?);
                }
            } else if let Some(m) = sub(f.ty) {
                let (b, off) = r.bytes()?;
                let mut o = Map::new();
                message(m, b, off, depth + 1, &mut o)?;
                items.push(Value::Object(o));
            } else {
                items.push(value(f.ty, r)?);
            }
            let slot = out
                .entry(f.json)
                .or_insert_with(|| Value::Array(Vec::new()));
            if !slot.is_array() {
                *slot = Value::Array(Vec::new());
            }
            if let Value::Array(a) = slot {
                a.extend(items);
            }
            Ok(())
        }
        Card::Map => {
            let (b, off) = r.bytes()?;
            let (k, v) = map_entry(f.ty, b, off, depth)?;
            let slot = out
                .entry(f.json)
                .or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            if let Value::Object(o) = slot {
                o.insert(k, v);
            }
            Ok(())
        }
    }
}

/// A map entry message {key = 1 (string), value = 2}; missing parts are empty.
fn map_entry(ty: Ty, buf: &[u8], base: usize, depth: usize) -> Res<(String, Value)> {
    let mut r = Reader::new(buf, base);
    let mut key = String::new();
    let mut val: Option<Value> = None;
    while !r.done() {
        let at = r.offset();
        let (tag, wt) = r.key()?;
        match tag {
            1 => {
                if wt != LEN {
                    return Err(Bad::new(
                        at,
                        format!("map key has wire type {}", wire_name(wt)),
                    ));
                }
                let (b, off) = r.bytes()?;
                key = utf8(b, off)?;
            }
            2 => {
                let expect = wire_of(ty);
                if wt != expect {
                    return Err(Bad::new(
                        at,
                        format!(
                            "map value has wire type {}, expected {}",
                            wire_name(wt),
                            wire_name(expect)
                        ),
                    )
                    .within(format!("[{key:?}]")));
                }
                let v = if let Some(m) = sub(ty) {
                    let (b, off) = r.bytes()?;
                    let mut o = match val.take() {
                        Some(Value::Object(o)) => o,
                        _ => Map::new(),
                    };
                    message(m, b, off, depth + 1, &mut o)
                        .map_err(|e| e.within(format!("[{key:?}]")))?;
                    Value::Object(o)
                } else {
                    value(ty, &mut r).map_err(|e| e.within(format!("[{key:?}]")))?
                };
                val = Some(v);
            }
            _ => r.skip(wt)?,
        }
    }
    let val = match val {
        Some(v) => v,
        None => empty(ty),
    };
    Ok((key, val))
}

/// The JSON of a value that is absent from a map entry.
fn empty(ty: Ty) -> Value {
    match ty {
        Ty::Str | Ty::Bytes => Value::String(String::new()),
        Ty::Bool => Value::Bool(false),
        Ty::I32 | Ty::I64 | Ty::F64 => Value::from(0),
        Ty::Msg(_) => Value::Object(Map::new()),
        Ty::Quantity => Value::String("0".into()),
        Ty::IntOrString => Value::from(0),
        Ty::Duration => Value::String("0s".into()),
        Ty::Time | Ty::MicroTime | Ty::RawJson => Value::Null,
    }
}

fn utf8(b: &[u8], at: usize) -> Res<String> {
    String::from_utf8(b.to_vec()).map_err(|e| {
        Bad::new(
            at + e.utf8_error().valid_up_to(),
            "string is not valid UTF-8",
        )
    })
}

/// Reads one non-message value of `ty` (wire type already checked).
fn value(ty: Ty, r: &mut Reader) -> Res<Value> {
    let at = r.offset();
    Ok(match ty {
        Ty::Str => {
            let (b, off) = r.bytes()?;
            Value::String(utf8(b, off)?)
        }
        Ty::Bytes => {
            let (b, _) = r.bytes()?;
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        Ty::Bool => Value::Bool(r.varint()? != 0),
        // int32 is sign-extended to 64 bits on the wire; keep the low 32.
        Ty::I32 => Value::from(r.varint()? as u32 as i32),
        Ty::I64 => Value::from(r.varint()? as i64),
        Ty::F64 => {
            let f = f64::from_le_bytes(r.fixed::<8>()?);
            serde_json::Number::from_f64(f)
                .map(Value::Number)
                .ok_or_else(|| Bad::new(at, format!("{f} is not a JSON number")))?
        }
        Ty::Msg(_) => return Err(Bad::new(at, "a message where a scalar was expected")),
        special_ty => {
            let (b, off) = r.bytes()?;
            special::render(special_ty, b, off)?
        }
    })
}
