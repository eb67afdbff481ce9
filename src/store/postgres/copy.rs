//! PostgreSQL's binary `COPY` format, both ways: reading rows streamed by
//! `COPY (SELECT …) TO STDOUT (FORMAT binary)` and writing rows for
//! `COPY … FROM STDIN (FORMAT binary)`.
//!
//! Binary rather than text or CSV: a field is its length and its bytes, so
//! JSON with backslashes and quotes needs no unescaping, nothing is parsed
//! twice, and a row is read in place without a copy per column. The format
//! (PostgreSQL documentation, "COPY", "Binary Format"): an 11-byte
//! signature, a 32-bit flags word and a header extension; then per tuple a
//! 16-bit field count and, per field, a 32-bit length (-1: NULL) and the
//! value in the type's binary form (`bigint`: 8 bytes big-endian; `text`:
//! its UTF-8 bytes); a field count of -1 ends the data.

pub const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// A malformed COPY stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("COPY stream: {0}")]
pub struct CopyError(pub String);

fn bad(what: impl Into<String>) -> CopyError {
    CopyError(what.into())
}

/// Reads tuples of exactly `N` fields from a binary COPY stream fed in
/// chunks of any size; a tuple cut by a chunk boundary waits for the next.
pub struct BinaryRows<const N: usize> {
    carry: Vec<u8>,
    header: bool,
    done: bool,
}

impl<const N: usize> Default for BinaryRows<N> {
    fn default() -> Self {
        Self {
            carry: Vec::new(),
            header: false,
            done: false,
        }
    }
}

impl<const N: usize> BinaryRows<N> {
    /// Feeds the next chunk and hands each complete tuple to `row`, which
    /// may stop the stream by returning an error.
    pub fn feed<E: From<CopyError>>(
        &mut self,
        chunk: &[u8],
        mut row: impl FnMut(&[Option<&[u8]>; N]) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.carry.is_empty() {
            let used = self.parse(chunk, &mut row)?;
            self.carry.extend_from_slice(&chunk[used..]);
        } else {
            self.carry.extend_from_slice(chunk);
            let data = std::mem::take(&mut self.carry);
            let parsed = self.parse(&data, &mut row);
            self.carry = data;
            let used = parsed?;
            self.carry.drain(..used);
        }
        Ok(())
    }

    /// Checks that the stream ended with its trailer and nothing after it.
    pub fn finish(&self) -> Result<(), CopyError> {
        if !self.done {
            return Err(bad("the stream ended before its trailer"));
        }
        if !self.carry.is_empty() {
            return Err(bad("data after the trailer"));
        }
        Ok(())
    }

