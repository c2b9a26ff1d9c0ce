//! The `wgan` example end to end: a few steps of WGAN and WGAN-GP on the real data, their files
//! and checkpoints, resuming, and the errors a user sees for bad flags.

mod common;

use genmodels_train::checkpoint::Checkpoints;

use common::{assert_clean_failure, run, run_example, run_ok, stderr};

fn common_flags(out: &str) -> Vec<&str> {
    vec![
        "--backend",
        "flex",
        "--batch-size",
        "16",
        "--log-every",
        "1",
        "--n-critic",
        "2",
        "--out",
        out,
    ]
}

#[test]
fn wgan_gp_writes_grids_metrics_and_a_checkpoint_and_resumes() {
    let out = tempfile::tempdir().unwrap();
    let args = common_flags(out.path().to_str().unwrap());
    let first = run_example(
        "wgan",
        &[&args[..], &["--loss", "wgan-gp", "--max-steps", "2"]].concat(),
    );
    assert!(first.status.success(), "{}", stderr(&first));
    for file in [
        "real.png",
        "samples/epoch_001.png",
        "config.json",
        "metrics.csv",
    ] {
        assert!(out.path().join(file).exists(), "{file} missing");
    }
    let grid = image::open(out.path().join("samples/epoch_001.png")).unwrap();
    assert_eq!((grid.width(), grid.height()), (242, 242));
    let metrics = std::fs::read_to_string(out.path().join("metrics.csv")).unwrap();
    let lines: Vec<&str> = metrics.lines().collect();
    assert_eq!(
        lines[0],
        "step,epoch,loss_critic,loss_g,wasserstein,grad_norm,penalty,images_per_sec,elapsed_s"
    );
    assert_eq!(lines.len(), 1 + 2, "one row per generator step:\n{metrics}");
    // The penalty is logged and positive while the gradient norm is far from 1.
    let row: Vec<f64> = lines[1].split(',').map(|v| v.parse().unwrap()).collect();
    assert!(row[6] > 0.0, "penalty {}", row[6]);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["loss"], "wgan-gp");
    assert_eq!(config["gp_lambda"], 10.0);
    assert_eq!(config["optimizer"]["adam"]["beta_2"], 0.9);

    let checkpoints = Checkpoints::new(out.path().join("checkpoints"));
    let checkpoint = checkpoints.latest().unwrap().unwrap();
    assert_eq!(checkpoint.state.step, 2);
    assert_eq!(checkpoint.state.model, "wgan-gp");
    assert!(checkpoint.dir.join("critic.bpk").exists());

    let resumed = run_example(
        "wgan",
        &[
            &args[..],
            &["--loss", "wgan-gp", "--max-steps", "3", "--resume"],
        ]
        .concat(),
    );
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert!(String::from_utf8_lossy(&resumed.stdout).contains("resumed from"));
    assert_eq!(checkpoints.latest().unwrap().unwrap().state.step, 3);

    // A WGAN run cannot resume a WGAN-GP checkpoint.
    let other = run_example(
        "wgan",
        &[
            &args[..],
            &["--loss", "wgan", "--max-steps", "4", "--resume"],
        ]
        .concat(),
    );
    assert_clean_failure(&other, &["wgan-gp", "not `wgan`"]);

    // `sample` draws from the run's generator into <run>/samples/sample.png, 8 a row.
    run_ok(
        "wgan",
        &format!(
            "sample --backend flex --count 10 --from {}",
            out.path().to_str().unwrap()
        ),
    );
    let grid = image::open(out.path().join("samples/sample.png")).unwrap();
    assert_eq!((grid.width(), grid.height()), (242, 62));
}

#[test]
fn wgan_with_clipping_runs() {
    let out = tempfile::tempdir().unwrap();
    let args = common_flags(out.path().to_str().unwrap());
    let run = run_example(
        "wgan",
        &[&args[..], &["--loss", "wgan", "--max-steps", "1"]].concat(),
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let metrics = std::fs::read_to_string(out.path().join("metrics.csv")).unwrap();
    let row: Vec<f64> = metrics
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(row[6], 0.0, "no penalty with clipping");
    assert!(row[5] > 0.0, "the gradient norm is reported");
    let checkpoint = Checkpoints::new(out.path().join("checkpoints"))
        .latest()
        .unwrap()
        .unwrap();
    assert_eq!(checkpoint.state.model, "wgan");

    // The critic has no PyTorch counterpart: it keeps its own names, leaves in PyTorch's style.
    let exported = run_ok("wgan", &format!("export --from {}", out.path().display()));
    assert!(exported.contains("critic.safetensors"), "{exported}");
    assert!(out.path().join("export/generator.safetensors").exists());
}

#[test]
fn bad_flags_get_clear_errors() {
    assert_clean_failure(&run("wgan", "--loss wgan-xx"), &["--loss", "wgan-gp"]);
    assert_clean_failure(&run("wgan", "--n-critic 0"), &["--n-critic"]);
    assert_clean_failure(&run("wgan", "--clip -0.01"), &["--clip", "positive"]);
    assert_clean_failure(&run("wgan", "--gp-lambda nan"), &["--gp-lambda"]);
}
