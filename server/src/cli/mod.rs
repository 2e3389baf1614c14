//! Command-line tools that run without the web server.

pub mod deid;
pub mod segment;
pub mod analyze;
pub mod assets;
