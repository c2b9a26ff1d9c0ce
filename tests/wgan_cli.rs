//! The `wgan` example end to end: a few steps of WGAN, WGAN-GP and WGAN-CT on the real data, their files
//! and checkpoints, resuming, and the errors a user sees for bad flags.

mod common;

use std::path::Path;

use common::{
    assert_clean_failure, assert_gan_files, image_size, latest_checkpoint, read_metrics, run,
    run_ok,
};

/// The flags every run here shares, writing to `out`.
fn common_flags(out: &Path) -> String {
    format!(
        "--backend flex --batch-size 16 --log-every 1 --n-critic 2 --out {}",
        out.display()
    )
}

#[test]
fn wgan_gp_writes_grids_metrics_and_a_checkpoint_and_resumes() {
    let out = tempfile::tempdir().unwrap();
    let flags = common_flags(out.path());
    run_ok("wgan", &format!("{flags} --loss wgan-gp --max-steps 2"));
    assert_gan_files(out.path());
    let metrics = read_metrics(out.path());
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

    let checkpoint = latest_checkpoint(out.path());
    assert_eq!(checkpoint.state.step, 2);
    assert_eq!(checkpoint.state.model, "wgan-gp");
    assert!(checkpoint.dir.join("critic.bpk").exists());

    let resumed = run_ok(
        "wgan",
        &format!("{flags} --loss wgan-gp --max-steps 3 --resume"),
    );
    assert!(resumed.contains("resumed from"), "{resumed}");
    assert_eq!(latest_checkpoint(out.path()).state.step, 3);

    // A WGAN run cannot resume a WGAN-GP checkpoint.
    let other = run(
        "wgan",
        &format!("{flags} --loss wgan --max-steps 4 --resume"),
    );
    assert_clean_failure(&other, &["wgan-gp", "not `wgan`"]);

    // `sample` draws from the run's generator into <run>/samples/sample.png, 8 a row.
    run_ok(
        "wgan",
        &format!(
            "sample --backend flex --count 10 --from {}",
            out.path().display()
        ),
    );
    assert_eq!(image_size(out.path().join("samples/sample.png")), (242, 62));
}

#[test]
fn wgan_with_clipping_runs() {
    let out = tempfile::tempdir().unwrap();
    let flags = common_flags(out.path());
    run_ok("wgan", &format!("{flags} --loss wgan --max-steps 1"));
    let metrics = read_metrics(out.path());
    let row: Vec<f64> = metrics
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(row[6], 0.0, "no penalty with clipping");
    assert!(row[5] > 0.0, "the gradient norm is reported");
    assert_eq!(latest_checkpoint(out.path()).state.model, "wgan");

    // The critic has no PyTorch counterpart: it keeps its own names, leaves in PyTorch's style.
    let exported = run_ok("wgan", &format!("export --from {}", out.path().display()));
    assert!(exported.contains("critic.safetensors"), "{exported}");
    assert!(out.path().join("export/generator.safetensors").exists());
}

#[test]
fn wgan_ct_logs_the_consistency_term() {
    let out = tempfile::tempdir().unwrap();
    let flags = common_flags(out.path());
    run_ok("wgan", &format!("{flags} --loss wgan-ct --max-steps 1"));
    let metrics = read_metrics(out.path());
    let lines: Vec<&str> = metrics.lines().collect();
    assert_eq!(
        lines[0],
        "step,epoch,loss_critic,loss_g,wasserstein,grad_norm,penalty,consistency,images_per_sec,elapsed_s"
    );
    // Two dropout passes over the same images differ: the term is positive.
    let row: Vec<f64> = lines[1].split(',').map(|v| v.parse().unwrap()).collect();
    assert!(row[7] > 0.0, "consistency {}", row[7]);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["loss"], "wgan-ct");
    assert_eq!(config["ct_lambda"], 2.0);
    assert_eq!(config["ct_margin"], 0.0);
    assert_eq!(config["dropout"], 0.5);
    assert_eq!(latest_checkpoint(out.path()).state.model, "wgan-ct");
    run_ok(
        "wgan",
        &format!(
            "sample --backend flex --count 4 --from {}",
            out.path().display()
        ),
    );
}

#[test]
fn bad_flags_get_clear_errors() {
    assert_clean_failure(&run("wgan", "--dropout 1"), &["--dropout", "below 1"]);
    assert_clean_failure(&run("wgan", "--ct-lambda -2"), &["--ct-lambda"]);
    assert_clean_failure(&run("wgan", "--loss wgan-xx"), &["--loss", "wgan-gp"]);
    assert_clean_failure(&run("wgan", "--n-critic 0"), &["--n-critic"]);
    assert_clean_failure(&run("wgan", "--clip -0.01"), &["--clip", "positive"]);
    assert_clean_failure(&run("wgan", "--gp-lambda nan"), &["--gp-lambda"]);
}
