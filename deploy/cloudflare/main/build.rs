//! Records which schema this worker was built against: the newest file of the SQLite
//! migrations, which `wrangler d1 migrations apply` runs on D1 unchanged.

use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../crates/openma-store-sql/migrations/sqlite");
    println!("cargo::rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".sql"))
        .collect();
    names.sort();
    let latest = names.last().expect("at least one migration");
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("schema.rs");
    std::fs::write(
        out,
        format!("/// The newest migration this build expects D1 to have applied.\npub const LATEST_MIGRATION: &str = {latest:?};\n/// How many migrations there are.\npub const MIGRATIONS: usize = {};\n", names.len()),
    )
    .unwrap();
}
