//! The stub domain's ioreq server against a hypervisor (or a guest behind it) that
//! writes anything into the shared pages: arbitrary slot contents in any state, garbage
//! ring pointers and entries, event-channel bits, all between server turns. The server
//! must never panic or loop forever, must only ever answer slots that were READY, and
//! must keep the ring consumable (its read pointer never runs past the write pointer
//! by more than the garbage it was handed).
//!
//! Input: byte 0 picks the machine (bit 0 profile, bits 1-2 vCPUs 1..4). Then commands:
//! a tag byte and its operands:
//! * 0: slot write: slot (mod vCPUs + 1), 32 raw bytes; the state byte becomes READY.
//! * 1: raw slot write: slot, 32 raw bytes as they are (any state).
//! * 2: ring pointers: read u32, write u32 (LE).
//! * 3: ring entry: index u16, 8 raw bytes.
//! * 4: event page: offset u16 (8-aligned), u64.
//! * 5: one `turn()`; 6: `drain_buffered()`.
#![no_main]

use chassis_devices::machine::{BootOptions, Machine, MachineConfig};
use chassis_devices::profile;
use chassis_stubdom::hypercall::Hypercall;
use chassis_stubdom::platform::{GuestWindow, StubPlatform};
use chassis_stubdom::server::{Server, SharedPages};
use hypervisor_abi::bufioreq;
use hypervisor_abi::hypercall::StubOp;
use hypervisor_abi::ioreq::{
    self, IOREQ_SIZE, STATE_BYTE_OFFSET, STATE_IOREQ_READY, STATE_IORESP_READY,
};

/// The state's bits in the state byte.
const STATE_MASK: u8 = 0x0f;
use libfuzzer_sys::fuzz_target;
use std::cell::Cell;

/// The doorbell: every call succeeds; time moves on with each call.
#[derive(Default)]
struct Doorbell {
    now: Cell<u64>,
}

impl Hypercall for Doorbell {
    fn call(&self, op: StubOp, _a0: u64, _a1: u64, _a2: u64) -> u64 {
        self.now.set(self.now.get() + 1000);
        match op {
            StubOp::Now => self.now.get(),
            _ => 0,
        }
    }
}

#[repr(C, align(4096))]
struct Page([u8; 4096]);

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (h, t) = self.0.split_first_chunk::<N>()?;
        self.0 = t;
        Some(*h)
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let vcpus = 1 + u32::from((sel >> 1) & 3);
    let machine = Machine::new(&MachineConfig {
        profile: profile::ALL[usize::from(sel & 1)],
        ram_below_4g: 64 << 20,
        ram_above_4g: 0,
        vcpus,
        serial_ports: 1,
        boot: BootOptions::default(),
    });
    let mut ioreq_page = Box::new(Page([0; 4096]));
    let mut ring = Box::new(Page([0; 4096]));
    let mut events = Box::new(Page([0; 4096]));
    // A small guest window: string I/O with data_is_ptr lands here or is refused.
    let mut guest = vec![0u8; 0x4000];
    // SAFETY: the pages and the window outlive the server (dropped at the end of this
    // closure, after it) and are never moved out of their heap allocations. The
    // server reaches them through raw pointers; this thread alone touches them.
    let (pages, window) = unsafe {
        (
            SharedPages::new(
                ioreq_page.0.as_mut_ptr(),
                ring.0.as_mut_ptr(),
                events.0.as_mut_ptr(),
            ),
            GuestWindow::new(guest.as_mut_ptr(), guest.len() as u64),
        )
    };
    let platform = StubPlatform::new(Doorbell::default(), window, 0, 64 << 20);
    let mut server = Server::new(machine, platform, pages, vcpus);
    let slots = ioreq::platform_slot(vcpus) + 1;
    let mut inp = Input(rest);
    // Bounded by the input length: every command consumes at least its tag.
    while let Some([tag]) = inp.take::<1>() {
        match tag % 7 {
            0 | 1 => {
                let (Some([s]), Some(raw)) = (inp.take::<1>(), inp.take::<IOREQ_SIZE>()) else {
                    break;
                };
                let slot = u32::from(s) % slots;
                let mut raw = raw;
                if tag % 7 == 0 {
                    // The state is the byte's low nibble (data_is_ptr, dir, df above it).
                    raw[STATE_BYTE_OFFSET] =
                        raw[STATE_BYTE_OFFSET] & !STATE_MASK | STATE_IOREQ_READY;
                }
                let p = ioreq_page.0.as_mut_ptr();
                let off = slot as usize * IOREQ_SIZE;
                // SAFETY: slot < MAX_STUB_VCPUS + 1 slots of 32 bytes fit the page.
                unsafe { std::ptr::copy_nonoverlapping(raw.as_ptr(), p.add(off), IOREQ_SIZE) };
                let was_ready = raw[STATE_BYTE_OFFSET] & STATE_MASK == STATE_IOREQ_READY;
                server.turn();
                // SAFETY: as above, a read of the state byte.
                let byte = unsafe { std::ptr::read_volatile(p.add(off + STATE_BYTE_OFFSET)) };
                if was_ready {
                    assert_eq!(
                        byte & STATE_MASK,
                        STATE_IORESP_READY,
                        "a READY slot was not answered"
                    );
                } else {
                    assert_eq!(
                        byte, raw[STATE_BYTE_OFFSET],
                        "a slot that was not READY was touched"
                    );
                }
            }
            2 => {
                let Some(b) = inp.take::<8>() else { break };
                let p = ring.0.as_mut_ptr();
                // SAFETY: the first 8 bytes of the ring page.
                unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), p, 8) };
            }
            3 => {
                let (Some(i), Some(b)) = (inp.take::<2>(), inp.take::<8>()) else {
                    break;
                };
                let idx = u32::from(u16::from_le_bytes(i)) % bufioreq::IOREQ_BUFFER_SLOT_NUM;
                let off = bufioreq::SLOTS_OFFSET + idx as usize * bufioreq::BUF_IOREQ_SIZE;
                // SAFETY: off + 8 <= 4096 (511 slots of 8 bytes after the pointers).
                unsafe {
                    std::ptr::copy_nonoverlapping(b.as_ptr(), ring.0.as_mut_ptr().add(off), 8)
                };
            }
            4 => {
                let (Some(o), Some(v)) = (inp.take::<2>(), inp.take::<8>()) else {
                    break;
                };
                let off = usize::from(u16::from_le_bytes(o)) % 4096 & !7;
                // SAFETY: an aligned u64 inside the event page.
                unsafe {
                    std::ptr::copy_nonoverlapping(v.as_ptr(), events.0.as_mut_ptr().add(off), 8)
                };
                server.pages().ack_events();
            }
            5 => {
                server.turn();
            }
            _ => {
                server.drain_buffered();
                // The consumer caught up, or stopped at one ring's worth.
                let r = bufioreq::read_pointer(&ring.0);
                let w = bufioreq::write_pointer(&ring.0);
                assert!(
                    w.wrapping_sub(r) <= bufioreq::IOREQ_BUFFER_SLOT_NUM,
                    "read pointer {r} past write pointer {w}"
                );
            }
        }
    }
    drop(server);
});
