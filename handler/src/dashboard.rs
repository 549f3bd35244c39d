//! Serves the Leptos dashboard: `/` and every non-`/api` path.
//!
//! The files come from `target/dashboard/` (written by `cargo xtask dashboard`), embedded in
//! the binary with rust-embed, or from a folder given with `--dashboard-dir`. Unknown paths get
//! `index.html` (single-page app fallback). A handler built before the dashboard was built still
//! builds and answers with a page that says how to build it.
//!
//! Caching: files with a content hash in their name (`dashboard-<16 hex>.js`, ...) never change,
//! so browsers may keep them for a year; `index.html` is revalidated on every load (ETag), so a
//! new build shows up on the next reload.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Compress;
use actix_web::{web, HttpRequest, HttpResponse};
use rust_embed::RustEmbed;
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// The built dashboard, embedded at compile time (read from disk at run time in debug builds).
#[derive(RustEmbed)]
#[folder = "../target/dashboard/"]
#[allow_missing = true]
struct Embedded;

/// Shown when no dashboard was built into this binary (or the folder has no `index.html`).
const NOT_BUILT: &str = "<!doctype html><meta charset=utf-8><title>Event-Driven ACI</title>\
<p>dashboard not built: run <code>cargo xtask dashboard</code> and rebuild the handler \
(or pass <code>--dashboard-dir</code>). The API is at <code>/api</code>.</p>";

/// Where the files come from; one per server, chosen at start-up.
#[derive(Debug, Clone)]
struct Source {
    /// `--dashboard-dir`: serve this folder instead of the embedded files.
    dir: Option<PathBuf>,
}

/// One file found, ready to send.
struct File {
    /// The path inside the dashboard folder (decides the content type and caching).
    name: String,
    /// The bytes.
    data: Cow<'static, [u8]>,
    /// Validator for `If-None-Match`.
    etag: String,
}

/// Registers the dashboard on every path not taken by an earlier service; mount it after the
/// `/api` routes. `dir` is `--dashboard-dir` (`None`: the embedded files).
pub fn configure(cfg: &mut web::ServiceConfig, dir: Option<PathBuf>) {
    cfg.service(
        web::scope("")
            .app_data(web::Data::new(Source { dir }))
            .wrap(Compress::default())
            .default_service(web::to(serve)),
    );
}

async fn serve(req: HttpRequest, source: web::Data<Source>) -> HttpResponse {
    let path = req.path().trim_start_matches('/');
    if path == "api" || path.starts_with("api/") {
        return HttpResponse::NotFound().json(model::ApiError {
            code: "not_found".into(),
            message: format!("no API route {} {}", req.method(), req.path()),
        });
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return HttpResponse::MethodNotAllowed()
            .insert_header((header::ALLOW, "GET, HEAD"))
            .finish();
    }
    match find(&source, path).await {
        Some(file) => respond(&req, file),
        None => HttpResponse::ServiceUnavailable()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .content_type("text/html; charset=utf-8")
            .body(NOT_BUILT),
    }
}

/// The file at `path`; else the file named like its last segment (assets asked for relative
/// to a deep SPA path); else `index.html`.
async fn find(source: &Source, path: &str) -> Option<File> {
    let last = path.rsplit('/').next().unwrap_or_default();
    for candidate in [path, last] {
        if is_asset(candidate) {
            if let Some(file) = load(source, candidate).await {
                return Some(file);
            }
        }
    }
    load(source, "index.html").await
}

/// True for a plain relative file path with no way out of the folder.
fn is_asset(path: &str) -> bool {
    !path.is_empty()
        && path
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains('\\'))
        && path.rsplit('/').next().is_some_and(|n| n.contains('.'))
}

async fn load(source: &Source, name: &str) -> Option<File> {
    match &source.dir {
        Some(dir) => load_dir(dir, name).await,
        None => Embedded::get(name).map(|f| File {
            name: name.to_string(),
            etag: format!("\"{}\"", hex::encode(&f.metadata.sha256_hash()[..16])),
            data: f.data,
        }),
    }
}

async fn load_dir(dir: &Path, name: &str) -> Option<File> {
    let path = dir.join(name);
    let meta = tokio::fs::metadata(&path)
        .await
        .ok()
        .filter(|m| m.is_file())?;
    let data = tokio::fs::read(&path).await.ok()?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Some(File {
        name: name.to_string(),
        etag: format!("\"{:x}-{modified:x}\"", data.len()),
        data: Cow::Owned(data),
    })
}

fn respond(req: &HttpRequest, file: File) -> HttpResponse {
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == file.etag.as_bytes());
    let mut res = HttpResponse::build(if fresh {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    });
    res.insert_header((header::ETAG, file.etag.as_str()))
        .insert_header((header::CACHE_CONTROL, cache_control(&file.name)))
        .insert_header((
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .insert_header((header::CONTENT_TYPE, content_type(&file.name)));
    if fresh {
        return res.finish();
    }
    res.body(file.data.into_owned())
}

/// The content type of a dashboard file, from its extension.
pub fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Hashed names are immutable; anything else must be revalidated.
fn cache_control(name: &str) -> &'static str {
    if is_hashed(name) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    }
}

