//! `cargo xtask dashboard`: builds the Leptos dashboard into a folder of static files.
//!
//! Steps, all from a fresh clone with nothing but rustup and cargo:
//! 1. `rustup target add wasm32-unknown-unknown` when the target is missing;
//! 2. `cargo build -p dashboard-wasm --target wasm32-unknown-unknown --profile release-small`, in a
//!    target directory of its own so it never waits on (or invalidates) the host build;
//! 3. wasm-bindgen, run as a library (`wasm-bindgen-cli-support`, pinned with `=` to the same
//!    version as the app's `wasm-bindgen`, which is what the generated glue requires);
//! 4. `wasm-opt -Oz` when binaryen is installed (skipped with a note otherwise);
//! 5. `index.html`, the stylesheet, the JS glue and the `.wasm` into the output folder, the last
//!    three under content-hashed names so the handler can let browsers cache them forever.

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The wasm target the dashboard is compiled for.
const TARGET: &str = "wasm32-unknown-unknown";
/// The cargo profile used (workspace `Cargo.toml`: opt-level z, fat LTO, panic abort).
const PROFILE: &str = "release-small";
/// The size the design asks the bundle (JS + WASM, gzip) to stay under.
const BUDGET_GZIP: usize = 300 * 1024;

/// The workspace root (this crate lives one level below it).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// Where the handler embeds the dashboard from (`handler/src/dashboard.rs` reads this folder).
pub fn default_out_dir() -> PathBuf {
    workspace().join("target").join("dashboard")
}

/// Builds the dashboard into `out_dir` and prints its size.
pub fn build(out_dir: &Path) -> Result<()> {
    ensure_target()?;
    let wasm = compile()?;
    let stage = wasm_target_dir().join("bindgen");
    let _ = std::fs::remove_dir_all(&stage);
    bindgen(&wasm, &stage)?;
    optimise(&stage.join("dashboard_bg.wasm"))?;
    let (raw, gz) = publish(&stage, out_dir)?;
    println!(
        "dashboard: {} (JS + WASM {:.1} KiB raw, {:.1} KiB gzip)",
        out_dir.display(),
        raw as f64 / 1024.0,
        gz as f64 / 1024.0
    );
    if gz > BUDGET_GZIP {
        println!(
            "dashboard: WARNING: over the {} KiB gzip budget",
            BUDGET_GZIP / 1024
        );
    }
    Ok(())
}

fn ensure_target() -> Result<()> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match out {
        Ok(o)
            if String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == TARGET) =>
        {
            Ok(())
        }
        Ok(_) => run(Command::new("rustup").args(["target", "add", TARGET])),
        // No rustup (a distribution toolchain): let cargo say whether the target is there.
        Err(_) => Ok(()),
    }
}

/// The wasm build's own target directory: beside the host one, never the same.
fn wasm_target_dir() -> PathBuf {
    let host = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    host.join("wasm")
}

fn compile() -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let dir = wasm_target_dir();
    run(Command::new(cargo)
        .current_dir(workspace())
        .env("CARGO_TARGET_DIR", &dir)
        // Keep the `target_features` section: wasm-bindgen reads it (wasm-opt strips later).
        .env("CARGO_PROFILE_RELEASE_SMALL_STRIP", "false")
        .args([
            "build",
            "-p",
            "dashboard-wasm",
            "--target",
            TARGET,
            "--profile",
            PROFILE,
        ]))?;
    Ok(dir.join(TARGET).join(PROFILE).join("dashboard_wasm.wasm"))
}

fn bindgen(wasm: &Path, stage: &Path) -> Result<()> {
    wasm_bindgen_cli_support::Bindgen::new()
        .input_path(wasm)
        .out_name("dashboard")
        .web(true)?
        .typescript(false)
        .omit_default_module_path(true)
        .remove_producers_section(true)
        .remove_name_section(true)
        .generate(stage)
        .context("wasm-bindgen")
}

