//! chatd's HTTP server: configuration, routes, extractors, errors, and startup.
#![deny(unsafe_code)]

pub mod backend;
pub mod config;
pub mod console;
pub mod cors;
pub mod error;
pub mod extract;
pub mod import;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod process;
pub mod reindex;
pub mod routes;
pub mod search;
pub mod serve;
pub mod startup;
pub mod telemetry;
pub mod views;

pub use config::{Cli, Config};
pub use startup::Application;
