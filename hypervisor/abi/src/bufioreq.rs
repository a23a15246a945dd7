//! Buffered (posted-write) ioreq ring: Xen's `buf_ioreq` and `buffered_iopage`
//! (Xen `public/hvm/ioreq.h`, producer `xen/common/ioreq.c` `ioreq_send_buffered`;
//! research/xen-hvm.md §1.3).
//!
//! Page layout (4096 bytes, little endian):
//!
//! | off | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | `read_pointer` (consumer-owned) |
//! | 4 | 4 | `write_pointer` (producer-owned) |
//! | 8 | 511 × 8 | slots |
//!
//! Slot (8 bytes): word 0 bits 0–7 `type`, bit 8 pad, bit 9 `dir`, bits 10–11 size code
//! (0→1, 1→2, 2→4, 3→8 bytes), bits 12–31 `addr` (so only addresses below 1 MiB);
//! word 1 `data`. An 8-byte write takes two consecutive slots: low half in the first,
//! high half in the second (same header); the producer publishes both with one
//! `write_pointer += 2`.
//!
//! Pointers are free-running u32 counters; slot = pointer mod 511. The functions here
//! are the pure protocol over a byte page. The real page is shared: the producer must
//! publish `write_pointer` after the slot bytes (release), the consumer must read
//! `write_pointer` before the slots (acquire) and publish `read_pointer` after it is
//! done with them. Both sides treat the other's pointer as hostile: a full-looking
//! ring (producer) or an impossible fill level (consumer) is refused, never looped on,
//! and every slot index is reduced mod 511 before use.
//!
//! Because 2^32 is not a multiple of 511, pointers must not be left to wrap at 2^32;
//! the producer calls [`canonicalize`] (Xen's `HVM_IOREQSRV_BUFIOREQ_ATOMIC` mode, done
//! there with a 64-bit cmpxchg over both pointers) to subtract whole rounds from both.

use crate::ioreq::{
    IOREQ_TYPE_COPY, IOREQ_TYPE_PIO, IOREQ_TYPE_TIMEOFFSET, IOREQ_WRITE, IoReq, IoReqError,
    STATE_IOREQ_READY,
};

/// Bytes in one slot.
pub const BUF_IOREQ_SIZE: usize = 8;
/// Slots in the ring.
pub const IOREQ_BUFFER_SLOT_NUM: u32 = 511;
pub const PAGE_SIZE: usize = 4096;
pub const READ_POINTER_OFFSET: usize = 0;
pub const WRITE_POINTER_OFFSET: usize = 4;
pub const SLOTS_OFFSET: usize = 8;
/// Highest address a buffered request can carry (20 bits).
pub const MAX_ADDR: u64 = 0xf_ffff;

/// One slot, field for field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BufIoReq {
    pub ty: u8,
    pub pad: bool,
    /// 1 bit.
    pub dir: u8,
    /// 2 bits: 0→1, 1→2, 2→4, 3→8 bytes.
    pub size_code: u8,
    /// 20 bits.
    pub addr: u32,
    pub data: u32,
}

impl BufIoReq {
    pub fn encode(&self) -> [u8; BUF_IOREQ_SIZE] {
        let w0 = self.ty as u32
            | (self.pad as u32) << 8
            | ((self.dir & 1) as u32) << 9
            | ((self.size_code & 3) as u32) << 10
            | (self.addr & 0xf_ffff) << 12;
        let mut b = [0u8; BUF_IOREQ_SIZE];
        b[0..4].copy_from_slice(&w0.to_le_bytes());
        b[4..8].copy_from_slice(&self.data.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8; BUF_IOREQ_SIZE]) -> Self {
        let w0 = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        BufIoReq {
            ty: w0 as u8,
            pad: w0 & (1 << 8) != 0,
            dir: ((w0 >> 9) & 1) as u8,
            size_code: ((w0 >> 10) & 3) as u8,
            addr: w0 >> 12,
            data: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }

    /// Access size in bytes.
    pub fn size(&self) -> u32 {
        1 << (self.size_code & 3)
    }
}

/// A write taken off the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferedWrite {
    pub ty: u8,
    pub addr: u32,
    /// 1, 2, 4 or 8.
    pub size: u32,
    pub data: u64,
}