fn optimise(wasm: &Path) -> Result<()> {
    if Command::new("wasm-opt").arg("--version").output().is_err() {
        println!(
            "dashboard: wasm-opt not found (install binaryen); the .wasm is not size-optimised"
        );
        return Ok(());
    }
    let before = walrus::Module::from_file(wasm)?;
    let tmp = wasm.with_extension("opt.wasm");
    run(Command::new("wasm-opt")
        .arg("-Oz")
        .args([
            "--enable-bulk-memory",
            "--enable-nontrapping-float-to-int",
            "--enable-sign-ext",
        ])
        .args([
            "--enable-mutable-globals",
            "--enable-reference-types",
            "--enable-multivalue",
        ])
        .arg(wasm)
        .arg("-o")
        .arg(&tmp))?;
    let mut after = walrus::Module::from_file(&tmp)?;
    if repoint_table_exports(&before, &mut after) {
        after.emit_wasm_file(wasm)?;
        std::fs::remove_file(&tmp)?;
    } else {
        std::fs::rename(&tmp, wasm)?;
    }
    Ok(())
}

/// Works around binaryen <= 108 (Debian 12's), which writes every table export as table 0:
/// wasm-bindgen's `__wbindgen_externrefs` (an externref table) then points at the funcref
/// table and the page fails with "Table.set(): Argument 1 is invalid for table". Points each
/// exported table back at the table of the element type it had before wasm-opt. Returns
/// whether anything was changed.
fn repoint_table_exports(before: &walrus::Module, after: &mut walrus::Module) -> bool {
    let wanted: Vec<(String, walrus::RefType)> = before
        .exports
        .iter()
        .filter_map(|e| match e.item {
            walrus::ExportItem::Table(t) => Some((e.name.clone(), before.tables.get(t).element_ty)),
            _ => None,
        })
        .collect();
    let mut changed = false;
    for (name, ty) in wanted {
        let of_type: Vec<walrus::TableId> = after
            .tables
            .iter()
            .filter(|t| t.element_ty == ty)
            .map(|t| t.id())
            .collect();
        let [table] = of_type.as_slice() else {
            continue;
        };
        for export in after.exports.iter_mut().filter(|e| e.name == name) {
            if !matches!(export.item, walrus::ExportItem::Table(t) if t == *table) {
                export.item = walrus::ExportItem::Table(*table);
                changed = true;
            }
        }
    }
    changed
}

/// Writes the hashed JS, WASM and CSS plus `index.html` into `out_dir`; returns the raw and
/// gzip size of JS + WASM.
fn publish(stage: &Path, out_dir: &Path) -> Result<(usize, usize)> {
    let js = std::fs::read(stage.join("dashboard.js"))?;
    let wasm = std::fs::read(stage.join("dashboard_bg.wasm"))?;
    let statics = workspace().join("dashboard-wasm").join("static");
    let css = std::fs::read(statics.join("style.css"))?;
    let html = std::fs::read_to_string(statics.join("index.html"))?;
    let tag = format!("{:016x}", fnv1a(&[&js, &wasm, &css]));
    let (js_name, wasm_name) = (
        format!("dashboard-{tag}.js"),
        format!("dashboard-{tag}_bg.wasm"),
    );
    let css_name = format!("style-{:016x}.css", fnv1a(&[&css]));
    clean(out_dir)?;
    std::fs::write(out_dir.join(&js_name), &js)?;
    std::fs::write(out_dir.join(&wasm_name), &wasm)?;
    std::fs::write(out_dir.join(&css_name), &css)?;
    let snippets = stage.join("snippets");
    if snippets.is_dir() {
        copy_dir(&snippets, &out_dir.join("snippets"))?;
    }
    let html = html
        .replace("{{JS}}", &js_name)
        .replace("{{WASM}}", &wasm_name)
        .replace("{{CSS}}", &css_name);
    std::fs::write(out_dir.join("index.html"), html)?;
    let raw = js.len() + wasm.len();
    Ok((raw, gzip_len(&js)? + gzip_len(&wasm)?))
}

/// Empties `out_dir` of what an earlier build wrote (old hashed names), creating it if needed.
fn clean(out_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(out_dir)?;
    for entry in std::fs::read_dir(out_dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = name == "index.html"
            || name == "snippets"
            || (name.starts_with("dashboard-")
                && (name.ends_with(".js") || name.ends_with(".wasm")))
            || (name.starts_with("style-") && name.ends_with(".css"));
        if !ours {
            continue;
        }
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), dest)?;
        }
    }
    Ok(())
}

/// FNV-1a 64: a stable content tag for file names (not security: names only bust caches).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in parts.iter().flat_map(|p| p.iter()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Gzip size at the best level: what a browser downloads from a server that compresses.
pub fn gzip_len(bytes: &[u8]) -> Result<usize> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes)?;
    Ok(enc.finish()?.len())
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{:?} failed: {status}", cmd.get_program());
    }
    Ok(())
}
