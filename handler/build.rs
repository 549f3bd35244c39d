//! Makes the handler rebuild when `cargo xtask dashboard` writes a new dashboard, so a release
//! binary always embeds the current one. The folder is created when missing so that cargo has
//! something to watch (a missing path would make it rebuild the handler every time).

fn main() {
    let dir = std::path::Path::new("../target/dashboard");
    let _ = std::fs::create_dir_all(dir);
    println!("cargo:rerun-if-changed=../target/dashboard");
    println!("cargo:rerun-if-changed=build.rs");
}