impl BufferedWrite {
    /// The equivalent synchronous request (count 1, write, data by value).
    pub fn to_ioreq(&self) -> IoReq {
        IoReq {
            addr: self.addr as u64,
            data: self.data,
            count: 1,
            size: self.size,
            state: STATE_IOREQ_READY,
            dir: IOREQ_WRITE,
            ty: self.ty,
            ..Default::default()
        }
    }
}

/// Why the producer did not queue a request (it then goes the synchronous way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnqueueError {
    /// Not a single by-value write below 1 MiB of size 1/2/4/8.
    NotEligible,
    /// No room (or the consumer's pointer makes the ring look full).
    Full,
}

/// What the consumer found wrong. The consumer never loops on an error: each call
/// either consumes slots or returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// `write_pointer - read_pointer` exceeds the ring size: the pointers are garbage.
    /// The consumer resynchronises (`read_pointer = write_pointer`, dropping whatever
    /// the ring held).
    BadPointers { read: u32, write: u32 },
    /// An 8-byte write whose second slot is not published. The lone slot is skipped.
    IncompleteQuadWord,
    /// A slot that is not a valid write (a read, an unknown type, a port above
    /// 0xffff, ...). It is skipped.
    BadEntry(Option<IoReqError>),
}

fn get_u32(page: &[u8; PAGE_SIZE], off: usize) -> u32 {
    match page.get(off..off + 4) {
        Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        None => 0,
    }
}

fn put_u32(page: &mut [u8; PAGE_SIZE], off: usize, v: u32) {
    if let Some(b) = page.get_mut(off..off + 4) {
        b.copy_from_slice(&v.to_le_bytes());
    }
}

pub fn read_pointer(page: &[u8; PAGE_SIZE]) -> u32 {
    get_u32(page, READ_POINTER_OFFSET)
}

pub fn write_pointer(page: &[u8; PAGE_SIZE]) -> u32 {
    get_u32(page, WRITE_POINTER_OFFSET)
}

fn slot_off(pointer: u32) -> usize {
    SLOTS_OFFSET + (pointer % IOREQ_BUFFER_SLOT_NUM) as usize * BUF_IOREQ_SIZE
}

fn read_slot(page: &[u8; PAGE_SIZE], pointer: u32) -> BufIoReq {
    let off = slot_off(pointer);
    let mut b = [0u8; BUF_IOREQ_SIZE];
    if let Some(s) = page.get(off..off + BUF_IOREQ_SIZE) {
        b.copy_from_slice(s);
    }
    BufIoReq::decode(&b)
}

fn write_slot(page: &mut [u8; PAGE_SIZE], pointer: u32, slot: &BufIoReq) {
    let off = slot_off(pointer);
    if let Some(s) = page.get_mut(off..off + BUF_IOREQ_SIZE) {
        s.copy_from_slice(&slot.encode());
    }
}

/// Whether the producer may send `req` through the ring at all.
pub fn eligible(req: &IoReq) -> bool {
    req.dir == IOREQ_WRITE
        && !req.data_is_ptr
        && req.count == 1
        && req.addr <= MAX_ADDR
        && matches!(req.size, 1 | 2 | 4 | 8)
}

/// Producer: queue a write. The slots are written before `write_pointer` moves.
pub fn enqueue(page: &mut [u8; PAGE_SIZE], req: &IoReq) -> Result<(), EnqueueError> {
    if !eligible(req) {
        return Err(EnqueueError::NotEligible);
    }
    let qw = req.size == 8;
    let read = read_pointer(page);
    let write = write_pointer(page);
    let used = write.wrapping_sub(read);
    if used >= IOREQ_BUFFER_SLOT_NUM - qw as u32 {
        return Err(EnqueueError::Full);
    }
    let mut slot = BufIoReq {
        ty: req.ty,
        pad: false,
        dir: IOREQ_WRITE,
        size_code: req.size.trailing_zeros() as u8,
        addr: req.addr as u32,
        data: req.data as u32,
    };
    write_slot(page, write, &slot);
    if qw {
        slot.data = (req.data >> 32) as u32;
        write_slot(page, write.wrapping_add(1), &slot);
    }
    put_u32(
        page,
        WRITE_POINTER_OFFSET,
        write.wrapping_add(1 + qw as u32),
    );
    Ok(())
}

