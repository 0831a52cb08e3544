// sqlx::migrate! embeds worker/migrations at compile time; without this a new or changed
// migration alone would not rebuild the worker.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
