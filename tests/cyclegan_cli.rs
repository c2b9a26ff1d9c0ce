//! The `cyclegan` example end to end: a few steps between two classes of the real data, the
//! translation figure and its scores, `analyze` and `sample` from the checkpoint, and bad flags.

mod common;

use common::{assert_clean_failure, image_size, run, run_in_new_folder, run_ok};

#[test]
fn a_few_steps_write_the_translations_and_their_scores() {
    let out = run_in_new_folder(
        "cyclegan",
        "--backend flex --batch-size 8 --residual-blocks 1 --domain-a t-shirt/top --domain-b shirt --log-every 1 --max-steps 2",
    );
    let out_arg = out.path().to_str().unwrap();
    let metrics = std::fs::read_to_string(out.path().join("metrics.csv")).unwrap();
    let header: Vec<&str> = metrics.lines().next().unwrap().split(',').collect();
    for column in [
        "loss_g",
        "adversarial",
        "cycle",
        "identity",
        "loss_d_a",
        "loss_d_b",
    ] {
        assert!(header.contains(&column), "{column} missing: {header:?}");
    }
    // Ten test images of each domain, a row each: A, G_AB(A), G_BA(G_AB(A)), B, G_BA(B),
    // G_AB(G_BA(B)).
    for figure in ["translation.png", "samples/epoch_001.png"] {
        assert_eq!(image_size(out.path().join(figure)), (182, 302), "{figure}");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("cyclegan.json")).unwrap())
            .unwrap();
    for (direction, name) in [
        ("a_to_b", "T-shirt/top -> Shirt"),
        ("b_to_a", "Shirt -> T-shirt/top"),
    ] {
        let scores = &report[direction];
        assert_eq!(scores["direction"], name);
        assert_eq!(scores["images"], 1000);
        for share in ["target_class_share", "untranslated_target_share"] {
            let value = scores[share].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&value), "{direction} {share} {value}");
        }
        for fid in ["fid_to_target", "untranslated_fid_to_target"] {
            assert!(scores[fid].as_f64().unwrap() > 0.0, "{direction} {fid}");
        }
        let l1 = scores["cycle_l1"].as_f64().unwrap();
        assert!(l1 > 0.0 && l1 < 2.0, "{l1}");
    }

    let stdout = run_ok(
        "cyclegan",
        &format!("analyze --from {out_arg} --backend flex"),
    );
    assert!(
        stdout.contains("T-shirt/top -> Shirt: the classifier puts"),
        "{stdout}"
    );
    let sample = out.path().join("grid.png");
    run_ok(
        "cyclegan",
        &format!(
            "sample --from {out_arg} --backend flex --count 16 --output {}",
            sample.display()
        ),
    );
    assert_eq!(image_size(&sample), (242, 62));
}

#[test]
fn bad_flags_get_clear_errors() {
    assert_clean_failure(
        &run("cyclegan", "--domain-a 10"),
        &["--domain-a", "not below 10"],
    );
    assert_clean_failure(
        &run("cyclegan", "--domain-b boot"),
        &["--domain-b", "Ankle boot"],
    );
    assert_clean_failure(
        &run("cyclegan", "--domain-a sneaker --domain-b 7"),
        &["--domain-a and --domain-b are both Sneaker"],
    );
}