/// Producer: subtract whole rounds of 511 from both pointers so they never wrap at
/// 2^32. A no-op when the consumer's pointer is ahead of the producer's (garbage).
pub fn canonicalize(page: &mut [u8; PAGE_SIZE]) {
    let read = read_pointer(page);
    let write = write_pointer(page);
    if write < read {
        return;
    }
    let n = read / IOREQ_BUFFER_SLOT_NUM;
    if n != 0 {
        let sub = n * IOREQ_BUFFER_SLOT_NUM;
        put_u32(page, READ_POINTER_OFFSET, read - sub);
        put_u32(page, WRITE_POINTER_OFFSET, write - sub);
    }
}

/// The consumer's step, for any way of reading the ring: given the two pointers and a
/// reader of slot `pointer % 511`, copy the next write out (merging the two halves of an
/// 8-byte write) and say how far `read_pointer` must advance (the slots are copied;
/// hand them back before acting). Garbage pointers consume everything the ring claims
/// to hold.
pub fn take_next(
    read: u32,
    write: u32,
    slot: impl Fn(u32) -> BufIoReq,
) -> (u32, Result<Option<BufferedWrite>, RingError>) {
    let avail = write.wrapping_sub(read);
    if avail == 0 {
        return (0, Ok(None));
    }
    if avail > IOREQ_BUFFER_SLOT_NUM {
        return (avail, Err(RingError::BadPointers { read, write }));
    }
    let first = slot(read);
    let size = first.size();
    let qw = size == 8;
    if qw && avail < 2 {
        return (1, Err(RingError::IncompleteQuadWord));
    }
    let mut data = first.data as u64;
    if qw {
        data |= (slot(read.wrapping_add(1)).data as u64) << 32;
    }
    let used = 1 + qw as u32;
    let w = BufferedWrite {
        ty: first.ty,
        addr: first.addr,
        size,
        data,
    };
    if first.dir != IOREQ_WRITE
        || !matches!(
            first.ty,
            IOREQ_TYPE_PIO | IOREQ_TYPE_COPY | IOREQ_TYPE_TIMEOFFSET
        )
    {
        return (used, Err(RingError::BadEntry(None)));
    }
    if let Err(e) = w.to_ioreq().validate() {
        return (used, Err(RingError::BadEntry(Some(e))));
    }
    (used, Ok(Some(w)))
}

/// Consumer: take the next write off the ring ([`take_next`] on a page of bytes).
/// `Ok(None)` when the ring is empty. Always terminates; never reads outside the page
/// whatever the pointers say.
pub fn dequeue(page: &mut [u8; PAGE_SIZE]) -> Result<Option<BufferedWrite>, RingError> {
    let read = read_pointer(page);
    let (used, r) = take_next(read, write_pointer(page), |p| read_slot(page, p));
    if used != 0 {
        put_u32(page, READ_POINTER_OFFSET, read.wrapping_add(used));
    }
    r
}

