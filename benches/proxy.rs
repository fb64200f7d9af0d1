//! Proxy benchmark (filled in below).

fn main() {}
