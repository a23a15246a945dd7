//! The chassis toolstack as a library: the xl.cfg parser ([`config`]) and the key
//! validation that turns a parsed config into a domain ([`domain_config`]). The `chassis`
//! binary (`main.rs`) is the command line around them; the fuzz targets in
//! `toolstack/fuzz` call them directly.

pub mod config;
pub mod domain_config;
