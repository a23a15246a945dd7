//! Guest pages written behind the software CPUs' backs (device DMA, the hypercall page,
//! hypercall buffers): each vCPU must drop decoded code for them
//! (`Bus::take_written_code_pages`).
//!
//! One queue per vCPU behind a flag, so the per-slice question "anything written?" is an
//! atomic load. More than [`MAX_QUEUED`] distinct pages collapse into one covering range
//! (a superset: dropping more decoded code than needed is only slower), which bounds
//! memory whatever a device or guest does.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::platform::lock;

/// Pages (from 0) the shared code-page bitmap covers: 64 GiB; a store above that is
/// always reported to the other vCPUs.
pub const CODE_BITMAP_PAGES: u64 = 1 << 24;

/// Distinct pages kept per vCPU before collapsing into a range.
pub const MAX_QUEUED: usize = 4096;
const PAGE: u64 = 4096;

#[derive(Default)]
struct Pending {
    pages: BTreeSet<u64>,
    /// First and last page of a collapsed range.
    span: Option<(u64, u64)>,
}

impl Pending {
    fn widen(&mut self, first: u64, last: u64) {
        let (a, b) = self.span.unwrap_or((first, last));
        let lo = self.pages.first().copied().unwrap_or(a).min(a).min(first);
        let hi = self.pages.last().copied().unwrap_or(b).max(b).max(last);
        self.pages.clear();
        self.span = Some((lo, hi));
    }
}

#[derive(Default)]
struct Queue {
    dirty: AtomicBool,
    pending: Mutex<Pending>,
}

/// The per-vCPU queues of one VM, and (with more than one vCPU) the pages some vCPU may
/// hold decoded code for.
///
/// Cross-vCPU code invalidation: a vCPU marks a page in the shared bitmap before it
/// fetches code from it ([`WrittenPages::code_fetched`]); every guest RAM store of a
/// vCPU checks the bit (one relaxed load) and, when set, clears it and queues the page
/// for every other vCPU ([`WrittenPages::cpu_stored`]), which drops it at its next slice
/// start or interrupt. A vCPU that fetches from the page again sets the bit again.
/// Not covered: a store racing with the very first fetch from a page on another vCPU
/// (the store's bit check carries no fence); Linux patches text with int3 and sync IPIs,
/// long after the page was first fetched.
pub struct WrittenPages {
    queues: Vec<Queue>,
    /// One bit per page below [`CODE_BITMAP_PAGES`]; empty with one vCPU (its own
    /// stores reach its own decode cache directly).
    code: Vec<AtomicU64>,
}

