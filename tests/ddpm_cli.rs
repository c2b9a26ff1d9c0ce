//! The `ddpm` example end to end with the tiny U-Net: a few steps on the real data, its grids and
//! figures, its checkpoint with EMA weights, resuming, `sample` mode, and bad input.

mod common;

use common::{assert_clean_failure, image_size, latest_checkpoint, read_metrics, run, run_ok};

#[test]
fn a_few_steps_write_grids_figures_and_a_checkpoint_then_resume_and_sample() {
    let out = tempfile::tempdir().unwrap();
    let out_arg = out.path().to_str().unwrap();
    let flags = format!(
        "--backend flex --preset tiny --batch-size 8 --log-every 1 --sample-steps 4 \
         --final-ddpm-steps 20 --out {out_arg}"
    );
    run_ok("ddpm", &format!("{flags} --max-steps 3"));

    // 8 tiles of 28 px with 2 px padding: 8 * 30 + 2 = 242.
    assert_eq!(
        image_size(out.path().join("samples/epoch_001.png")),
        (242, 242)
    );
    assert_eq!(
        image_size(out.path().join("samples/final_ddpm_20.png")),
        (242, 242)
    );
    // forward.png: 8 rows, t = 0, 100, ..., 900, 999: 11 columns.
    assert_eq!(
        image_size(out.path().join("forward.png")),
        (11 * 30 + 2, 242)
    );
    // reverse.png with DDPM-20 (t = 950, 900, ..., 0): x_T, x at t = 900, 800, ..., 100, x_0.
    assert_eq!(
        image_size(out.path().join("reverse.png")),
        (11 * 30 + 2, 242)
    );
    let metrics = read_metrics(out.path());
    assert!(
        metrics.starts_with("step,epoch,loss,grad_norm,images_per_sec,elapsed_s"),
        "{metrics}"
    );
    assert_eq!(
        metrics.lines().count(),
        1 + 3,
        "header and one row per step:\n{metrics}"
    );
    let loss: f64 = metrics
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    // The untrained network's eps is near 0, so the loss starts near E[eps^2] = 1.
    assert!(loss > 0.3 && loss < 3.0, "first loss {loss}");

    let checkpoint = latest_checkpoint(out.path());
    assert_eq!(checkpoint.state.step, 3);
    assert_eq!(checkpoint.state.model, "ddpm");
    for file in ["unet.bpk", "ema.bpk", "optim_unet.bpk"] {
        assert!(checkpoint.dir.join(file).exists(), "{file} missing");
    }

    let resumed = run_ok("ddpm", &format!("{flags} --max-steps 5 --resume"));
    assert!(resumed.contains("resumed from"), "{resumed}");
    assert_eq!(latest_checkpoint(out.path()).state.step, 5);
    let metrics = read_metrics(out.path());
    assert_eq!(
        metrics.lines().count(),
        1 + 5,
        "the resumed run appends:\n{metrics}"
    );

    let grid = out.path().join("drawn.png");
    run_ok(
        "ddpm",
        &format!(
            "sample --from {out_arg} --count 10 --sampler ddim --sample-steps 3 --eta 1 --backend flex --output {}",
            grid.to_str().unwrap()
        ),
    );
    // 10 images in 8 columns: two rows.
    assert_eq!(image_size(&grid), (242, 2 * 30 + 2));
    assert!(out.path().join("drawn_reverse.png").exists());

    // Both U-Nets, under the PyTorch names; the EMA one draws what `sample` draws.
    let exported = out.path().join("pytorch");
    run_ok(
        "ddpm",
        &format!("export --from {out_arg} --output {}", exported.display()),
    );
    let device = burn::tensor::Device::flex();
    let run = genmodels::checkpoint::RunFolder::open(out.path()).unwrap();
    let config: genmodels::diffusion::UNetConfig = run.config("unet").unwrap();
    let ema =
        genmodels::pytorch::load_pytorch(config.init(&device), exported.join("ema.safetensors"))
            .unwrap();
    let saved = run
        .load_record("unet", "ema", |c: genmodels::diffusion::UNetConfig| {
            c.init(&device)
        })
        .unwrap();
    let x = genmodels::noise::seeded_normal_images([2, 1, 28, 28], 3, &device);
    let t = burn::tensor::Tensor::<1>::from_floats([10.0, 700.0], &device);
    assert!(
        ema.forward(x.clone(), t.clone())
            .all_close(saved.forward(x, t), Some(0.0), Some(0.0))
    );
    assert!(exported.join("unet.safetensors").exists());
}

