//! The `eval` example end to end on a DCGAN trained for two steps: the report, the cached
//! reference statistics, the exported samples read back by the data crate, and bad input.

mod common;

use genmodels_data::idx::read_images;
use genmodels_train::eval::reference_path;

use common::{assert_clean_failure, run, run_example, run_ok, stderr};

#[test]
fn a_dcgan_checkpoint_is_scored_cached_and_exported() {
    let out = tempfile::tempdir().unwrap();
    let run_dir = out.path().join("dcgan");
    let run_arg = run_dir.to_str().unwrap();
    run_ok(
        "dcgan",
        &format!("--backend flex --batch-size 16 --max-steps 2 --out {run_arg}"),
    );

    let export = out.path().join("samples-idx3-ubyte.gz");
    let args = [
        "--from",
        run_arg,
        "--backend",
        "flex",
        "--samples",
        "120",
        "--reference-images",
        "300",
        "--export",
        export.to_str().unwrap(),
    ];
    let first = run_example("eval", &args);
    assert!(first.status.success(), "{}", stderr(&first));
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(stdout.contains("FID"), "{stdout}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("eval.json")).unwrap()).unwrap();
    assert_eq!(report["model"], "dcgan");
    assert_eq!(report["step"], 2);
    assert_eq!(report["samples"], 120);
    assert_eq!(report["reference_images"], 300);
    let fid = report["fid"].as_f64().unwrap();
    let floor = report["floor_fid"].as_f64().unwrap();
    // Two steps of training make noise, far from real clothes; the training images are close.
    assert!(fid.is_finite() && floor.is_finite(), "{fid} {floor}");
    assert!(fid > 10.0 * floor, "FID {fid}, floor {floor}");
    let counts: Vec<u64> = report["coverage"]["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .collect();
    assert_eq!(counts.len(), 10);
    assert_eq!(counts.iter().sum::<u64>(), 120);
    let kl = report["coverage"]["kl_to_uniform"].as_f64().unwrap();
    assert!((0.0..=10f64.ln() + 1e-9).contains(&kl), "{kl}");
    assert!(report["conditional_accuracy"].is_null());
    assert!(report["within_class_spread"].is_null());

    // The export reads back through the data crate: 120 whole images.
    let pixels = read_images(&export).unwrap();
    assert_eq!(pixels.len(), 120 * 28 * 28);

    // The reference is cached in the run folder, and the same samples give the same FID.
    assert!(reference_path(&run_dir, 300).exists());
    let second = run_example("eval", &args);
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(String::from_utf8_lossy(&second.stdout).contains("reference statistics from"));
    let again: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("eval.json")).unwrap()).unwrap();
    // The cached statistics come back from JSON to within an ulp (serde_json's default float
    // parsing), and the square roots of the covariances' near-zero eigenvalues (120 samples in
    // 128 dimensions) magnify that to about 1e-10 relative.
    let (fid, fid_again) = (
        report["fid"].as_f64().unwrap(),
        again["fid"].as_f64().unwrap(),
    );
    assert!(
        (fid - fid_again).abs() <= 1e-8 * fid,
        "{fid} vs {fid_again}"
    );
    assert_eq!(read_images(&export).unwrap(), pixels);
}

#[test]
fn bad_input_gets_clear_errors() {
    assert_clean_failure(
        &run("eval", "--from runs/x --samples 1"),
        &["--samples", "1"],
    );
    let empty = tempfile::tempdir().unwrap();
    assert_clean_failure(
        &run(
            "eval",
            &format!("--from {} --backend flex", empty.path().to_str().unwrap()),
        ),
        &["has no checkpoint"],
    );
    assert_clean_failure(
        &run("eval", "--from runs/x --sampler euler"),
        &["euler", "ddim"],
    );
}