/// Consumer: handle everything queued now, at most one ring's worth (so a producer
/// that keeps adding cannot keep the consumer here forever). Bad entries are skipped
/// and counted. Returns (writes handled, errors seen).
pub fn drain(page: &mut [u8; PAGE_SIZE], mut f: impl FnMut(BufferedWrite)) -> (u32, u32) {
    let mut handled = 0;
    let mut errors = 0;
    for _ in 0..IOREQ_BUFFER_SLOT_NUM {
        match dequeue(page) {
            Ok(Some(w)) => {
                f(w);
                handled += 1;
            }
            Ok(None) => break,
            Err(RingError::BadPointers { .. }) => {
                errors += 1;
                break;
            }
            Err(_) => errors += 1,
        }
    }
    (handled, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    fn write(addr: u64, size: u32, data: u64) -> IoReq {
        IoReq {
            addr,
            data,
            count: 1,
            size,
            ty: IOREQ_TYPE_COPY,
            ..Default::default()
        }
    }

    #[test]
    fn slot_bit_layout() {
        let s = BufIoReq {
            ty: IOREQ_TYPE_COPY,
            pad: false,
            dir: 1,
            size_code: 2,
            addr: 0xa_8000,
            data: 0xdead_beef,
        };
        let b = s.encode();
        let w0 = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        assert_eq!(w0 & 0xff, 1);
        assert_eq!(w0 >> 9 & 1, 1);
        assert_eq!(w0 >> 10 & 3, 2);
        assert_eq!(w0 >> 12, 0xa_8000);
        assert_eq!(&b[4..], &0xdead_beefu32.to_le_bytes());
        assert_eq!(BufIoReq::decode(&b), s);
        assert_eq!(s.size(), 4);
        assert_eq!(
            SLOTS_OFFSET + IOREQ_BUFFER_SLOT_NUM as usize * BUF_IOREQ_SIZE,
            PAGE_SIZE
        );
        let p = BufIoReq { pad: true, ..s }.encode();
        assert_eq!(p[1] & 1, 1, "pad is bit 8");
    }

    #[test]
    fn eligibility() {
        let mut page = [0u8; PAGE_SIZE];
        let ok = write(0xa_0000, 2, 0x1234);
        assert!(enqueue(&mut page, &ok).is_ok());
        for bad in [
            IoReq {
                addr: 0x10_0000,
                ..ok
            },
            IoReq { count: 2, ..ok },
            IoReq {
                data_is_ptr: true,
                ..ok
            },
            IoReq { dir: 1, ..ok },
            IoReq { size: 3, ..ok },
            IoReq { size: 0, ..ok },
        ] {
            assert_eq!(enqueue(&mut page, &bad), Err(EnqueueError::NotEligible));
        }
        assert_eq!(write_pointer(&page), 1);
    }

    #[test]
    fn round_trip_and_quad_words() {
        let mut page = [0u8; PAGE_SIZE];
        enqueue(&mut page, &write(0xb_8000, 1, 0x41)).unwrap();
        enqueue(&mut page, &write(0xa_0010, 8, 0x1122_3344_5566_7788)).unwrap();
        let t = IoReq {
            ty: IOREQ_TYPE_TIMEOFFSET,
            ..write(0, 8, (-7200i64) as u64)
        };
        enqueue(&mut page, &t).unwrap();
        assert_eq!(write_pointer(&page), 5);
        let mut got = Vec::new();
        assert_eq!(drain(&mut page, |w| got.push(w)), (3, 0));
        assert_eq!(got[0].data, 0x41);
        assert_eq!(got[0].size, 1);
        assert_eq!(got[1].data, 0x1122_3344_5566_7788);
        assert_eq!(got[1].addr, 0xa_0010);
        assert_eq!(got[2].ty, IOREQ_TYPE_TIMEOFFSET);
        assert_eq!(got[2].data as i64, -7200);
        assert_eq!(read_pointer(&page), 5);
        assert_eq!(dequeue(&mut page), Ok(None));
    }

    #[test]
    fn full_ring_and_quad_word_room() {
        let mut page = [0u8; PAGE_SIZE];
        for i in 0..510 {
            enqueue(&mut page, &write(0xa_0000 + i, 1, i)).unwrap();
        }
        // 510 used: one slot left, not enough for a quad word.
        assert_eq!(
            enqueue(&mut page, &write(0xa_0000, 8, 0)),
            Err(EnqueueError::Full)
        );
        enqueue(&mut page, &write(0xa_0000, 1, 0)).unwrap();
        assert_eq!(
            enqueue(&mut page, &write(0xa_0000, 1, 0)),
            Err(EnqueueError::Full)
        );
        assert_eq!(drain(&mut page, |_| {}), (511, 0));
    }

    #[test]
    fn wraparound_keeps_order() {
        let mut page = [0u8; PAGE_SIZE];
        let mut next_in = 0u64;
        let mut next_out = 0u64;
        for round in 0..20 {
            // Fill to various levels with a mix of sizes so quad words straddle the
            // slot 510 -> 0 boundary.
            for _ in 0..(100 + round * 17) {
                let size = [1, 2, 4, 8][(next_in % 4) as usize];
                let data = if size == 8 {
                    next_in | 0xabcd_0000_0000_0000
                } else {
                    next_in & ((1 << (8 * size)) - 1)
                };
                if enqueue(&mut page, &write(next_in & 0xf_ffff, size, data)).is_err() {
                    break;
                }
                next_in += 1;
            }
            drain(&mut page, |w| {
                assert_eq!(w.addr as u64, next_out & 0xf_ffff);
                if w.size == 8 {
                    assert_eq!(w.data, next_out | 0xabcd_0000_0000_0000);
                }
                next_out += 1;
            });
            canonicalize(&mut page);
            assert!(read_pointer(&page) < IOREQ_BUFFER_SLOT_NUM);
        }
        assert_eq!(next_in, next_out);
        assert!(next_in > 1000);
    }

    #[test]
    fn pointers_near_u32_max() {
        let mut page = [0u8; PAGE_SIZE];
        let start = u32::MAX - 1;
        put_u32(&mut page, READ_POINTER_OFFSET, start);
        put_u32(&mut page, WRITE_POINTER_OFFSET, start);
        for i in 0..4 {
            enqueue(&mut page, &write(0xa_0000, 8, i)).unwrap();
        }
        let mut n = 0;
        drain(&mut page, |w| {
            assert_eq!(w.data, n);
            n += 1;
        });
        assert_eq!(n, 4);
    }

    #[test]
    fn hostile_pointers_never_hang_or_overrun() {
        let mut s = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..5000 {
            let mut page = [0u8; PAGE_SIZE];
            for b in page.iter_mut() {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                *b = s as u8;
            }
            if s & 1 == 0 {
                // Pointers close together, so the slot-decoding paths run too.
                let r = (s >> 8) as u32;
                put_u32(&mut page, READ_POINTER_OFFSET, r);
                put_u32(
                    &mut page,
                    WRITE_POINTER_OFFSET,
                    r.wrapping_add((s >> 40) as u32 % 600),
                );
            }
            let (ok, err) = drain(&mut page, |w| assert!(matches!(w.size, 1 | 2 | 4 | 8)));
            assert!(ok + err <= IOREQ_BUFFER_SLOT_NUM);
            let _ = enqueue(&mut page, &write(0xa_0000, 8, 1));
            canonicalize(&mut page);
        }
    }

    #[test]
    fn consumer_errors() {
        let mut page = [0u8; PAGE_SIZE];
        put_u32(&mut page, READ_POINTER_OFFSET, 10);
        put_u32(&mut page, WRITE_POINTER_OFFSET, 5);
        assert!(matches!(
            dequeue(&mut page),
            Err(RingError::BadPointers { .. })
        ));
        assert_eq!(read_pointer(&page), 5, "resynchronised");
        // A lone quad-word slot.
        let qw = BufIoReq {
            ty: IOREQ_TYPE_COPY,
            size_code: 3,
            addr: 0xa_0000,
            ..Default::default()
        };
        write_slot(&mut page, 5, &qw);
        put_u32(&mut page, WRITE_POINTER_OFFSET, 6);
        assert_eq!(dequeue(&mut page), Err(RingError::IncompleteQuadWord));
        assert_eq!(dequeue(&mut page), Ok(None));
        // A read, an unknown type, a PIO write to a port above 0xffff.
        for bad in [
            BufIoReq { dir: 1, ..qw },
            BufIoReq {
                ty: 9,
                size_code: 0,
                ..qw
            },
            BufIoReq {
                ty: IOREQ_TYPE_PIO,
                size_code: 0,
                ..qw
            },
        ] {
            let w = write_pointer(&page);
            write_slot(&mut page, w, &bad);
            write_slot(&mut page, w + 1, &bad);
            put_u32(&mut page, WRITE_POINTER_OFFSET, w + 2);
            assert!(matches!(dequeue(&mut page), Err(RingError::BadEntry(_))));
            let _ = dequeue(&mut page);
            assert_eq!(read_pointer(&page), write_pointer(&page));
        }
    }
}
