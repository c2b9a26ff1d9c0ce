//! The `infogan` example end to end: a few steps on the real data, the code figures and the
//! match of the categorical code with the classes, `analyze` and `sample` from the checkpoint,
//! `eval`, and bad flags.

mod common;

use common::{assert_clean_failure, image_size, run, run_in_new_folder, run_ok};

#[test]
fn a_few_steps_write_the_code_figures_and_the_code_match() {
    let out = run_in_new_folder(
        "infogan",
        "--backend flex --batch-size 16 --log-every 1 --max-steps 2",
    );
    let out_arg = out.path().to_str().unwrap();
    let metrics = std::fs::read_to_string(out.path().join("metrics.csv")).unwrap();
    let header: Vec<&str> = metrics.lines().next().unwrap().split(',').collect();
    for column in [
        "loss_d",
        "loss_g",
        "info_categorical",
        "info_continuous",
        "mi_bound",
    ] {
        assert!(header.contains(&column), "{column} missing: {header:?}");
    }
    // The epoch grid: one column per value of c, ten rows.
    assert_eq!(
        image_size(out.path().join("samples/epoch_001.png")),
        (302, 302)
    );
    // categorical.png: ten rows (c) of ten columns (z); continuous_k.png: nine values a row.
    assert_eq!(image_size(out.path().join("categorical.png")), (302, 302));
    for k in 0..2 {
        let figure = out.path().join(format!("continuous_{k}.png"));
        assert_eq!(image_size(figure), (9 * 30 + 2, 302));
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("infogan.json")).unwrap())
            .unwrap();
    assert_eq!(report["samples"], 10_000);
    let confusion = report["confusion"].as_array().unwrap();
    let total: u64 = confusion
        .iter()
        .flat_map(|row| row.as_array().unwrap())
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(total, 10_000);
    // The assignment is a permutation of the classes, and its accuracy the counts on it.
    let mut assignment: Vec<u64> = report["assignment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .collect();
    let matched: u64 = assignment
        .iter()
        .enumerate()
        .map(|(c, &class)| confusion[c][class as usize].as_u64().unwrap())
        .sum();
    let accuracy = report["accuracy"].as_f64().unwrap();
    assert!((accuracy - matched as f64 / 10_000.0).abs() < 1e-12);
    assignment.sort();
    assert_eq!(assignment, (0..10).collect::<Vec<u64>>());

    let stdout = run_ok(
        "infogan",
        &format!("analyze --from {out_arg} --backend flex"),
    );
    assert!(
        stdout.contains("c matches the classes with accuracy"),
        "{stdout}"
    );
    let sample = out.path().join("grid.png");
    run_ok(
        "infogan",
        &format!(
            "sample --from {out_arg} --backend flex --count 20 --output {}",
            sample.display()
        ),
    );
    assert_eq!(image_size(&sample), (242, 92));
}

#[test]
fn bad_flags_get_clear_errors() {
    assert_clean_failure(
        &run("infogan", "--lambda-categorical -1"),
        &["--lambda-categorical"],
    );
    assert_clean_failure(
        &run("infogan", "--lr-discriminator 0"),
        &["--lr-discriminator"],
    );
    let empty = tempfile::tempdir().unwrap();
    assert_clean_failure(
        &run(
            "infogan",
            &format!("analyze --from {}", empty.path().display()),
        ),
        &["has no checkpoint"],
    );
}
