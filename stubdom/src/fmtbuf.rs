//! `core::fmt` into a fixed byte buffer (crash messages and log lines are formatted
//! without allocating: the heap may be what broke).

use core::fmt;

/// Writes into `buf`, silently truncating at its end (on a UTF-8 boundary).
pub struct FmtBuf<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> FmtBuf<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        FmtBuf { buf, len: 0 }
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
    /// Appends one byte if there is room (e.g. a newline).
    pub fn push(&mut self, b: u8) -> bool {
        match self.buf.get_mut(self.len) {
            Some(d) => {
                *d = b;
                self.len += 1;
                true
            }
            None => false,
        }
    }
    /// Forgets the contents.
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

impl fmt::Write for FmtBuf<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - self.len;
        let mut n = s.len().min(room);
        while n > 0 && !s.is_char_boundary(n) {
            n -= 1;
        }
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
    fn truncates_on_char_boundary() {
        let mut b = [0u8; 5];
        let mut f = FmtBuf::new(&mut b);
        let s = "cdé";
        write!(f, "ab{s}").unwrap();
        assert_eq!(f.as_bytes(), b"abcd");
        assert!(f.push(b'\n'));
        assert!(!f.push(b'x'));
        assert_eq!(f.len(), 5);
    }
}
