//! Messages whose JSON form is not an object: meta/v1 Time, MicroTime and
//! Duration, resource.Quantity, intstr.IntOrString, runtime.RawExtension and
//! meta/v1 FieldsV1. Each is rendered the way Kubernetes' JSON renders it.

use serde_json::Value;

use crate::table::Ty;
use crate::wire::{wire_name, Bad, Reader, Res, LEN, VARINT};

/// Renders a special message from its bytes (`base`: offset in the body).
pub fn render(ty: Ty, buf: &[u8], base: usize) -> Res<Value> {
    match ty {
        Ty::Time => time(buf, base, false),
        Ty::MicroTime => time(buf, base, true),
        Ty::Duration => duration(buf, base),
        Ty::Quantity => quantity(buf, base),
        Ty::IntOrString => int_or_string(buf, base),
        Ty::RawJson => raw_json(buf, base),
        _ => Err(Bad::new(base, format!("{ty:?} is not a special type"))),
    }
}

/// A scalar field of a special message.
enum Scalar<'a> {
    Int(u64),
    Bytes(&'a [u8], usize),
}

/// Reads the fields of a small message into `(tag, value)`; last one wins, as in
/// protobuf. Unknown tags are skipped.
fn fields<'a>(buf: &'a [u8], base: usize, want: &[(u32, u8)]) -> Res<Vec<(u32, Scalar<'a>)>> {
    let mut r = Reader::new(buf, base);
    let mut out: Vec<(u32, Scalar<'a>)> = Vec::new();
    while !r.done() {
        let at = r.offset();
        let (tag, wt) = r.key()?;
        let Some(&(_, expect)) = want.iter().find(|(t, _)| *t == tag) else {
            r.skip(wt)?;
            continue;
        };
        if wt != expect {
            return Err(Bad::new(
                at,
                format!(
                    "field {tag} has wire type {}, expected {}",
                    wire_name(wt),
                    wire_name(expect)
                ),
            ));
        }
        let v = if wt == VARINT {
            Scalar::Int(r.varint()?)
        } else {
            let (b, o) = r.bytes()?;
            Scalar::Bytes(b, o)
        };
        out.retain(|(t, _)| *t != tag);
        out.push((tag, v));
    }
    Ok(out)
}

fn int(f: &[(u32, Scalar)], tag: u32) -> u64 {
    f.iter()
        .find_map(|(t, v)| match v {
            Scalar::Int(i) if *t == tag => Some(*i),
            _ => None,
        })
        .unwrap_or(0)
}

fn bytes<'a>(f: &[(u32, Scalar<'a>)], tag: u32) -> Option<(&'a [u8], usize)> {
    f.iter().find_map(|(t, v)| match v {
        Scalar::Bytes(b, o) if *t == tag => Some((*b, *o)),
        _ => None,
    })
}

fn utf8(b: &[u8], at: usize) -> Res<String> {
    String::from_utf8(b.to_vec()).map_err(|e| {
        Bad::new(
            at + e.utf8_error().valid_up_to(),
            "string is not valid UTF-8",
        )
    })
}

/// Time {seconds = 1, nanos = 2}. Kubernetes keeps whole seconds for Time
/// ("2024-05-01T10:00:00Z") and microseconds for MicroTime
/// ("2024-05-01T10:00:00.123456Z"); an empty message is the zero time: null.
fn time(buf: &[u8], base: usize, micro: bool) -> Res<Value> {
    if buf.is_empty() {
        return Ok(Value::Null);
    }
    let f = fields(buf, base, &[(1, VARINT), (2, VARINT)])?;
    // int64 and int32 on the wire: two's complement in the low bits.
    let secs = int(&f, 1) as i64;
    // Time drops the nanoseconds unread (as Kubernetes does); MicroTime keeps
    // the microseconds and needs them in range.
    let nanos = if micro {
        let n = int(&f, 2) as u32 as i32;
        u32::try_from(n)
            .ok()
            .filter(|n| *n < 1_000_000_000)
            .ok_or_else(|| Bad::new(base, format!("nanos {n} out of range")))?
            / 1000
            * 1000
    } else {
        0
    };
    let t = chrono::DateTime::from_timestamp(secs, nanos)
        .filter(|t| (0..=9999).contains(&chrono::Datelike::year(t)))
        .ok_or_else(|| Bad::new(base, format!("time {secs}s is outside years 0-9999")))?;
    let s = if micro {
        t.format("%Y-%m-%dT%H:%M:%S%.6fZ")
    } else {
        t.format("%Y-%m-%dT%H:%M:%SZ")
    };
    Ok(Value::String(s.to_string()))
}

