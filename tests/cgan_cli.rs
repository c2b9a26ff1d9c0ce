//! The `cgan` example end to end: a few steps on the real data, the per-class grid, drawing a
//! chosen class from the checkpoint, and the errors a user sees for bad flags.

mod common;

use genmodels_train::checkpoint::Checkpoints;

use common::{assert_clean_failure, run, run_in_new_folder, run_ok, stderr};

#[test]
fn a_few_steps_write_a_class_grid_and_sample_mode_draws_one_class() {
    let out = run_in_new_folder(
        "cgan",
        "--backend flex --batch-size 16 --log-every 1 --max-steps 2",
    );
    let out_arg = out.path().to_str().unwrap();
    let grid = image::open(out.path().join("samples/epoch_001.png")).unwrap();
    // 10 columns and 10 rows of 28 px tiles with 2 px padding, after a 110 px name strip.
    assert_eq!((grid.width(), grid.height()), (110 + 302, 302));
    let metrics = std::fs::read_to_string(out.path().join("metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 1 + 2, "{metrics}");
    // The mode-seeking term is on by default: a positive 1 / (d_I / d_z + eps) in its column.
    let header: Vec<&str> = metrics.lines().next().unwrap().split(',').collect();
    let column = header
        .iter()
        .position(|&name| name == "mode_seeking")
        .unwrap();
    for row in metrics.lines().skip(1) {
        let value: f64 = row.split(',').nth(column).unwrap().parse().unwrap();
        assert!(value.is_finite() && value > 0.0, "{row}");
    }
    let checkpoint = Checkpoints::new(out.path().join("checkpoints"))
        .latest()
        .unwrap()
        .unwrap();
    assert_eq!(checkpoint.state.model, "cgan");

    let output = out.path().join("sneakers.png");
    let sample = run(
        "cgan",
        &format!(
            "sample --class 7 --count 12 --backend flex --from {out_arg} --output {}",
            output.to_str().unwrap()
        ),
    );
    assert!(sample.status.success(), "{}", stderr(&sample));
    assert!(String::from_utf8_lossy(&sample.stdout).contains("Sneaker"));
    let grid = image::open(&output).unwrap();
    // 12 images in rows of 8: 2 rows.
    assert_eq!((grid.width(), grid.height()), (110 + 242, 62));

    // Without --class the classes come in turn, one per column: 20 images, 10 a row.
    let sample = run(
        "cgan",
        &format!("sample --count 20 --backend flex --from {out_arg}"),
    );
    assert!(sample.status.success(), "{}", stderr(&sample));
    let grid = image::open(out.path().join("samples/sample.png")).unwrap();
    assert_eq!((grid.width(), grid.height()), (302, 62));

    let exported = run_ok("cgan", &format!("export --from {out_arg}"));
    for network in ["generator", "discriminator"] {
        assert!(
            exported.contains(&format!("{network}.safetensors")),
            "{exported}"
        );
    }
}

#[test]
fn bad_flags_get_clear_errors() {
    assert_clean_failure(&run("cgan", "sample --class 10"), &["--class", "10"]);
    assert_clean_failure(&run("cgan", "--mode-seeking=-1"), &["--mode-seeking", "-1"]);
    let empty = tempfile::tempdir().unwrap();
    assert_clean_failure(
        &run(
            "cgan",
            &format!("sample --class 1 --from {}", empty.path().to_str().unwrap()),
        ),
        &["--from", "has no checkpoint"],
    );
    assert_clean_failure(&run("cgan", "--batch-size 0"), &["--batch-size"]);
}
