//! Command-line tools that run without the web server.

pub mod accuracy;
pub mod analyze;
pub mod assets;
pub mod calibrate;
pub mod deface;
pub mod deid;
pub mod segment;
