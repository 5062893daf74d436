//! Rebuilds the crate when a service's migrations change: `sqlx::migrate!` embeds them at
//! compile time, and Cargo would not see a new file in those folders.
fn main() {
    let src = std::path::Path::new("src");
    for entry in std::fs::read_dir(src).expect("services/src").flatten() {
        let migrations = entry.path().join("migrations");
        if migrations.is_dir() {
            println!("cargo:rerun-if-changed={}", migrations.display());
        }
    }
}
