//! Prints the PipelineDeployment CRD as YAML; `make crds` writes it to `crds/`.
fn main() {
    print!("{}", sluice_operator::crd::crd_yaml());
}
