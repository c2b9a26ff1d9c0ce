//! The feature network behind FID: the committed weights' accuracy on the real test split, and
//! the `classifier` example end to end for a few steps.

use std::path::PathBuf;
use std::process::{Command, Output};

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::Device;
use genmodels::ClassifierConfig;
use genmodels_train::classifier::{WEIGHTS_FILE, evaluate, pretrained};

fn example(name: &str) -> PathBuf {
    // target/<profile>/deps/<this test> -> target/<profile>/examples/<name>
    let profile_dir = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test` so examples are built",
        path.display()
    );
    path
}

fn run_classifier(args: &[&str]) -> Output {
    Command::new(example("classifier"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the example starts")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn the_committed_weights_classify_at_least_91_percent_of_the_test_split() {
    let data = genmodels_data::load_or_fetch(&genmodels_data::resolve_data_dir(None)).unwrap();
    let device = Device::flex();
    let classifier = pretrained(&device).unwrap();
    assert_eq!(classifier.feature_dim(), 128);
    let scores = evaluate(&classifier, &data.test, &device);
    assert_eq!(data.test.len(), 10_000);
    assert!(
        scores.accuracy >= 0.91,
        "test accuracy {:.4} is below 0.91",
        scores.accuracy
    );
    assert!(
        scores.loss.is_finite() && scores.loss < 0.4,
        "{}",
        scores.loss
    );
}

#[test]
fn a_few_steps_write_metrics_and_weights_that_load() {
    let out = tempfile::tempdir().unwrap();
    let output = run_classifier(&[
        "--backend",
        "flex",
        "--batch-size",
        "32",
        "--max-steps",
        "2",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let metrics = std::fs::read_to_string(out.path().join("metrics.csv")).unwrap();
    let lines: Vec<&str> = metrics.lines().collect();
    assert_eq!(lines.len(), 2, "header and the epoch's row:\n{metrics}");
    assert!(lines[0].ends_with("test_accuracy,images_per_sec,elapsed_s"));
    let test_accuracy: f64 = lines[1].split(',').nth(5).unwrap().parse().unwrap();
    assert!((0.0..=1.0).contains(&test_accuracy), "{test_accuracy}");

    let record = ModuleRecord::load(out.path().join(WEIGHTS_FILE)).unwrap();
    let device = Device::flex();
    let fresh = ClassifierConfig::new().init(&device);
    fresh.try_load_record(record).unwrap();
}

#[test]
fn bad_flags_get_clear_errors() {
    let output = run_classifier(&["--epochs", "0"]);
    let text = stderr(&output);
    assert!(
        !output.status.success() && !text.contains("panicked"),
        "{text}"
    );
    assert!(
        text.contains("--epochs") && text.contains("at least 1"),
        "{text}"
    );
}
