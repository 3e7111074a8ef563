//! The `k8s\0` + `runtime.Unknown` envelope around every protobuf object:
//! Unknown {typeMeta = 1 {apiVersion = 1, kind = 2}, raw = 2,
//! contentEncoding = 3, contentType = 4}.

use crate::wire::{wire_name, Bad, Reader, Res, LEN};
use crate::{Error, MAGIC};

/// The envelope of a body; `raw` borrows from the body.
#[derive(Debug, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub api_version: String,
    pub kind: String,
    /// The object's message bytes.
    pub raw: &'a [u8],
    /// Offset of `raw` in the body.
    pub raw_offset: usize,
}

/// Reads the magic and the envelope.
pub fn envelope(body: &[u8]) -> Result<Envelope<'_>, Error> {
    let rest = body.strip_prefix(MAGIC.as_slice()).ok_or(Error::NoMagic)?;
    let mut env = Envelope {
        api_version: String::new(),
        kind: String::new(),
        raw: &[],
        raw_offset: body.len(),
    };
    let mut encoding = String::new();
    let mut content_type = String::new();
    read_unknown(
        rest,
        MAGIC.len(),
        &mut env,
        &mut encoding,
        &mut content_type,
    )
    .map_err(|e| e.within("(envelope)".into()).into_error())?;
    if !encoding.is_empty() {
        return Err(Error::Unsupported {
            what: "contentEncoding",
            value: encoding,
        });
    }
    if !content_type.is_empty() && !crate::is_protobuf(&content_type) {
        return Err(Error::Unsupported {
            what: "contentType",
            value: content_type,
        });
    }
    if env.kind.is_empty() {
        return Err(Error::Malformed {
            path: "(envelope).typeMeta.kind".into(),
            offset: MAGIC.len(),
            what: "the envelope names no kind".into(),
        });
    }
    Ok(env)
}

fn string(b: &[u8], at: usize) -> Res<String> {
    String::from_utf8(b.to_vec()).map_err(|_| Bad::new(at, "string is not valid UTF-8"))
}

fn read_unknown<'a>(
    buf: &'a [u8],
    base: usize,
    env: &mut Envelope<'a>,
    encoding: &mut String,
    content_type: &mut String,
) -> Res<()> {
    let mut r = Reader::new(buf, base);
    while !r.done() {
        let at = r.offset();
        let (tag, wt) = r.key()?;
        if !(1..=4).contains(&tag) {
            r.skip(wt)?;
            continue;
        }
        if wt != LEN {
            return Err(Bad::new(
                at,
                format!(
                    "field {tag} has wire type {}, expected length-delimited",
                    wire_name(wt)
                ),
            ));
        }
        let (b, off) = r.bytes()?;
        match tag {
            1 => read_type_meta(b, off, env).map_err(|e| e.within("typeMeta".into()))?,
            2 => {
                env.raw = b;
                env.raw_offset = off;
            }
            3 => *encoding = string(b, off)?,
            _ => *content_type = string(b, off)?,
        }
    }
    Ok(())
}

fn read_type_meta(buf: &[u8], base: usize, env: &mut Envelope) -> Res<()> {
    let mut r = Reader::new(buf, base);
    while !r.done() {
        let at = r.offset();
        let (tag, wt) = r.key()?;
        if !(1..=2).contains(&tag) {
            r.skip(wt)?;
            continue;
        }
        if wt != LEN {
            return Err(Bad::new(
                at,
                format!("field {tag} has wire type {}", wire_name(wt)),
            ));
        }
        let (b, off) = r.bytes()?;
        if tag == 1 {
            env.api_version = string(b, off).map_err(|e| e.within("apiVersion".into()))?;
        } else {
            env.kind = string(b, off).map_err(|e| e.within("kind".into()))?;
        }
    }
    Ok(())
}
