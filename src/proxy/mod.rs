//! Container mode's reverse proxy: port specifications shared by the deployer and `dewy-proxy`.

pub mod spec;

pub use spec::{PortSpec, Protocol};
