//! Serving the HTTP API securely: the Prometheus exporters' web
//! configuration (`--web-config-file`: TLS, mutual TLS, basic auth,
//! security headers), timeouts and a bound on concurrent requests.
//! [`serve`] takes any `axum::Router` and serves it with all of that.

pub mod auth;
pub mod layers;
pub mod serve;
pub mod web_config;

pub use serve::{serve, ServeError, ServeOptions};
pub use web_config::{WebConfig, WebConfigError};
