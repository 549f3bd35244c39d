//! The worker image: built here, from the static worker binary, because no registry can be
//! reached (and none is needed: the image is one file).
//!
//! [`ensure_worker_image`] builds `FROM scratch` with the worker at `/worker` as entrypoint, from
//! an in-memory tar sent to the Engine's build API. The image carries the worker's SHA-256 as a
//! label, so a rebuilt worker replaces a stale image of the same tag instead of being ignored.
//! Optionally a static busybox is added as `/bin/busybox` with `/bin/sh` and friends linked to
//! it, so tests (and users) can run `worker -- sh -c '...'`.

use bollard::query_parameters::BuildImageOptionsBuilder;
use bollard::Docker;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::path::Path;

/// Image label holding the SHA-256 of the worker binary inside.
pub const WORKER_HASH_LABEL: &str = "eda.worker.sha256";

/// Busybox applets linked in `/bin` when busybox is included.
const APPLETS: &[&str] = &[
    "sh", "cat", "echo", "head", "tr", "sleep", "yes", "dd", "kill", "ls", "env", "true", "false",
    "printf", "seq", "wc",
];

/// Why the worker image could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A binary to put in the image could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The build context could not be assembled.
    #[error("cannot assemble the build context: {0}")]
    Context(std::io::Error),
    /// The Engine refused or failed the build (or could not be reached).
    #[error("image build failed: {0}")]
    Build(String),
}

/// Makes sure `tag` is the worker image around `worker_bin` (which must be statically linked,
/// e.g. the `x86_64-unknown-linux-musl` build). Builds it when the tag is missing or holds a
/// different worker. `busybox`: a static busybox to include (Debian `busybox-static`'s
/// `/bin/busybox`). Returns whether it built.
pub async fn ensure_worker_image(
    docker: &Docker,
    tag: &str,
    worker_bin: &Path,
    busybox: Option<&Path>,
) -> Result<bool, ImageError> {
    let worker = read(worker_bin)?;
    let hash = hex::encode(Sha256::digest(&worker));
    if current_hash(docker, tag).await.as_deref() == Some(hash.as_str()) {
        return Ok(false);
    }
    let busybox = busybox.map(read).transpose()?;
    let context = build_context(&worker, &hash, busybox.as_deref()).map_err(ImageError::Context)?;
    build(docker, tag, context).await?;
    Ok(true)
}

fn read(path: &Path) -> Result<Vec<u8>, ImageError> {
    std::fs::read(path).map_err(|source| ImageError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// The worker hash label of the image `tag`, if it exists.
async fn current_hash(docker: &Docker, tag: &str) -> Option<String> {
    let image = docker.inspect_image(tag).await.ok()?;
    image.config?.labels?.remove(WORKER_HASH_LABEL)
}

/// The tar build context: Dockerfile, worker, optional busybox and its applet links.
fn build_context(worker: &[u8], hash: &str, busybox: Option<&[u8]>) -> std::io::Result<Vec<u8>> {
    let mut dockerfile = format!(
        "FROM scratch\nCOPY worker /worker\nENV PATH=/bin\nLABEL {WORKER_HASH_LABEL}={hash}\n"
    );
    let mut tar = tar::Builder::new(Vec::new());
    append_file(&mut tar, "worker", worker)?;
    if let Some(busybox) = busybox {
        dockerfile.push_str("COPY bin /bin\n");
        append_file(&mut tar, "bin/busybox", busybox)?;
        for applet in APPLETS {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            header.set_mode(0o777);
            tar.append_link(&mut header, format!("bin/{applet}"), "busybox")?;
        }
    }
    dockerfile.push_str("ENTRYPOINT [\"/worker\"]\n");
    append_file(&mut tar, "Dockerfile", dockerfile.as_bytes())?;
    tar.into_inner()
}

fn append_file(tar: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o755);
    header.set_cksum();
    tar.append_data(&mut header, path, data)
}

/// Sends the context to the Engine's build API and waits for the result.
async fn build(docker: &Docker, tag: &str, context: Vec<u8>) -> Result<(), ImageError> {
    let options = BuildImageOptionsBuilder::new()
        .dockerfile("Dockerfile")
        .t(tag)
        .rm(true)
        .forcerm(true)
        .build();
    let body = bollard::body_full(context.into());
    let mut progress = docker.build_image(options, None, Some(body));
    while let Some(step) = progress.next().await {
        let info = step.map_err(|e| ImageError::Build(e.to_string()))?;
        if let Some(detail) = info.error_detail {
            return Err(ImageError::Build(detail.message.unwrap_or_default()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_holds_dockerfile_worker_and_links() {
        let tar = build_context(b"ELF", "abc", Some(b"BB")).unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut names = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().display().to_string();
            if path == "Dockerfile" {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
                assert!(text.starts_with("FROM scratch\n"), "{text}");
                assert!(text.contains("LABEL eda.worker.sha256=abc"));
                assert!(text.ends_with("ENTRYPOINT [\"/worker\"]\n"));
            }
            if path == "bin/sh" {
                assert_eq!(
                    entry.link_name().unwrap().unwrap().to_str(),
                    Some("busybox")
                );
            }
            names.push(path);
        }
        for want in ["worker", "bin/busybox", "bin/sh", "Dockerfile"] {
            assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
        }
    }

    #[test]
    fn without_busybox_there_is_no_bin() {
        let tar = build_context(b"ELF", "abc", None).unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        for entry in archive.entries().unwrap() {
            let path = entry.unwrap().path().unwrap().display().to_string();
            assert!(!path.starts_with("bin"), "{path}");
        }
    }
}