/// True for `<stem>-<16 hex digits><rest>`, the names `cargo xtask dashboard` gives assets.
fn is_hashed(name: &str) -> bool {
    let file = name.rsplit('/').next().unwrap_or_default();
    file.split(['-', '_', '.'])
        .any(|part| part.len() == 16 && part.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_decide_type_and_caching() {
        assert_eq!(
            content_type("dashboard-0123456789abcdef_bg.wasm"),
            "application/wasm"
        );
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(
            cache_control("dashboard-0123456789abcdef_bg.wasm"),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(
            cache_control("style-0123456789abcdef.css"),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(cache_control("index.html"), "no-cache");
    }

    /// A dashboard folder with an index and two hashed assets, removed on drop.
    struct Folder(PathBuf);

    impl Folder {
        fn new(files: &[(&str, &str)]) -> Folder {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let dir = std::env::temp_dir().join(format!("eda-dash-{}-{nanos}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            for (name, body) in files {
                std::fs::write(dir.join(name), body).unwrap();
            }
            Folder(dir)
        }
    }

    impl Drop for Folder {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const WASM: &str = "dashboard-0123456789abcdef_bg.wasm";

    async fn get(
        dir: &Path,
        method: Method,
        path: &str,
        etag: Option<&str>,
    ) -> (StatusCode, actix_web::http::header::HeaderMap, String) {
        let app = actix_web::test::init_service(
            actix_web::App::new().configure(|cfg| configure(cfg, Some(dir.to_path_buf()))),
        )
        .await;
        let mut req = actix_web::test::TestRequest::default()
            .method(method)
            .uri(path);
        if let Some(etag) = etag {
            req = req.insert_header((header::IF_NONE_MATCH, etag));
        }
        let res = actix_web::test::call_service(&app, req.to_request()).await;
        let (status, headers) = (res.status(), res.headers().clone());
        let body = actix_web::test::read_body(res).await;
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    #[actix_web::test]
    async fn serves_files_with_types_caching_and_the_spa_fallback() {
        let folder = Folder::new(&[("index.html", "<p>index</p>"), (WASM, "wasm!")]);
        let dir = &folder.0;
        let (status, h, body) = get(dir, Method::GET, "/", None).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "<p>index</p>"));
        assert_eq!(h.get(header::CACHE_CONTROL).unwrap(), "no-cache");
        assert_eq!(
            h.get(header::CONTENT_TYPE).unwrap(),
            "text/html; charset=utf-8"
        );

        let (status, h, body) = get(dir, Method::GET, &format!("/{WASM}"), None).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "wasm!"));
        assert_eq!(h.get(header::CONTENT_TYPE).unwrap(), "application/wasm");
        assert_eq!(
            h.get(header::CACHE_CONTROL).unwrap(),
            "public, max-age=31536000, immutable"
        );
        let etag = h.get(header::ETAG).unwrap().to_str().unwrap().to_string();
        let (status, _, body) = get(dir, Method::GET, &format!("/{WASM}"), Some(&etag)).await;
        assert_eq!((status, body.as_str()), (StatusCode::NOT_MODIFIED, ""));

        for spa in ["/tasks/abc", "/x/y/z", "/missing.js", "/../index.html"] {
            let (status, _, body) = get(dir, Method::GET, spa, None).await;
            assert_eq!(
                (status, body.as_str()),
                (StatusCode::OK, "<p>index</p>"),
                "{spa}"
            );
        }
        let (_, _, body) = get(dir, Method::GET, &format!("/deep/path/{WASM}"), None).await;
        assert_eq!(body, "wasm!", "assets asked for relative to a deep path");

        let (status, h, _) = get(dir, Method::GET, "/api/nope", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(h.get(header::CONTENT_TYPE).unwrap(), "application/json");
        let (status, _, _) = get(dir, Method::POST, "/", None).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    }

    #[actix_web::test]
    async fn an_unbuilt_dashboard_says_how_to_build_it() {
        let folder = Folder::new(&[]);
        let (status, _, body) = get(&folder.0, Method::GET, "/", None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body.contains("dashboard not built: run <code>cargo xtask dashboard</code>"),
            "{body}"
        );
    }

    #[test]
    fn only_plain_relative_paths_are_assets() {
        assert!(is_asset("dashboard.js"));
        assert!(is_asset("snippets/x/inline0.js"));
        for bad in [
            "",
            "../etc/passwd",
            "a/../../b.js",
            "a//b.js",
            "tasks/abc",
            "./x.js",
            "a\\..\\b.js",
        ] {
            assert!(!is_asset(bad), "{bad}");
        }
    }
}
