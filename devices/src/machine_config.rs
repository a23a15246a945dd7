//! [`MachineConfig`] as bytes: how the hypervisor hands a stub domain the config its
//! machine is built from, so stubdom mode calls the same `Machine::new` with the same
//! value as process mode.
//!
//! Wire format (chassis, version 1; little endian), at most [`MAX_LEN`] bytes:
//!
//! | off | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | magic "CHMC" |
//! | 4 | 2 | version = 1 |
//! | 6 | 1 | profile name length n (1..=64) |
//! | 7 | n | profile name (`device_model_version` spelling) |
//! | | 8 | RAM below 4 GiB |
//! | | 8 | RAM above 4 GiB |
//! | | 4 | vCPUs |
//! | | 1 | serial ports (0..=2) |
//! | | 1 | show boot menu (0/1) |
//! | | 1 | boot-fail wait present (0/1) |
//! | | 4 | boot-fail wait ms (0 when absent) |
//! | | 2 | bootorder length m (0 = none) |
//! | | m | bootorder (UTF-8) |
//!
//! The reader takes the bytes from a page the stub domain cannot trust more than any
//! other input: every field is checked, trailing bytes are refused, nothing panics.

use alloc::string::String;
use alloc::vec::Vec;

use crate::machine::{BootOptions, MachineConfig};
use crate::profile;

pub const MAGIC: [u8; 4] = *b"CHMC";
pub const VERSION: u16 = 1;
/// Encoded configs fit one 4 KiB page.
pub const MAX_LEN: usize = 4096;
const MAX_NAME: usize = 64;

/// Why config bytes were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    Truncated,
    BadMagic,
    UnsupportedVersion(u16),
    UnknownProfile,
    /// A field holds an impossible value (its name).
    Invalid(&'static str),
    /// Bytes after the last field.
    TrailingBytes,
    /// The encoded form would not fit [`MAX_LEN`].
    TooLong,
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ConfigError> {
        let end = self.at.checked_add(n).ok_or(ConfigError::Truncated)?;
        let s = self.b.get(self.at..end).ok_or(ConfigError::Truncated)?;
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, ConfigError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, ConfigError> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, ConfigError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<u64, ConfigError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn flag(&mut self, what: &'static str) -> Result<bool, ConfigError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(ConfigError::Invalid(what)),
        }
    }
}

impl MachineConfig {
    /// The config as bytes (see the module table).
    pub fn encode(&self) -> Result<Vec<u8>, ConfigError> {
        let name = self.profile.name.as_bytes();
        let order = self.boot.bootorder.as_deref().unwrap_or("").as_bytes();
        if name.is_empty() || name.len() > MAX_NAME {
            return Err(ConfigError::Invalid("profile name"));
        }
        let mut b = Vec::with_capacity(64 + order.len());
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.push(name.len() as u8);
        b.extend_from_slice(name);
        b.extend_from_slice(&self.ram_below_4g.to_le_bytes());
        b.extend_from_slice(&self.ram_above_4g.to_le_bytes());
        b.extend_from_slice(&self.vcpus.to_le_bytes());
        b.push(self.serial_ports);
        b.push(self.boot.show_boot_menu as u8);
        b.push(self.boot.boot_fail_wait_ms.is_some() as u8);
        b.extend_from_slice(&self.boot.boot_fail_wait_ms.unwrap_or(0).to_le_bytes());
        let m = u16::try_from(order.len()).map_err(|_| ConfigError::TooLong)?;
        b.extend_from_slice(&m.to_le_bytes());
        b.extend_from_slice(order);
        if b.len() > MAX_LEN {
            return Err(ConfigError::TooLong);
        }
        Ok(b)
    }

