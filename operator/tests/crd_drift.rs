//! The committed CRD (`crds/`, and its copy in the Helm chart) must be exactly what the Rust
//! types generate: run `make crds` after changing `operator/src/crd/`.

#[test]
fn committed_crd_matches_the_code() {
    let generated = sluice_operator::crd::crd_yaml();
    for path in [
        "crds/sluice.dev_pipelinedeployments.yaml",
        "charts/sluice/files/sluice.dev_pipelinedeployments.yaml",
    ] {
        let full = sluice_harness::repo_root().join(path);
        let committed =
            std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()));
        assert!(committed == generated, "{path} is stale: run `make crds`");
    }
}
