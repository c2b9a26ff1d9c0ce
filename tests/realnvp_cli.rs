//! The `realnvp` example end to end: a few steps on the real data, the test bits per dimension
//! in `metrics.csv`, the closing figures, `sample` at a temperature, `export`, and bad input.

mod common;

use common::{assert_clean_failure, assert_files, image_size, read_metrics, run, run_ok};

#[test]
fn a_few_steps_log_the_test_bits_per_dimension_and_draw_the_figures() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    let stdout = run_ok(
        "realnvp",
        &format!(
            "--backend flex --batch-size 16 --max-steps 3 --log-every 1 --hidden 4 --blocks 1 \
             --coupling unet --out {dir}"
        ),
    );
    assert!(stdout.contains("test NLL"), "{stdout}");
    let metrics = read_metrics(out.path());
    let lines: Vec<&str> = metrics.lines().collect();
    let header: Vec<&str> = lines[0].split(',').collect();
    let column = |line: &str, name: &str| -> f64 {
        let index = header.iter().position(|h| *h == name).unwrap();
        line.split(',').nth(index).unwrap().parse().unwrap()
    };
    assert_eq!(lines.len(), 4, "a row per step:\n{metrics}");
    // The first two rows have no test score; the row that closes the epoch has one, in the
    // range of an untrained flow (8 bits per dimension is a uniform distribution over bytes).
    assert!(column(lines[1], "test_bpd").is_nan());
    let test_bpd = column(lines[3], "test_bpd");
    assert!((1.0..12.0).contains(&test_bpd), "{metrics}");
    for line in &lines[1..] {
        assert!(column(line, "train_bpd").is_finite(), "{metrics}");
    }
    assert_files(
        out.path(),
        &[
            "samples/epoch_001.png",
            "samples/final_t1.png",
            "samples/final_t0.7.png",
            "interpolation.png",
            "config.json",
        ],
    );
    // Six rows of ten: a test image, eight points between, the other image.
    assert_eq!(
        image_size(out.path().join("interpolation.png")),
        (10 * 30 + 2, 6 * 30 + 2)
    );

    let sample = out.path().join("cold.png");
    let stdout = run_ok(
        "realnvp",
        &format!(
            "sample --from {dir} --backend flex --count 8 --temperature 0.7 --output {}",
            sample.display()
        ),
    );
    assert!(stdout.contains("N(0, 0.7^2 I)"), "{stdout}");
    assert!(sample.exists());
    let export = out.path().join("export");
    run_ok(
        "realnvp",
        &format!("export --from {dir} --output {}", export.display()),
    );
    assert!(export.join("flow.safetensors").exists());
}

#[test]
fn bad_flags_are_refused_by_name() {
    assert_clean_failure(&run("realnvp", "--scales 4"), &["--scales"]);
    assert_clean_failure(&run("realnvp", "--temperature 0"), &["--temperature"]);
    assert_clean_failure(
        &run("realnvp", "--coupling glow"),
        &["--coupling", "resnet"],
    );
    assert_clean_failure(
        &run("realnvp", "sample --from runs/absent-realnvp-run"),
        &["absent-realnvp-run"],
    );
}
