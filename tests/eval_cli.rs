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

    // The exported samples scored as a file, as an IDX file, a PNG grid and a .npy array, give
    // the checkpoint's numbers: the same images through the same features.
    let grid = out.path().join("samples.png");
    let mut image = image::GrayImage::new(2 + 12 * 30, 2 + 10 * 30);
    for (i, tile) in pixels.chunks(28 * 28).enumerate() {
        let (x0, y0) = (2 + (i % 12) as u32 * 30, 2 + (i / 12) as u32 * 30);
        for (j, &value) in tile.iter().enumerate() {
            image.put_pixel(
                x0 + (j % 28) as u32,
                y0 + (j / 28) as u32,
                image::Luma([value]),
            );
        }
    }
    image.save(&grid).unwrap();
    let npy = out.path().join("samples.npy");
    let mut header =
        "{'descr': '|u1', 'fortran_order': False, 'shape': (120, 28, 28), }".to_string();
    while !(11 + header.len()).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&pixels);
    std::fs::write(&npy, bytes).unwrap();
    for file in [&export, &grid, &npy] {
        let flags = format!(
            "--images {} --backend flex --reference-images 300 --cache-dir {run_arg}",
            file.display()
        );
        run_ok("eval", &flags);
        let name = file.file_name().unwrap().to_string_lossy();
        let text = std::fs::read_to_string(out.path().join(format!("{name}.eval.json"))).unwrap();
        let scored: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(scored["model"], "images");
        assert_eq!(scored["samples"], 120);
        let fid_of_file = scored["fid"].as_f64().unwrap();
        assert!(
            (fid - fid_of_file).abs() <= 1e-8 * fid,
            "{name}: {fid} vs {fid_of_file}"
        );
        assert_eq!(
            scored["coverage"]["counts"], report["coverage"]["counts"],
            "{name}"
        );
    }
}

#[test]
fn bad_input_gets_clear_errors() {
    assert_clean_failure(&run("eval", "--backend flex"), &["--from"]);
    let not_images = tempfile::tempdir().unwrap();
    let file = not_images.path().join("notes-idx3-ubyte");
    std::fs::write(&file, b"not an idx file").unwrap();
    assert_clean_failure(
        &run(
            "eval",
            &format!("--images {} --backend flex", file.display()),
        ),
        &["notes-idx3-ubyte"],
    );
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
