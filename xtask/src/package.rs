//! `cargo xtask package`: the zip a Linux Function App runs (`az functionapp deployment source
//! config-zip --src dist/functionapp.zip`).
//!
//! Layout, at the zip's root, as the Functions host expects a custom-handler app:
//!
//! ```text
//! host.json                    customHandler -> ./handler functions
//! ServiceBusTrigger/function.json
//! HttpApi/function.json
//! Dashboard/function.json
//! ReconcileTimer/function.json
//! handler                      static (musl) release build, mode 0755
//! www/...                      the built dashboard, when it was built (also a static site)
//! ```
//!
//! The handler is built for `x86_64-unknown-linux-musl`: a static binary runs whatever glibc
//! the Functions host image has.

use anyhow::Result;
use std::path::PathBuf;

pub use super::appzip::write_zip;

/// Builds the release handler and the dashboard, and writes `dist/functionapp.zip`.
pub fn package() -> Result<PathBuf> {
    super::targets()?;
    let mut c = super::cargo();
    c.args([
        "build",
        "-p",
        "handler",
        "--release",
        "--target",
        super::MUSL,
    ]);
    super::run(c)?;
    let handler = super::target_dir()
        .join(super::MUSL)
        .join("release")
        .join("handler");
    let dash = super::dashboard()?;
    let www = dash.join("index.html").is_file().then_some(dash.as_path());
    if www.is_none() {
        eprintln!(
            "note: no built dashboard in {}; the zip has no www/ (the handler serves its embedded copy)",
            dash.display()
        );
    }
    let out = super::root().join("dist").join("functionapp.zip");
    let entries = write_zip(&super::root(), &handler, www, &out)?;
    println!("wrote {} ({} entries)", out.display(), entries.len());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn temp(tag: &str) -> PathBuf {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let p = std::env::temp_dir().join(format!("eda-pkg-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    fn json(zip: &mut zip::ZipArchive<std::fs::File>, name: &str) -> serde_json::Value {
        let mut s = String::new();
        zip.by_name(name).unwrap().read_to_string(&mut s).unwrap();
        serde_json::from_str(&s).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn the_zip_has_the_function_app_layout_and_host_json() {
        let tmp = temp("layout");
        let handler = tmp.join("handler-bin");
        std::fs::write(&handler, b"\x7fELF fake").unwrap();
        let www = tmp.join("www");
        std::fs::create_dir_all(www.join("pkg")).unwrap();
        std::fs::write(www.join("index.html"), "<html></html>").unwrap();
        std::fs::write(www.join("pkg/app_bg.wasm"), b"\0asm").unwrap();
        let out = tmp.join("dist/functionapp.zip");
        let root = super::super::root();
        let names = write_zip(&root, &handler, Some(&www), &out).unwrap();
        assert_eq!(
            names,
            vec![
                "host.json",
                "ServiceBusTrigger/function.json",
                "HttpApi/function.json",
                "Dashboard/function.json",
                "ReconcileTimer/function.json",
                "handler",
                "www/index.html",
                "www/pkg/app_bg.wasm",
            ]
        );

        let mut zip = zip::ZipArchive::new(std::fs::File::open(&out).unwrap()).unwrap();
        assert_eq!(
            zip.by_name("handler").unwrap().unix_mode().unwrap() & 0o777,
            0o755
        );
        assert_eq!(
            zip.by_name("host.json").unwrap().unix_mode().unwrap() & 0o777,
            0o644
        );

        let host = json(&mut zip, "host.json");
        assert_eq!(host["version"], "2.0");
        assert_eq!(
            host["extensionBundle"]["id"],
            "Microsoft.Azure.Functions.ExtensionBundle"
        );
        assert_eq!(host["extensionBundle"]["version"], "[4.*, 5.0.0)");
        let desc = &host["customHandler"]["description"];
        assert_eq!(desc["defaultExecutablePath"], "handler");
        assert_eq!(desc["arguments"], serde_json::json!(["functions"]));
        assert_eq!(host["extensions"]["http"]["routePrefix"], "");
        assert_eq!(
            host["extensions"]["serviceBus"]["autoCompleteMessages"],
            true
        );
        assert!(
            host["extensions"]["serviceBus"]["maxConcurrentCalls"]
                .as_u64()
                .unwrap()
                >= 1
        );

        let sb = json(&mut zip, "ServiceBusTrigger/function.json");
        let trigger = &sb["bindings"][0];
        assert_eq!(trigger["type"], "serviceBusTrigger");
        assert_eq!(trigger["name"], "message");
        assert_eq!(trigger["connection"], "ServiceBusConnection");
        let api = json(&mut zip, "HttpApi/function.json");
        let types: Vec<&str> = api["bindings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, vec!["httpTrigger", "http", "serviceBus"]);
        assert_eq!(api["bindings"][0]["route"], "api/{*path}");
        let timer = json(&mut zip, "ReconcileTimer/function.json");
        assert_eq!(timer["bindings"][0]["type"], "timerTrigger");
        let mut wasm = Vec::new();
        zip.by_name("www/pkg/app_bg.wasm")
            .unwrap()
            .read_to_end(&mut wasm)
            .unwrap();
        assert_eq!(wasm, b"\0asm");
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn a_missing_handler_binary_is_an_error() {
        let tmp = temp("missing");
        let err = write_zip(
            &super::super::root(),
            &tmp.join("nope"),
            None,
            &tmp.join("o.zip"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("no handler binary"));
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
