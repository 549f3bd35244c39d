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
/// The image of the network sandbox (`containment`): [`pause_program`] alone.
pub const PAUSE_IMAGE: &str = "eda-netns:latest";

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

/// Makes sure [`PAUSE_IMAGE`] holds [`pause_program`]; returns its tag.
pub async fn ensure_pause_image(docker: &Docker) -> Result<&'static str, ImageError> {
    let program = pause_program();
    let hash = hex::encode(Sha256::digest(&program));
    if current_hash(docker, PAUSE_IMAGE).await.as_deref() != Some(hash.as_str()) {
        let dockerfile = format!(
            "FROM scratch\nCOPY pause /pause\nLABEL {WORKER_HASH_LABEL}={hash}\nENTRYPOINT [\"/pause\"]\n"
        );
        let mut tar = tar::Builder::new(Vec::new());
        append_file(&mut tar, "pause", &program).map_err(ImageError::Context)?;
        append_file(&mut tar, "Dockerfile", dockerfile.as_bytes()).map_err(ImageError::Context)?;
        let context = tar.into_inner().map_err(ImageError::Context)?;
        build(docker, PAUSE_IMAGE, context).await?;
    }
    Ok(PAUSE_IMAGE)
}

/// A static x86-64 Linux program that waits forever and does nothing else: the process that
/// keeps a shared network namespace alive (Kubernetes' "pause" container plays the same part).
/// 129 bytes, written here rather than shipped as a binary: a 64-byte ELF header, one 56-byte
/// loadable segment, and nine bytes of code:
///
/// ```text
/// loop: mov eax, 34    ; pause(2): sleep until a signal arrives
///       syscall
///       jmp loop       ; a signal that did not kill us: wait again
/// ```
///
/// The handler talks to a Linux Docker Engine on x86-64 here. ([`pause_program`] is the only
/// machine code in the project; on another architecture, `--task-netns own` needs none.)
pub fn pause_program() -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    const CODE: [u8; 9] = [0xb8, 0x22, 0, 0, 0, 0x0f, 0x05, 0xeb, 0xf7];
    let (ehsize, phsize) = (64u16, 56u16);
    let total = u64::from(ehsize + phsize) + CODE.len() as u64;
    let mut elf = Vec::with_capacity(total as usize);
    elf.extend_from_slice(b"\x7fELF");
    elf.extend_from_slice(&[2, 1, 1, 0]); // 64-bit, little endian, version 1, System V
    elf.extend_from_slice(&[0; 8]);
    elf.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf.extend_from_slice(&0x3eu16.to_le_bytes()); // x86-64
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&(BASE + u64::from(ehsize + phsize)).to_le_bytes()); // entry
    elf.extend_from_slice(&u64::from(ehsize).to_le_bytes()); // program headers' offset
    elf.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    elf.extend_from_slice(&0u32.to_le_bytes()); // flags
    for half in [ehsize, phsize, 1, 0, 0, 0] {
        elf.extend_from_slice(&half.to_le_bytes());
    }
    elf.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    elf.extend_from_slice(&5u32.to_le_bytes()); // read + execute
    for word in [0, BASE, BASE, total, total, 0x1000] {
        elf.extend_from_slice(&word.to_le_bytes());
    }
    elf.extend_from_slice(&CODE);
    elf
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
    fn the_pause_program_is_a_complete_elf() {
        let p = pause_program();
        assert_eq!(p.len(), 129);
        assert_eq!(&p[..4], b"\x7fELF");
        let entry = u64::from_le_bytes(p[24..32].try_into().unwrap());
        assert_eq!(entry, 0x40_0000 + 120, "entry is the first code byte");
        let filesz = u64::from_le_bytes(p[64 + 32..64 + 40].try_into().unwrap());
        assert_eq!(filesz, 129, "the segment maps the whole file");
        assert_eq!(&p[120..], [0xb8, 0x22, 0, 0, 0, 0x0f, 0x05, 0xeb, 0xf7]);
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