    /// Parses what `data` holds completely; returns the bytes consumed.
    fn parse<E: From<CopyError>>(
        &mut self,
        data: &[u8],
        row: &mut impl FnMut(&[Option<&[u8]>; N]) -> Result<(), E>,
    ) -> Result<usize, E> {
        let mut pos = 0;
        if !self.header {
            if data.len() < SIGNATURE.len() + 8 {
                return Ok(0);
            }
            if &data[..SIGNATURE.len()] != SIGNATURE {
                return Err(bad("not a binary COPY stream (bad signature)").into());
            }
            let flags = be_u32(&data[11..15]);
            if flags & (1 << 16) != 0 {
                return Err(bad("rows carry OIDs, which this reader does not expect").into());
            }
            let ext = be_u32(&data[15..19]) as usize;
            if data.len() < 19 + ext {
                return Ok(0);
            }
            pos = 19 + ext;
            self.header = true;
        }
        let mut fields: [Option<&[u8]>; N] = [None; N];
        loop {
            if self.done {
                if pos < data.len() {
                    return Err(bad("data after the trailer").into());
                }
                return Ok(pos);
            }
            let Some(count) = data.get(pos..pos + 2) else {
                return Ok(pos);
            };
            let count = i16::from_be_bytes([count[0], count[1]]);
            if count == -1 {
                self.done = true;
                pos += 2;
                continue;
            }
            if count as usize != N {
                return Err(bad(format!("a tuple has {count} fields, expected {N}")).into());
            }
            let mut at = pos + 2;
            let mut complete = true;
            for f in fields.iter_mut() {
                let Some(len) = data.get(at..at + 4) else {
                    complete = false;
                    break;
                };
                let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
                at += 4;
                if len < 0 {
                    *f = None;
                    continue;
                }
                let Some(value) = data.get(at..at + len as usize) else {
                    complete = false;
                    break;
                };
                *f = Some(value);
                at += len as usize;
            }
            if !complete {
                return Ok(pos);
            }
            row(&fields)?;
            pos = at;
        }
    }
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// A `bigint` field.
pub fn int8(field: Option<&[u8]>) -> Result<i64, CopyError> {
    let b: [u8; 8] = field
        .ok_or_else(|| bad("a bigint field is NULL"))?
        .try_into()
        .map_err(|_| bad("a bigint field is not 8 bytes"))?;
    Ok(i64::from_be_bytes(b))
}

/// A non-NULL `text` field.
pub fn text(field: Option<&[u8]>) -> Result<&str, CopyError> {
    opt_text(field)?.ok_or_else(|| bad("a text field is NULL"))
}

/// A `text` field that may be NULL.
pub fn opt_text(field: Option<&[u8]>) -> Result<Option<&str>, CopyError> {
    field
        .map(|b| std::str::from_utf8(b).map_err(|_| bad("a text field is not UTF-8")))
        .transpose()
}

/// Writes tuples in the binary COPY format into a buffer the caller sends
/// in chunks (`take`), ending with [`BinaryWriter::trailer`].
pub struct BinaryWriter {
    buf: Vec<u8>,
}

impl Default for BinaryWriter {
    fn default() -> Self {
        let mut buf = Vec::with_capacity(1 << 20);
        buf.extend_from_slice(SIGNATURE);
        buf.extend_from_slice(&0u32.to_be_bytes()); // flags
        buf.extend_from_slice(&0u32.to_be_bytes()); // header extension length
        Self { buf }
    }
}

impl BinaryWriter {
    /// Starts a tuple of `fields` fields.
    pub fn tuple(&mut self, fields: i16) -> &mut Self {
        self.buf.extend_from_slice(&fields.to_be_bytes());
        self
    }

    pub fn int8(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&8i32.to_be_bytes());
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn text(&mut self, v: &str) -> &mut Self {
        let len = i32::try_from(v.len()).expect("a COPY field is under 2 GiB");
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(v.as_bytes());
        self
    }

    /// Ends the data; nothing may follow.
    pub fn trailer(&mut self) {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The bytes written since the last take.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::replace(&mut self.buf, Vec::with_capacity(1 << 20))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> Vec<u8> {
        let mut w = BinaryWriter::default();
        w.tuple(3).int8(1).text("a\\\"b\t\n").text("");
        w.tuple(3).int8(-2).text("é").text("x");
        w.trailer();
        w.take()
    }

    fn read_in_chunks(bytes: &[u8], size: usize) -> Result<Vec<(i64, String, String)>, CopyError> {
        let mut rows = BinaryRows::<3>::default();
        let mut out = vec![];
        for chunk in bytes.chunks(size) {
            rows.feed(chunk, |f| -> Result<(), CopyError> {
                out.push((
                    int8(f[0])?,
                    text(f[1])?.to_string(),
                    text(f[2])?.to_string(),
                ));
                Ok(())
            })?;
        }
        rows.finish()?;
        Ok(out)
    }

    #[test]
    fn tuples_written_are_read_back_however_the_stream_is_cut() {
        let bytes = stream();
        for size in [1, 2, 3, 7, 19, 20, bytes.len()] {
            let rows = read_in_chunks(&bytes, size).unwrap();
            assert_eq!(
                rows,
                vec![
                    (1, "a\\\"b\t\n".to_string(), String::new()),
                    (-2, "é".to_string(), "x".to_string())
                ],
                "chunks of {size}"
            );
        }
    }

    #[test]
    fn a_stream_without_its_trailer_or_with_a_wrong_shape_is_refused() {
        let bytes = stream();
        assert!(read_in_chunks(&bytes[..bytes.len() - 2], 5).is_err());
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(read_in_chunks(&extra, 5).is_err());
        let mut w = BinaryWriter::default();
        w.tuple(2).int8(1).text("a");
        w.trailer();
        assert!(read_in_chunks(&w.take(), 4).is_err());
        assert!(read_in_chunks(b"PGCOPY\nxx\r\n\0\0\0\0\0\0\0\0\0\xff\xff", 4).is_err());
    }
}
