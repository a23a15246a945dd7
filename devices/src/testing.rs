//! Test doubles shared by the device tests.

use crate::platform::{CharSink, DmaError, Platform, PowerRequest, TIMER_COUNT, TimerId};
use alloc::vec;
use alloc::vec::Vec;

/// A platform that records everything a device does and lets a test move time.
pub struct MockPlatform {
    pub now_ns: u64,
    pub wall_base_ns: u64,
    /// Current level of each line (GSI 0..48).
    pub irq_levels: [bool; 48],
    /// Every (gsi, level) transition in order.
    pub irq_log: Vec<(u32, bool)>,
    pub timers: [Option<u64>; TIMER_COUNT],
    pub serial_out: Vec<Vec<u8>>,
    pub debug_out: Vec<u8>,
    pub power: Vec<PowerRequest>,
    pub ram: Vec<u8>,
}

impl Default for MockPlatform {
    fn default() -> Self {
        Self::new()
    }
}

impl MockPlatform {
    pub fn new() -> Self {
        MockPlatform {
            now_ns: 0,
            // 2026-11-23 12:34:56 UTC
            wall_base_ns: 1_795_437_296 * 1_000_000_000,
            irq_levels: [false; 48],
            irq_log: Vec::new(),
            timers: [None; TIMER_COUNT],
            serial_out: vec![Vec::new(), Vec::new()],
            debug_out: Vec::new(),
            power: Vec::new(),
            ram: vec![0; 1 << 20],
        }
    }
    pub fn irq(&self, gsi: u32) -> bool {
        self.irq_levels.get(gsi as usize).copied().unwrap_or(false)
    }
    pub fn timer(&self, id: TimerId) -> Option<u64> {
        self.timers[id.index()]
    }
    /// Advance time by `ns`, without firing timers (the test calls `on_timer`).
    pub fn advance(&mut self, ns: u64) {
        self.now_ns += ns;
    }
}

impl Platform for MockPlatform {
    fn set_irq(&mut self, gsi: u32, level: bool) {
        if let Some(l) = self.irq_levels.get_mut(gsi as usize) {
            *l = level;
        }
        self.irq_log.push((gsi, level));
    }
    fn dma_read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        let end = gpa
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.ram.len() as u64);
        match end {
            Some(end) => {
                buf.copy_from_slice(&self.ram[gpa as usize..end as usize]);
                Ok(())
            }
            None => Err(DmaError::OutOfRange {
                gpa,
                len: buf.len() as u64,
            }),
        }
    }
    fn dma_write(&mut self, gpa: u64, buf: &[u8]) -> Result<(), DmaError> {
        let end = gpa
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.ram.len() as u64);
        match end {
            Some(end) => {
                self.ram[gpa as usize..end as usize].copy_from_slice(buf);
                Ok(())
            }
            None => Err(DmaError::OutOfRange {
                gpa,
                len: buf.len() as u64,
            }),
        }
    }
    fn now_ns(&self) -> u64 {
        self.now_ns
    }
    fn wall_clock_base_ns(&self) -> u64 {
        self.wall_base_ns
    }
    fn set_timer(&mut self, timer: TimerId, deadline_ns: Option<u64>) {
        self.timers[timer.index()] = deadline_ns;
    }
    fn char_out(&mut self, sink: CharSink, bytes: &[u8]) {
        match sink {
            CharSink::Serial(i) => {
                if let Some(s) = self.serial_out.get_mut(i as usize) {
                    s.extend_from_slice(bytes)
                }
            }
            CharSink::DebugCon => self.debug_out.extend_from_slice(bytes),
        }
    }
    fn power(&mut self, request: PowerRequest) {
        self.power.push(request);
    }
}
