//! Integration tests: services in-process on port 0, real HTTP.

mod config_files;
mod errors;
mod openapi;
mod panics;
mod shutdown;
mod startup;