#[test]
fn bad_input_gets_clear_errors() {
    assert_clean_failure(&run("ddpm", "--preset huge"), &["huge", "small"]);
    assert_clean_failure(&run("ddpm", "--sampler euler"), &["euler", "ddim"]);
    assert_clean_failure(&run("ddpm", "--eta=-1"), &["--eta", ">= 0"]);
    assert_clean_failure(&run("ddpm", "--ema-decay 1.5"), &["--ema-decay", "[0, 1)"]);
    assert_clean_failure(&run("ddpm", "--sample-steps 0"), &["--sample-steps"]);
    // More reverse steps than the schedule has: refused before any training.
    let out = tempfile::tempdir().unwrap();
    let too_many = format!(
        "--backend flex --preset tiny --sample-steps 1001 --out {}",
        out.path().display()
    );
    assert_clean_failure(&run("ddpm", &too_many), &["1001", "1 to 1000"]);
    let empty = tempfile::tempdir().unwrap();
    let no_checkpoint = format!("sample --from {} --backend flex", empty.path().display());
    assert_clean_failure(&run("ddpm", &no_checkpoint), &["has no checkpoint"]);
}

#[test]
fn a_conditional_unet_draws_every_class_and_samples_one_with_guidance() {
    let out = tempfile::tempdir().unwrap();
    let run_dir = out.path().join("cfg");
    let run_dir = run_dir.to_str().unwrap();
    run_ok(
        "ddpm",
        &format!(
            "--backend flex --preset tiny --conditional --label-dropout 0.2 --guidance 2 \
             --batch-size 8 --sample-steps 2 --final-ddpm-steps 0 --max-steps 2 --out {run_dir}"
        ),
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{run_dir}/config.json")).unwrap())
            .unwrap();
    assert_eq!(config["unet"]["num_classes"], 10);
    assert_eq!(config["label_dropout"], 0.2);
    assert_eq!(config["epoch_guidance"], 2.0);
    // One column per class, ten rows: 10 * 30 + 2 = 302.
    assert_eq!(
        image_size(out.path().join("cfg/samples/epoch_001.png")),
        (302, 302)
    );
    let sample = out.path().join("coats.png");
    let stdout = run_ok(
        "ddpm",
        &format!(
            "sample --from {run_dir} --backend flex --count 8 --class 4 --guidance 3 \
             --sample-steps 2 --output {}",
            sample.display()
        ),
    );
    assert!(stdout.contains("DDIM-2"), "{stdout}");
    assert_eq!(image_size(&sample), (242, 32));
    assert_clean_failure(
        &run(
            "ddpm",
            &format!("sample --from {run_dir} --backend flex --class 10"),
        ),
        &["--class 10", "0 to 9"],
    );

    // An unconditional run refuses a class.
    let plain = out.path().join("plain");
    run_ok(
        "ddpm",
        &format!(
            "--backend flex --preset tiny --batch-size 8 --sample-steps 2 --final-ddpm-steps 0 \
             --max-steps 1 --out {}",
            plain.display()
        ),
    );
    assert_clean_failure(
        &run(
            "ddpm",
            &format!("sample --from {} --backend flex --class 3", plain.display()),
        ),
        &["--class", "--conditional"],
    );
}
