//! The `toy2d` example end to end with a handful of steps: every plot and the report, and the
//! errors a user sees for bad flags.

mod common;

use common::{assert_files, image_size, run, run_in_new_folder, stderr};

#[test]
fn a_few_steps_write_every_plot_and_the_report() {
    let out = run_in_new_folder(
        "toy2d",
        "--seeds 4,5 --steps 4 --d-steps 2 --optimal-d-steps 3 --equilibrium-steps 3",
    );
    assert_files(
        out.path(),
        &[
            "optimal_d.png",
            "equilibrium.png",
            "mode_collapse_seed4.png",
            "mode_collapse_seed5.png",
            "report.json",
        ],
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap())
            .unwrap();
    let gap = report["optimal_d"]["max_gap"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&gap), "{gap}");
    let d_real = report["equilibrium"]["mean_d_real"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&d_real), "{d_real}");
    let runs = report["mode_collapse"].as_array().unwrap();
    assert_eq!(runs.len(), 4, "two methods for each of two seeds");
    for r in runs {
        let covered = r["coverage"]["modes_covered"].as_u64().unwrap();
        assert!(covered <= 8);
        assert_eq!(r["coverage"]["counts"].as_array().unwrap().len(), 8);
    }
    assert_eq!(
        image_size(out.path().join("mode_collapse_seed4.png")),
        (4 * 260, 560)
    );
}

#[test]
fn bad_flags_get_clear_errors() {
    let output = run("toy2d", "--seeds 1,x");
    let text = stderr(&output);
    assert!(
        !output.status.success() && text.contains("--seeds"),
        "{text}"
    );
    let output = run("toy2d", "--steps 0");
    let text = stderr(&output);
    assert!(
        !output.status.success() && text.contains("--steps"),
        "{text}"
    );
    let output = run("toy2d", "--experiment bogus");
    let text = stderr(&output);
    assert!(
        !output.status.success() && text.contains("mode-collapse") && !text.contains("panicked"),
        "{text}"
    );
}