impl WrittenPages {
    pub fn new(vcpus: u32) -> WrittenPages {
        let n = vcpus.max(1);
        WrittenPages {
            queues: (0..n).map(|_| Queue::default()).collect(),
            code: if n > 1 {
                (0..CODE_BITMAP_PAGES / 64)
                    .map(|_| AtomicU64::new(0))
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    /// vCPU is about to fetch (and maybe cache) code in the page of `gpa`.
    #[inline]
    pub fn code_fetched(&self, gpa: u64) {
        let pn = gpa >> 12;
        if let Some(w) = self.code.get((pn / 64) as usize) {
            let bit = 1u64 << (pn % 64);
            if w.load(Ordering::Relaxed) & bit == 0 {
                w.fetch_or(bit, Ordering::SeqCst);
            }
        }
    }

    /// vCPU `id` stored `len` bytes at `gpa` in RAM: queue the pages some vCPU may hold
    /// code for to the others.
    #[inline]
    pub fn cpu_stored(&self, id: usize, gpa: u64, len: usize) {
        if self.code.is_empty() || len == 0 {
            return;
        }
        let first = gpa >> 12;
        let last = gpa.wrapping_add(len as u64 - 1) >> 12;
        self.stored_page(id, first);
        if last != first {
            self.stored_page(id, last);
        }
    }

    #[inline]
    fn stored_page(&self, id: usize, pn: u64) {
        let hit = match self.code.get((pn / 64) as usize) {
            Some(w) => {
                let bit = 1u64 << (pn % 64);
                w.load(Ordering::Relaxed) & bit != 0
                    && w.fetch_and(!bit, Ordering::SeqCst) & bit != 0
            }
            None => true,
        };
        if hit {
            self.record_for(|i| i != id, pn << 12, 1);
        }
    }

    /// `len` bytes at `gpa` were written by someone other than the CPUs: queue every
    /// 4 KiB page they touch for every vCPU.
    pub fn record(&self, gpa: u64, len: u64) {
        self.record_for(|_| true, gpa, len);
    }

    /// [`WrittenPages::record`] for the vCPUs `which` selects.
    fn record_for(&self, which: impl Fn(usize) -> bool, gpa: u64, len: u64) {
        if len == 0 {
            return;
        }
        let first = gpa & !(PAGE - 1);
        let last = gpa.saturating_add(len - 1) & !(PAGE - 1);
        let count = (last - first) / PAGE + 1;
        for (i, q) in self.queues.iter().enumerate() {
            if !which(i) {
                continue;
            }
            let mut p = lock(&q.pending);
            if count as usize > MAX_QUEUED || p.pages.len() + count as usize > MAX_QUEUED {
                p.widen(first, last);
            } else {
                for k in 0..count {
                    p.pages.insert(first + k * PAGE);
                }
            }
            q.dirty.store(true, Ordering::Release);
        }
    }

    /// Hand vCPU `i`'s queued pages to `f`, each once, in ascending order.
    pub fn take(&self, i: usize, f: &mut dyn FnMut(u64)) {
        let Some(q) = self.queues.get(i) else {
            return;
        };
        if !q.dirty.swap(false, Ordering::AcqRel) {
            return;
        }
        let p = std::mem::take(&mut *lock(&q.pending));
        if let Some((lo, hi)) = p.span {
            let mut page = lo;
            while page <= hi {
                f(page);
                match page.checked_add(PAGE) {
                    Some(n) => page = n,
                    None => break,
                }
            }
        }
        let in_span = |page: u64| p.span.is_some_and(|(lo, hi)| (lo..=hi).contains(&page));
        for &page in &p.pages {
            if !in_span(page) {
                f(page);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(w: &WrittenPages, i: usize) -> Vec<u64> {
        let mut v = Vec::new();
        w.take(i, &mut |p| v.push(p));
        v
    }

    #[test]
    fn pages_reach_every_vcpu_once() {
        let w = WrittenPages::new(2);
        assert!(taken(&w, 0).is_empty());
        w.record(0x1ff8, 16); // straddles two pages
        w.record(0x2000, 1);
        w.record(0x5000, 0);
        assert_eq!(taken(&w, 0), [0x1000, 0x2000]);
        assert!(taken(&w, 0).is_empty());
        assert_eq!(taken(&w, 1), [0x1000, 0x2000]);
        assert!(taken(&w, 7).is_empty());
    }

    #[test]
    fn huge_writes_stay_bounded_and_complete() {
        let w = WrittenPages::new(1);
        let pages = (MAX_QUEUED as u64) * 3;
        w.record(0x10_0000, pages * PAGE);
        assert!(lock(&w.queues[0].pending).pages.len() <= MAX_QUEUED);
        let got = taken(&w, 0);
        assert_eq!(got.len() as u64, pages);
        assert_eq!(got[0], 0x10_0000);
        assert_eq!(*got.last().unwrap(), 0x10_0000 + (pages - 1) * PAGE);
        w.record(u64::MAX - 10, 100);
        assert_eq!(taken(&w, 0), [!(PAGE - 1)]);
        // After a collapse, small writes inside the span are reported once.
        w.record(0, pages * PAGE);
        w.record(PAGE, 1);
        w.record(pages * PAGE + PAGE, 1);
        let got = taken(&w, 0);
        assert_eq!(got.len() as u64, pages + 1);
    }
}
