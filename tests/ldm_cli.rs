//! The `ldm` example end to end: a VAE trained for a few steps, a conditional latent diffusion
//! model trained on its codes, `sample` with a class and a guidance scale, the `guidance` sweep,
//! `export`, `eval`, and bad input.

mod common;

use common::{assert_clean_failure, run, run_ok};

#[test]
fn a_conditional_model_on_a_vae_trains_samples_sweeps_and_exports() {
    let out = tempfile::tempdir().unwrap();
    let vae = out.path().join("vae");
    let ldm = out.path().join("ldm");
    let (vae, ldm) = (vae.to_str().unwrap(), ldm.to_str().unwrap());
    run_ok(
        "vae",
        &format!(
            "--backend flex --batch-size 32 --latent-dim 4 --max-steps 3 --analysis-images 100 \
             --tsne-epochs 10 --out {vae}"
        ),
    );
    let stdout = run_ok(
        "ldm",
        &format!(
            "--backend flex --batch-size 32 --max-steps 4 --hidden 16 --blocks 1 --conditional \
             --sample-steps 3 --autoencoder {vae} --out {ldm}"
        ),
    );
    assert!(stdout.contains("4x1x1 codes"), "{stdout}");
    assert!(stdout.contains("standardised per channel"), "{stdout}");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{ldm}/config.json")).unwrap())
            .unwrap();
    assert_eq!(config["autoencoder"]["latent_dim"], 4);
    assert_eq!(config["denoiser"]["num_classes"], 10);
    assert_eq!(config["label_dropout"], 0.1);
    // The epoch grid: one column per class, ten rows; 10 tiles of 28 px with 2 px padding.
    let grid = image::open(format!("{ldm}/samples/epoch_001.png")).unwrap();
    assert_eq!((grid.width(), grid.height()), (302, 302));
    let checkpoint = std::fs::read_dir(format!("{ldm}/checkpoints"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.is_dir())
        .unwrap();
    for record in ["denoiser.bpk", "ema.bpk", "autoencoder.bpk"] {
        assert!(checkpoint.join(record).exists(), "{record} missing");
    }

    // One class at a guidance scale: rows of eight, the class named beside each row.
    let sample = format!("{}/sneakers.png", out.path().display());
    let stdout = run_ok(
        "ldm",
        &format!(
            "sample --from {ldm} --backend flex --count 16 --class 7 --guidance 3 --sample-steps 3 \
             --output {sample}"
        ),
    );
    assert!(
        stdout.contains("class 7, guidance w = 3"),
        "the source describes the guidance: {stdout}"
    );
    assert!(std::path::Path::new(&sample).exists());

    // The sweep: an eval report per scale, the table and the figure.
    let stdout = run_ok(
        "ldm",
        &format!(
            "guidance --from {ldm} --backend flex --scales 0,2 --samples 60 --reference-images 100 \
             --sample-steps 3"
        ),
    );
    assert!(stdout.contains("w = 2: FID"), "{stdout}");
    let table = std::fs::read_to_string(format!("{ldm}/guidance.csv")).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("guidance,fid,requested_class_accuracy"));
    for (line, scale) in lines[1..].iter().zip(["0", "2"]) {
        let values: Vec<f64> = line.split(',').map(|v| v.parse().unwrap()).collect();
        assert_eq!(values[0], scale.parse::<f64>().unwrap());
        assert!(values[1].is_finite() && values[1] >= 0.0, "FID {line}");
        assert!((0.0..=1.0).contains(&values[2]), "accuracy {line}");
    }
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{ldm}/eval_guidance_2.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(report["model"], "ldm");
    assert!(report["conditional_accuracy"].is_number());
    assert!(std::path::Path::new(&format!("{ldm}/guidance.png")).exists());

    // Export: the denoiser, its moving average and the VAE.
    let export = out.path().join("export");
    run_ok(
        "ldm",
        &format!("export --from {ldm} --output {}", export.display()),
    );
    for file in ["denoiser", "ema", "autoencoder"] {
        assert!(
            export.join(format!("{file}.safetensors")).exists(),
            "{file}"
        );
    }

    // A class the model does not know, and a scale below 0, are refused by flag.
    assert_clean_failure(
        &run(
            "ldm",
            &format!("sample --from {ldm} --backend flex --class 10"),
        ),
        &["--class 10", "0 to 9"],
    );
    assert_clean_failure(
        &run("eval", &format!("--from {ldm} --guidance -1")),
        &["--guidance"],
    );
}

