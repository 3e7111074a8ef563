//! The protobuf wire format: varints, tags, length-delimited slices, skipping
//! unknown fields. Every read is bounds-checked and reports the absolute offset.

use crate::Error;

/// An error on its way up: path segments are added innermost first.
#[derive(Debug)]
pub struct Bad {
    segs: Vec<String>,
    offset: usize,
    what: String,
}

impl Bad {
    pub fn new(offset: usize, what: impl Into<String>) -> Self {
        Bad {
            segs: Vec::new(),
            offset,
            what: what.into(),
        }
    }

    /// Adds the field this error happened in (outermost last).
    pub fn within(mut self, seg: String) -> Self {
        self.segs.push(seg);
        self
    }

    pub fn into_error(self) -> Error {
        let mut path = String::new();
        for seg in self.segs.iter().rev() {
            if !path.is_empty() && !seg.starts_with('[') {
                path.push('.');
            }
            path.push_str(seg);
        }
        Error::Malformed {
            path,
            offset: self.offset,
            what: self.what,
        }
    }
}

pub type Res<T> = Result<T, Bad>;

/// Wire types.
pub const VARINT: u8 = 0;
pub const FIXED64: u8 = 1;
pub const LEN: u8 = 2;
pub const FIXED32: u8 = 5;

pub fn wire_name(wt: u8) -> &'static str {
    match wt {
        VARINT => "varint",
        FIXED64 => "fixed64",
        LEN => "length-delimited",
        3 => "start-group",
        4 => "end-group",
        FIXED32 => "fixed32",
        _ => "invalid",
    }
}

/// A cursor over one message's bytes.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf[0]` in the whole body.
    base: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], base: usize) -> Self {
        Reader { buf, pos: 0, base }
    }

    pub fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Absolute offset of the next byte.
    pub fn offset(&self) -> usize {
        self.base + self.pos
    }

    pub fn varint(&mut self) -> Res<u64> {
        let start = self.offset();
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(Bad::new(start, "truncated varint"));
            };
            self.pos += 1;
            if i == 9 && b > 1 {
                return Err(Bad::new(start, "varint longer than 64 bits"));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Bad::new(start, "varint longer than 10 bytes"))
    }

    /// Reads a field key: (field number, wire type).
    pub fn key(&mut self) -> Res<(u32, u8)> {
        let start = self.offset();
        let k = self.varint()?;
        let tag = k >> 3;
        // The low 3 bits are the wire type; the mask keeps the cast lossless.
        let wt = (k & 7) as u8;
        if tag == 0 || tag > u64::from(u32::MAX >> 3) {
            return Err(Bad::new(start, format!("invalid field number {tag}")));
        }
        Ok((tag as u32, wt))
    }

    pub fn fixed<const N: usize>(&mut self) -> Res<[u8; N]> {
        let start = self.offset();
        let end = self
            .pos
            .checked_add(N)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| Bad::new(start, format!("truncated {N}-byte value")))?;
        let mut out = [0u8; N];
        out.copy_from_slice(&self.buf[self.pos..end]);
        self.pos = end;
        Ok(out)
    }

    /// Reads a length-delimited value; returns it and its absolute offset.
    pub fn bytes(&mut self) -> Res<(&'a [u8], usize)> {
        let start = self.offset();
        let len = self.varint()?;
        let at = self.offset();
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| self.pos.checked_add(l))
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                Bad::new(
                    start,
                    format!(
                        "length {len} runs past the end of its message ({} bytes left)",
                        self.buf.len() - self.pos
                    ),
                )
            })?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok((out, at))
    }

    /// Skips a value of an unknown field.
    pub fn skip(&mut self, wt: u8) -> Res<()> {
        match wt {
            VARINT => self.varint().map(drop),
            FIXED64 => self.fixed::<8>().map(drop),
            LEN => self.bytes().map(drop),
            FIXED32 => self.fixed::<4>().map(drop),
            _ => Err(Bad::new(
                self.offset(),
                format!("unsupported wire type {} ({wt})", wire_name(wt)),
            )),
        }
    }
}
