//! Serves the dashboard (placeholder until the dashboard branch lands).
use actix_web::web;
use std::path::PathBuf;

/// Mounts the dashboard's static files.
pub fn configure(_cfg: &mut web::ServiceConfig, _dir: Option<PathBuf>) {}