    /// Decode and check bytes from [`MachineConfig::encode`].
    pub fn decode(b: &[u8]) -> Result<MachineConfig, ConfigError> {
        if b.len() > MAX_LEN {
            return Err(ConfigError::TooLong);
        }
        let mut r = Reader { b, at: 0 };
        if r.take(4)? != MAGIC {
            return Err(ConfigError::BadMagic);
        }
        let version = r.u16()?;
        if version != VERSION {
            return Err(ConfigError::UnsupportedVersion(version));
        }
        let n = r.u8()? as usize;
        if n == 0 || n > MAX_NAME {
            return Err(ConfigError::Invalid("profile name"));
        }
        let name = core::str::from_utf8(r.take(n)?).map_err(|_| ConfigError::UnknownProfile)?;
        let profile = profile::by_name(name).ok_or(ConfigError::UnknownProfile)?;
        let ram_below_4g = r.u64()?;
        let ram_above_4g = r.u64()?;
        // Page-granular, below the 4 GiB line, and the sum must not overflow.
        if ram_below_4g == 0 || ram_below_4g % 4096 != 0 || ram_below_4g > 1 << 32 {
            return Err(ConfigError::Invalid("ram_below_4g"));
        }
        if ram_above_4g % 4096 != 0 || ram_above_4g.checked_add(1 << 32).is_none() {
            return Err(ConfigError::Invalid("ram_above_4g"));
        }
        let vcpus = r.u32()?;
        if vcpus == 0 || vcpus > 255 {
            return Err(ConfigError::Invalid("vcpus"));
        }
        let serial_ports = r.u8()?;
        if serial_ports > 2 {
            return Err(ConfigError::Invalid("serial_ports"));
        }
        let show_boot_menu = r.flag("show_boot_menu")?;
        let has_wait = r.flag("boot_fail_wait")?;
        let wait = r.u32()?;
        if !has_wait && wait != 0 {
            return Err(ConfigError::Invalid("boot_fail_wait"));
        }
        let m = r.u16()? as usize;
        let order = r.take(m)?;
        let bootorder = match m {
            0 => None,
            _ => Some(String::from(
                core::str::from_utf8(order).map_err(|_| ConfigError::Invalid("bootorder"))?,
            )),
        };
        if r.at != b.len() {
            return Err(ConfigError::TrailingBytes);
        }
        Ok(MachineConfig {
            profile,
            ram_below_4g,
            ram_above_4g,
            vcpus,
            serial_ports,
            boot: BootOptions {
                show_boot_menu,
                boot_fail_wait_ms: has_wait.then_some(wait),
                bootorder,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{QEMU_XEN, QEMU_XEN_TRADITIONAL};

    fn sample() -> MachineConfig {
        MachineConfig {
            profile: &QEMU_XEN_TRADITIONAL,
            ram_below_4g: 0xe000_0000,
            ram_above_4g: 0x2000_0000,
            vcpus: 2,
            serial_ports: 1,
            boot: BootOptions {
                show_boot_menu: true,
                boot_fail_wait_ms: Some(5000),
                bootorder: Some("/rom@genroms/linuxboot.bin\n".into()),
            },
        }
    }

    fn same(a: &MachineConfig, b: &MachineConfig) -> bool {
        a.profile.name == b.profile.name
            && a.ram_below_4g == b.ram_below_4g
            && a.ram_above_4g == b.ram_above_4g
            && a.vcpus == b.vcpus
            && a.serial_ports == b.serial_ports
            && a.boot == b.boot
    }

    #[test]
    fn round_trips() {
        let c = sample();
        let b = c.encode().unwrap();
        assert_eq!(&b[..4], b"CHMC");
        assert!(same(&MachineConfig::decode(&b).unwrap(), &c));
        let plain = MachineConfig {
            profile: &QEMU_XEN,
            ram_below_4g: 256 << 20,
            ram_above_4g: 0,
            vcpus: 1,
            serial_ports: 1,
            boot: BootOptions::default(),
        };
        let b = plain.encode().unwrap();
        assert!(same(&MachineConfig::decode(&b).unwrap(), &plain));
    }

    #[test]
    fn refuses_bad_bytes() {
        let b = sample().encode().unwrap();
        for n in 0..b.len() {
            assert!(MachineConfig::decode(&b[..n]).is_err(), "prefix {n}");
        }
        let mut long = b.clone();
        long.push(0);
        assert_eq!(
            MachineConfig::decode(&long).err(),
            Some(ConfigError::TrailingBytes)
        );
        let mut x = b.clone();
        x[4] = 2;
        assert_eq!(
            MachineConfig::decode(&x).err(),
            Some(ConfigError::UnsupportedVersion(2))
        );
        let mut x = b.clone();
        x[7] = b'Q';
        assert_eq!(
            MachineConfig::decode(&x).err(),
            Some(ConfigError::UnknownProfile)
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        let good = sample().encode().unwrap();
        let mut s = 0x1234_5678_9abc_def1u64;
        for _ in 0..5000 {
            let mut b = good.clone();
            for _ in 0..3 {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let i = (s as usize) % b.len();
                b[i] = (s >> 40) as u8;
            }
            if let Ok(c) = MachineConfig::decode(&b) {
                assert_eq!(c.encode().unwrap(), b);
            }
        }
    }
}
