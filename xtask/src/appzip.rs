//! The Function App zip's layout (see `package.rs`), with no dependency on the rest of xtask:
//! the host harness (`tests/src/host/`, used by `tests/tests/functions_host.rs`) builds its zip
//! with this very code, so the tests read the same `host.json` and `function.json` files a
//! deployment ships.

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// The function folders shipped in the zip, each with its `function.json`.
pub const FUNCTIONS: [&str; 4] = [
    "ServiceBusTrigger",
    "HttpApi",
    "Dashboard",
    "ReconcileTimer",
];

/// Writes the Function App zip from the repository at `root`, the `handler` binary and the
/// dashboard folder `www`; returns the entry names in order.
pub fn write_zip(
    root: &Path,
    handler: &Path,
    www: Option<&Path>,
    out: &Path,
) -> Result<Vec<String>> {
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut zip = ZipWriter::new(file);
    let mut names = Vec::new();
    let text = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .unix_permissions(0o644);
    add(
        &mut zip,
        &mut names,
        "host.json",
        &root.join("host.json"),
        text,
    )?;
    for f in FUNCTIONS {
        let name = format!("{f}/function.json");
        add(&mut zip, &mut names, &name, &root.join(&name), text)?;
    }
    if !handler.is_file() {
        bail!("no handler binary at {}", handler.display());
    }
    add(
        &mut zip,
        &mut names,
        "handler",
        handler,
        text.unix_permissions(0o755),
    )?;
    if let Some(www) = www {
        for path in files_under(www)? {
            let rel = path.strip_prefix(www)?.to_string_lossy().replace('\\', "/");
            add(&mut zip, &mut names, &format!("www/{rel}"), &path, text)?;
        }
    }
    zip.finish().context("finishing the zip")?;
    Ok(names)
}

fn add(
    zip: &mut ZipWriter<std::fs::File>,
    names: &mut Vec<String>,
    name: &str,
    src: &Path,
    options: SimpleFileOptions,
) -> Result<()> {
    let bytes = std::fs::read(src).with_context(|| format!("reading {}", src.display()))?;
    zip.start_file(name, options)?;
    zip.write_all(&bytes)?;
    names.push(name.to_string());
    Ok(())
}

/// Every file under `dir`, sorted, so the zip is the same for the same input.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}
