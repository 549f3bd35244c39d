//! `cargo xtask <command>`: the project's build steps, so a fresh clone needs only Rust.
//!
//! - `start [handler args]`: build the dashboard, the static worker and the handler, then run
//!   local mode (the worker image is built by the handler itself when Docker answers).
//! - `test [cargo test args]`: build what the tests need (static worker, dashboard, the debug
//!   handler binary), then run every test in the workspace.
//! - `worker`: build the static (musl) worker only.
//! - `package`: build the Azure Function App zip, `dist/functionapp.zip` (see [`package`]).
//! - `dashboard [--out DIR]`: build the dashboard only (see `dashboard.rs`).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

mod appzip;
mod dashboard;
mod package;

/// The musl target the worker is built for: a static binary for `FROM scratch` images.
const MUSL: &str = "x86_64-unknown-linux-musl";

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let cmd = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    match cmd.as_str() {
        "start" => start(&rest),
        "test" => test(&rest),
        "worker" => worker().map(drop),
        "package" => package::package().map(drop),
        "dashboard" => match rest.as_slice() {
            [] => dashboard().map(drop),
            [flag, dir] if flag == "--out" => dashboard::build(Path::new(dir)),
            _ => bail!("usage: cargo xtask dashboard [--out DIR]"),
        },
        _ => bail!("usage: cargo xtask <start|test|worker|package|dashboard> [args]"),
    }
}

/// The workspace root (xtask lives one level below it).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is in the workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn run(mut c: Command) -> Result<()> {
    let shown = format!("{c:?}");
    let status = c.status().with_context(|| format!("running {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

/// Adds the rustup targets the build needs (a no-op when they are installed).
fn targets() -> Result<()> {
    let mut c = Command::new("rustup");
    c.args(["target", "add", MUSL, "wasm32-unknown-unknown"]);
    run(c).context("rustup is needed to add the musl and wasm32 targets")
}

/// Builds the static worker; returns its path.
fn worker() -> Result<PathBuf> {
    targets()?;
    let mut c = cargo();
    c.args(["build", "-p", "worker", "--release", "--target", MUSL]);
    run(c)?;
    Ok(target_dir().join(MUSL).join("release").join("worker"))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// Builds the dashboard into `target/dashboard` (the handler embeds or serves it from there).
fn dashboard() -> Result<PathBuf> {
    let out = dashboard::default_out_dir();
    dashboard::build(&out)?;
    Ok(out)
}

fn start(handler_args: &[String]) -> Result<()> {
    let worker = worker()?;
    let dash = dashboard()?;
    let mut c = cargo();
    c.args(["run", "-p", "handler", "--release", "--", "local"]);
    c.arg("--worker-bin")
        .arg(&worker)
        .arg("--dashboard-dir")
        .arg(&dash);
    c.args(handler_args);
    run(c)
}

fn test(cargo_args: &[String]) -> Result<()> {
    let worker = worker()?;
    dashboard()?;
    // The end-to-end tests run the debug `handler` binary (`e2e::faults::handler_bin`); no
    // test target of the handler package needs it, so `cargo test` alone would not build it,
    // and a test cannot build it while cargo holds the target dir. `--workspace --bins --tests`
    // resolves features as the test run does (dev-dependencies included), so the test run
    // compiles nothing again; `--bin handler` alone would, with other features.
    let mut bin = cargo();
    bin.args(["build", "--workspace", "--bins", "--tests"]);
    run(bin)?;
    let mut c = cargo();
    c.args(["test", "--workspace"]);
    c.args(cargo_args);
    c.env("EDA_WORKER_MUSL", &worker);
    run(c)
}