#[test]
fn an_unconditional_model_refuses_guidance_and_a_non_vae_autoencoder_is_refused() {
    let out = tempfile::tempdir().unwrap();
    let (vae, ldm, dcgan) = (
        out.path().join("vae"),
        out.path().join("ldm"),
        out.path().join("dcgan"),
    );
    let (vae, ldm, dcgan) = (
        vae.to_str().unwrap(),
        ldm.to_str().unwrap(),
        dcgan.to_str().unwrap(),
    );
    run_ok(
        "vae",
        &format!(
            "--backend flex --batch-size 32 --latent-dim 3 --max-steps 2 --analysis-images 100 \
             --tsne-epochs 10 --out {vae}"
        ),
    );
    run_ok(
        "ldm",
        &format!(
            "--backend flex --batch-size 32 --max-steps 2 --hidden 16 --blocks 1 --sample-steps 2 \
             --autoencoder {vae} --out {ldm}"
        ),
    );
    // Eight a row: the unconditional grid.
    let grid = image::open(format!("{ldm}/samples/epoch_001.png")).unwrap();
    assert_eq!((grid.width(), grid.height()), (242, 242));
    assert_clean_failure(
        &run(
            "ldm",
            &format!("sample --from {ldm} --backend flex --guidance 2 --sample-steps 2"),
        ),
        &["--guidance", "--conditional"],
    );

    assert_clean_failure(
        &run(
            "ldm",
            &format!(
                "--autoencoder {}/absent --max-steps 1",
                out.path().display()
            ),
        ),
        &["--autoencoder", "absent"],
    );
    run_ok(
        "dcgan",
        &format!("--backend flex --batch-size 16 --max-steps 1 --out {dcgan}"),
    );
    assert_clean_failure(
        &run("ldm", &format!("--autoencoder {dcgan} --max-steps 1")),
        &["--autoencoder", "`dcgan` run"],
    );
    assert_clean_failure(
        &run("ldm", &format!("--autoencoder {vae} --label-dropout 1.5")),
        &["--label-dropout", "[0, 1]"],
    );
    // A U-Net needs a spatial code.
    assert_clean_failure(
        &run(
            "ldm",
            &format!("--backend flex --autoencoder {vae} --denoiser unet --max-steps 1"),
        ),
        &["--denoiser unet", "vector code", "--latent-channels"],
    );
}

#[test]
fn a_conditional_unet_on_a_spatial_autoencoder_trains_and_samples_a_class() {
    let out = tempfile::tempdir().unwrap();
    let (ae, ldm) = (out.path().join("ae"), out.path().join("ldm"));
    let (ae, ldm) = (ae.to_str().unwrap(), ldm.to_str().unwrap());
    run_ok(
        "vae",
        &format!(
            "--backend flex --model ae --latent-channels 2 --batch-size 32 --max-steps 2 \
             --analysis-images 100 --tsne-epochs 10 --out {ae}"
        ),
    );
    let stdout = run_ok(
        "ldm",
        &format!(
            "--backend flex --batch-size 16 --max-steps 2 --denoiser unet --hidden 16 --blocks 1 \
             --conditional --sample-steps 2 --autoencoder {ae} --out {ldm}"
        ),
    );
    assert!(stdout.contains("2x7x7 codes"), "{stdout}");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{ldm}/config.json")).unwrap())
            .unwrap();
    assert_eq!(config["autoencoder"]["latent_dim"], 98);
    assert_eq!(config["autoencoder"]["latent_channels"], 2);
    assert_eq!(config["denoiser"]["image_channels"], 2);
    assert_eq!(config["denoiser"]["image_size"], 7);
    assert_eq!(config["denoiser"]["num_classes"], 10);
    // One column per class, ten rows.
    let grid = image::open(format!("{ldm}/samples/epoch_001.png")).unwrap();
    assert_eq!((grid.width(), grid.height()), (302, 302));
    let sample = format!("{}/bags.png", out.path().display());
    let stdout = run_ok(
        "ldm",
        &format!(
            "sample --from {ldm} --backend flex --count 8 --class 8 --guidance 2 --sample-steps 2 \
             --output {sample}"
        ),
    );
    assert!(stdout.contains("class 8, guidance w = 2"), "{stdout}");
    assert!(std::path::Path::new(&sample).exists());
}
