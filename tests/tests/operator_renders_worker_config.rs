//! The worker accepts the configuration the operator renders for every example pipeline:
//! catches format drift between the two binaries (run for real: `sluice-worker --config`).

use serde::Deserialize as _;
use sluice_api::WorkerConfig;
use sluice_e2e::{bin_dir, repo_root};
use sluice_operator::children::config_map::worker_config;
use sluice_operator::crd::PipelineDeployment;
use std::process::Command;

#[test]
fn worker_accepts_every_rendered_example_config() -> anyhow::Result<()> {
    let examples = repo_root().join("manifests/examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples)? {
        let path = entry?.path();
        let text = std::fs::read_to_string(&path)?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc)?;
            if value.get("kind").and_then(|k| k.as_str()) != Some("PipelineDeployment") {
                continue;
            }
            let pd: PipelineDeployment = serde_yaml::from_value(value)?;
            let rendered = worker_config(&pd);
            let file = std::env::temp_dir().join(format!(
                "rendered-{}-{}.yaml",
                std::process::id(),
                checked
            ));
            std::fs::write(&file, serde_yaml::to_string(&rendered)?)?;
            let out = Command::new(bin_dir().join("sluice-worker"))
                .arg("--config")
                .arg(&file)
                .arg("--print-config")
                .output()?;
            assert!(
                out.status.success(),
                "{}: worker rejected the rendered config: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            let effective: WorkerConfig = serde_yaml::from_slice(&out.stdout)?;
            assert_eq!(
                effective,
                rendered,
                "{}: the worker read back a different config",
                path.display()
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "expected several example pipelines, checked {checked}"
    );
    Ok(())
}
