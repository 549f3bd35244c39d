//! Makes release builds of the handler re-embed the dashboard when `cargo xtask dashboard`
//! writes a new one. The folder is created when missing so that cargo has something to watch
//! (a missing path would make it rebuild the handler every time).
//!
//! Debug builds do not watch it: rust-embed reads the folder at run time there, so a rebuilt
//! dashboard shows on the next page load without recompiling the handler.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("PROFILE").as_deref() == Ok("release") {
        let dir = std::path::Path::new("../target/dashboard");
        let _ = std::fs::create_dir_all(dir);
        println!("cargo:rerun-if-changed=../target/dashboard");
    }
}
