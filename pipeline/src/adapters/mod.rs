//! Adapters behind the ports. `embedded` needs nothing but a data directory.

pub mod embedded;
