//! The `bigan` example end to end: a few steps on the real data, the reconstruction figure and
//! the encoder's scores, `sample` from the checkpoint, and bad flags.

mod common;

use common::{assert_clean_failure, assert_gan_files, image_size, run, run_in_new_folder, run_ok};

#[test]
fn a_few_steps_write_the_reconstructions_and_the_encoder_scores() {
    let out = run_in_new_folder(
        "bigan",
        "--backend flex --batch-size 16 --latent-dim 32 --log-every 1 --max-steps 2",
    );
    let out_arg = out.path().to_str().unwrap();
    assert_gan_files(out.path());
    let metrics = std::fs::read_to_string(out.path().join("metrics.csv")).unwrap();
    let header: Vec<&str> = metrics.lines().next().unwrap().split(',').collect();
    for column in ["loss_d", "loss_ge", "d_encoder", "d_generator"] {
        assert!(header.contains(&column), "{column} missing: {header:?}");
    }
    // Four rows of 8 test images, each above a row of their reconstructions.
    assert_eq!(
        image_size(out.path().join("reconstruction.png")),
        (242, 242)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("bigan.json")).unwrap())
            .unwrap();
    assert_eq!(report["test_images"], 10_000);
    for share in [
        "knn5_accuracy",
        "untrained_knn5_accuracy",
        "reconstruction_class_agreement",
    ] {
        let value = report[share].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&value), "{share} {value}");
    }
    // Codes of any encoder keep some of the classes: far above the 0.1 of chance.
    assert!(report["untrained_knn5_accuracy"].as_f64().unwrap() > 0.3);
    let l1 = report["reconstruction_l1"].as_f64().unwrap();
    assert!(l1 > 0.0 && l1 < 2.0, "{l1}");

    // `analyze` runs the same scoring on a run's checkpoint, which `sample` opens here; it is
    // not repeated (it encodes 140,000 images).
    let sample = out.path().join("grid.png");
    run_ok(
        "bigan",
        &format!(
            "sample --from {out_arg} --backend flex --count 16 --output {}",
            sample.display()
        ),
    );
    assert_eq!(image_size(&sample), (242, 62));
}

#[test]
fn bad_flags_get_clear_errors() {
    assert_clean_failure(&run("bigan", "--latent-dim 0"), &["--latent-dim"]);
    let empty = tempfile::tempdir().unwrap();
    assert_clean_failure(
        &run(
            "bigan",
            &format!("analyze --from {}", empty.path().display()),
        ),
        &["has no checkpoint"],
    );
}
