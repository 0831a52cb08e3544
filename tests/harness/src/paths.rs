//! Where things are: the repository, the built binaries, the cache `hack/` fills.

use std::path::{Path, PathBuf};

/// The repository root: the nearest workspace root above the running test's package
/// (`CARGO_MANIFEST_DIR` as cargo sets it at run time) or the working directory. Not the
/// path baked in at compile time: checkouts sharing one target directory reuse each other's
/// unchanged artifacts, so a baked path can name another checkout.
pub fn repo_root() -> PathBuf {
    let starts = [
        std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from),
        std::env::current_dir().ok(),
    ];
    starts
        .into_iter()
        .flatten()
        .find_map(|start| {
            start
                .ancestors()
                .find(|dir| is_workspace_root(dir))
                .map(Path::to_path_buf)
        })
        .expect("run from inside the sluice repository (no workspace Cargo.toml above)")
}

fn is_workspace_root(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("Cargo.toml")).is_ok_and(|t| t.contains("[workspace]"))
}

/// Directory of the built binaries: `$SLUICE_BIN_DIR`, else the profile directory of the
/// running test executable (which lives in `<target>/<profile>/deps`).
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("SLUICE_BIN_DIR") {
        return dir.into();
    }
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// `$SLUICE_CACHE`, as `hack/lib.sh` sets it (default `~/.cache/sluice`).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("SLUICE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/sluice")
        })
}

/// The Go module cache `hack/` uses (`$GOMODCACHE`, else `$SLUICE_CACHE/go/mod`).
pub fn go_mod_cache() -> PathBuf {
    std::env::var_os("GOMODCACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("go/mod"))
}

/// The `go` binary: `$GO`, else the toolchain `hack/deps.sh` installs, else `go` on PATH.
pub fn go() -> String {
    std::env::var("GO").unwrap_or_else(|_| {
        if Path::new("/usr/local/go/bin/go").exists() {
            "/usr/local/go/bin/go".into()
        } else {
            "go".into()
        }
    })
}
