//! proxyd: a reverse proxy and HTTP server in the NGINX process model.

pub mod config;
pub mod http;
pub mod channel;
pub mod logging;
pub mod router;
pub mod worker;
