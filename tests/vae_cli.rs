//! The `vae` example end to end: a few steps on the real data, the per-epoch files, the
//! analysis that follows training, `analyze` on the run folder, and bad input.

mod common;

use std::path::Path;

use common::{
    assert_clean_failure, assert_files, image_size, read_metrics, run, run_in_new_folder, run_ok,
};

fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

/// A quick analysis: 300 images of each split, a short t-SNE.
const QUICK_ANALYSIS: &str = "--analysis-images 300 --tsne-epochs 250";

#[test]
fn a_few_steps_then_the_analysis_and_analyze_again_from_the_checkpoint() {
    let out = run_in_new_folder(
        "vae",
        &format!("--backend flex --batch-size 32 --latent-dim 4 --max-steps 4 {QUICK_ANALYSIS}"),
    );
    let out_arg = out.path().to_str().unwrap();

    assert_files(
        out.path(),
        &[
            "recon/epoch_001.png",
            "samples/epoch_001.png",
            "metrics.csv",
            "config.json",
            "report.json",
            "latent_map.png",
            "interpolation.png",
            "arithmetic.png",
            "priors.png",
        ],
    );
    let size = |file: &str| image_size(out.path().join(file));
    // 8 tiles of 28 px with 2 px padding: 8 * 30 + 2.
    assert_eq!(size("samples/epoch_001.png"), (242, 242));
    assert_eq!(size("recon/epoch_001.png"), (242, 242));
    // 6 pairs, 12 columns: the two originals and 10 points between them.
    assert_eq!(size("interpolation.png"), (12 * 30 + 2, 6 * 30 + 2));
    assert_eq!(size("arithmetic.png"), (5 * 30 + 2, 5 * 30 + 2));
    // Three 8x8 grids with 12 px between them.
    assert_eq!(size("priors.png"), (3 * 242 + 2 * 12, 242));

    let metrics = read_metrics(out.path());
    let lines: Vec<&str> = metrics.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "header and one row for the one (partial) epoch:\n{metrics}"
    );
    let header: Vec<&str> = lines[0].split(',').collect();
    let row: Vec<f64> = lines[1].split(',').map(|v| v.parse().unwrap()).collect();
    let column = |name: &str| row[header.iter().position(|h| *h == name).unwrap()];
    assert_eq!(column("step"), 4.0);
    // -ELBO = reconstruction + KL, on both splits.
    for split in ["train", "test"] {
        let (recon, kl, elbo) = (
            column(&format!("{split}_recon")),
            column(&format!("{split}_kl")),
            column(&format!("{split}_neg_elbo")),
        );
        assert!(recon > 0.0 && kl >= 0.0, "{split}: recon {recon}, kl {kl}");
        assert!(
            (elbo - (recon + kl)).abs() < 1e-6 * elbo.abs().max(1.0),
            "{split}: {elbo} vs {recon} + {kl}"
        );
    }

    let first_report = report(out.path());
    assert_eq!(first_report["model"], "vae");
    assert_eq!(first_report["step"], 4);
    assert_eq!(first_report["latent_map"], "t-SNE");
    let bce = first_report["test_reconstruction_bce"].as_f64().unwrap();
    let mse = first_report["test_mse_per_pixel"].as_f64().unwrap();
    let knn = first_report["knn5_accuracy"].as_f64().unwrap();
    // After 4 steps the decoder is far from good but finite: BCE below 784 ln 2 + slack,
    // MSE of pixels in [0, 1] below 1, and an accuracy a fraction.
    assert!(bce > 0.0 && bce < 800.0, "bce {bce}");
    assert!(mse > 0.0 && mse < 1.0, "mse {mse}");
    assert!((0.0..=1.0).contains(&knn), "knn {knn}");

    // `analyze` on the run folder gives the same numbers (decoding mu is deterministic); the
    // size and kind of the network come from the run's config.json.
    std::fs::remove_file(out.path().join("report.json")).unwrap();
    run_ok(
        "vae",
        &format!("analyze --backend flex --from {out_arg} {QUICK_ANALYSIS}"),
    );
    let second_report = report(out.path());
    for key in [
        "test_reconstruction_bce",
        "test_mse_per_pixel",
        "knn5_accuracy",
    ] {
        let (a, b) = (
            first_report[key].as_f64().unwrap(),
            second_report[key].as_f64().unwrap(),
        );
        assert!(
            (a - b).abs() <= 1e-4 * a.abs().max(1e-3),
            "{key}: {a} vs {b}"
        );
    }

    // `sample` draws from the decoder.
    let grid = out.path().join("drawn.png");
    let sample = format!(
        "sample --backend flex --from {out_arg} --count 16 --output {}",
        grid.display()
    );
    run_ok("vae", &sample);
    assert_eq!(image_size(&grid), (242, 62));
}

#[test]
fn the_autoencoder_has_no_kl_and_a_2d_latent_space_is_mapped_directly() {
    let out = run_in_new_folder(
        "vae",
        "--backend flex --model ae --latent-dim 2 --batch-size 32 --max-steps 2 --analysis-images 200",
    );
    let report = report(out.path());
    assert_eq!(report["model"], "ae");
    assert_eq!(report["latent_map"], "mu");
    assert_eq!(report["test_kl"].as_f64().unwrap(), 0.0);
    let metrics = read_metrics(out.path());
    let last = metrics.lines().last().unwrap();
    let header: Vec<&str> = metrics.lines().next().unwrap().split(',').collect();
    let kl_column = header.iter().position(|h| *h == "train_kl").unwrap();
    assert_eq!(last.split(',').nth(kl_column).unwrap(), "0");

    let exported = run_ok("vae", &format!("export --from {}", out.path().display()));
    assert!(exported.contains("vae.safetensors"), "{exported}");
    let device = burn::tensor::Device::flex();
    let network = genmodels::VaeConfig::new()
        .with_latent_dim(2)
        .with_variational(false)
        .init(&device);
    genmodels::pytorch::load_pytorch(network, out.path().join("export/vae.safetensors")).unwrap();
}

#[test]
fn bad_flags_get_clear_errors() {
    assert_clean_failure(&run("vae", "--latent-dim 1"), &["--latent-dim"]);
    assert_clean_failure(&run("vae", "--beta=-1"), &["--beta", "zero or a positive"]);
    assert_clean_failure(&run("vae", "--model gan"), &["gan", "vae", "ae"]);
    let missing = tempfile::tempdir().unwrap();
    let output = run(
        "vae",
        &format!(
            "analyze --backend flex --from {}",
            missing.path().join("nowhere").to_str().unwrap()
        ),
    );
    assert_clean_failure(&output, &["--from", "nowhere"]);
}
