//! Small formatting helpers shared by the console output and the tests.

use core::fmt;

/// Shows bytes as text: printable ASCII as is, `"` and `\` escaped, everything else as
/// `\xNN`. Used for command lines and version strings that come from outside.
pub struct Escaped<'a>(pub &'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in self.0 {
            match b {
                b'"' => f.write_str("\\\"")?,
                b'\\' => f.write_str("\\\\")?,
                0x20..=0x7e => fmt::Write::write_char(f, b as char)?,
                _ => write!(f, "\\x{b:02x}")?,
            }
        }
        Ok(())
    }
}

/// A `core::fmt::Write` into a fixed byte buffer that truncates instead of failing.
pub struct BufWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> BufWriter<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        BufWriter { buf, len: 0 }
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl fmt::Write for BufWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn escapes_hostile_bytes() {
        let s = format!("{}", Escaped(b"a\"b\\c\x01\xff d"));
        assert_eq!(s, "a\\\"b\\\\c\\x01\\xff d");
    }

    #[test]
    fn buf_writer_truncates() {
        let mut b = [0u8; 4];
        let mut w = BufWriter::new(&mut b);
        write!(w, "hello {}", 42).unwrap();
        assert_eq!(w.as_bytes(), b"hell");
    }
}
