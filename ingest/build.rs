//! Rebuilds the crate when its migrations change: `sqlx::migrate!` embeds them at compile
//! time, and Cargo would not see a new file in that folder.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
