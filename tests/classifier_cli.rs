//! The feature network behind FID: the committed weights' accuracy on the real test split, and
//! the `classifier` example end to end for a few steps.

mod common;

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::Device;
use genmodels::ClassifierConfig;
use genmodels_train::classifier::{WEIGHTS_FILE, evaluate, pretrained};

use common::{run, run_in_new_folder, stderr};

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
    let out = run_in_new_folder("classifier", "--backend flex --batch-size 32 --max-steps 2");
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
    let output = run("classifier", "--epochs 0");
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