/// Duration {duration = 1 (nanoseconds)}, rendered like Go's `time.Duration.String`.
fn duration(buf: &[u8], base: usize) -> Res<Value> {
    let f = fields(buf, base, &[(1, VARINT)])?;
    Ok(Value::String(go_duration(int(&f, 1) as i64)))
}

/// Go's `time.Duration.String()`: "1h2m3.5s", "1.5ms", "0s".
pub fn go_duration(d: i64) -> String {
    let neg = d < 0;
    let u = d.unsigned_abs();
    let mut s = String::new();
    if u < 1_000_000_000 {
        // Below one second: ns, µs or ms with a fraction.
        let (unit, div) = match u {
            0 => return "0s".into(),
            1..=999 => ("ns", 1),
            1_000..=999_999 => ("µs", 1_000),
            _ => ("ms", 1_000_000),
        };
        s.push_str(&frac(u, div));
        s.push_str(unit);
    } else {
        let h = u / 3_600_000_000_000;
        let m = u / 60_000_000_000 % 60;
        let rest = u % 60_000_000_000;
        if h > 0 {
            s.push_str(&format!("{h}h"));
        }
        if h > 0 || m > 0 {
            s.push_str(&format!("{m}m"));
        }
        s.push_str(&frac(rest, 1_000_000_000));
        s.push('s');
    }
    if neg {
        s.insert(0, '-');
    }
    s
}

/// `v / div` with the fraction's trailing zeros dropped ("1.5", "3").
fn frac(v: u64, div: u64) -> String {
    let whole = v / div;
    let rem = v % div;
    if rem == 0 {
        return whole.to_string();
    }
    let width = div.ilog10() as usize;
    let f = format!("{rem:0width$}");
    format!("{whole}.{}", f.trim_end_matches('0'))
}

/// Quantity {string = 1}: the canonical string; an empty one is "0".
fn quantity(buf: &[u8], base: usize) -> Res<Value> {
    let f = fields(buf, base, &[(1, LEN)])?;
    let s = match bytes(&f, 1) {
        Some((b, at)) => utf8(b, at)?,
        None => String::new(),
    };
    Ok(Value::String(if s.is_empty() { "0".into() } else { s }))
}

/// IntOrString {type = 1 (0 int, 1 string), intVal = 2, strVal = 3}.
fn int_or_string(buf: &[u8], base: usize) -> Res<Value> {
    let f = fields(buf, base, &[(1, VARINT), (2, VARINT), (3, LEN)])?;
    match int(&f, 1) {
        0 => Ok(Value::from(int(&f, 2) as u32 as i32)),
        1 => Ok(Value::String(match bytes(&f, 3) {
            Some((b, at)) => utf8(b, at)?,
            None => String::new(),
        })),
        t => Err(Bad::new(
            base,
            format!("IntOrString type {t} is neither 0 (int) nor 1 (string)"),
        )),
    }
}

/// RawExtension / FieldsV1 {raw = 1}: JSON bytes, embedded as JSON.
fn raw_json(buf: &[u8], base: usize) -> Res<Value> {
    let f = fields(buf, base, &[(1, LEN)])?;
    match bytes(&f, 1) {
        None => Ok(Value::Null),
        Some(([], _)) => Ok(Value::Null),
        Some((b, at)) => serde_json::from_slice(b)
            .map_err(|e| Bad::new(at, format!("raw bytes are not JSON: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::go_duration;

    #[test]
    fn durations_read_like_go() {
        for (ns, want) in [
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1µs"),
            (2_200_000, "2.2ms"),
            (1_000_000_000, "1s"),
            (1_500_000_000, "1.5s"),
            (60_000_000_000, "1m0s"),
            (3_723_000_000_000, "1h2m3s"),
            (3_600_000_000_000, "1h0m0s"),
            (-90_000_000_000, "-1m30s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
        ] {
            assert_eq!(go_duration(ns), want, "{ns}");
        }
    }
}
