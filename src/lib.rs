//! proxyd: a reverse proxy and HTTP server in the NGINX process model.

pub mod alloc_count;
pub mod channel;
pub mod cli;
pub mod config;
pub mod control;
pub mod dns;
pub mod files;
pub mod fuzz;
pub mod hash;
pub mod helper;
pub mod http;
pub mod listeners;
pub mod log_format;
pub mod logging;
pub mod master;
pub mod privileges;
pub mod proctitle;
pub mod router;
pub mod scrub;
pub mod shm;
pub mod text_table;
pub mod tls;
pub mod units;
pub mod worker;
