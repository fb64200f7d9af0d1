//! Entry points for the fuzz targets in `fuzz/`: thin wrappers that feed arbitrary bytes to the
//! parsers dewy runs on input from the network, archives and configuration. Not a stable API.

pub mod archives;
