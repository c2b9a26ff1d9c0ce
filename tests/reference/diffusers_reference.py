"""Reference numbers from huggingface diffusers' DDPMScheduler and DDIMScheduler.

Prints JSON with fixed inputs, fixed noise and the schedulers' outputs; the Rust test
`diffusion_reference` (crates/models/tests/diffusion_reference.rs) reads the saved output,
diffusers_reference.json, and compares.

    pip install torch diffusers
    python tests/reference/diffusers_reference.py > tests/reference/diffusers_reference.json

Every case is computed twice: with diffusers as shipped (the schedule in float32, as
`torch.cumprod` of float32 betas) and with the schedule's tensors cast to float64, the precision
in which genmodels computes its coefficients. The float64 run isolates the maths from float32
rounding of alpha_bar, which at t = 999 (alpha_bar = 4e-5) is amplified by 1/sqrt(alpha_bar).
"""

import json
import math

import diffusers
import diffusers.schedulers.scheduling_ddpm as ddpm_module
import torch
from diffusers import DDIMScheduler, DDPMScheduler

SHAPE = (2, 1, 2, 3)


def pattern(phase: float, scale: float, dtype) -> torch.Tensor:
    """Deterministic values, easy to regenerate anywhere: scale * sin(1.7 i + phase)."""
    count = math.prod(SHAPE)
    values = [scale * math.sin(1.7 * i + phase) for i in range(count)]
    return torch.tensor(values, dtype=torch.float32).reshape(SHAPE).to(dtype)


def flat(tensor: torch.Tensor) -> list:
    return [float(v) for v in tensor.reshape(-1)]


def to_float64(scheduler):
    scheduler.betas = scheduler.betas.double()
    scheduler.alphas = 1.0 - scheduler.betas
    scheduler.alphas_cumprod = torch.cumprod(scheduler.alphas, dim=0)
    scheduler.one = torch.tensor(1.0, dtype=torch.float64)
    if hasattr(scheduler, "final_alpha_cumprod"):
        scheduler.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)
    return scheduler


def make_ddpm(dtype, **config):
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02,
                              beta_schedule="linear", **config)
    return to_float64(scheduler) if dtype == torch.float64 else scheduler


def make_ddim(dtype):
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02,
                              beta_schedule="linear", clip_sample=True, set_alpha_to_one=True,
                              steps_offset=0, timestep_spacing="leading")
    return to_float64(scheduler) if dtype == torch.float64 else scheduler


def ddpm_step(scheduler, eps, t, sample, noise):
    # diffusers draws the step's noise itself; hand it ours instead.
    original = ddpm_module.randn_tensor
    ddpm_module.randn_tensor = lambda shape, generator=None, device=None, dtype=None, **_: noise.to(dtype)
    try:
        return scheduler.step(eps, t, sample).prev_sample
    finally:
        ddpm_module.randn_tensor = original


def cases(dtype):
    x0 = pattern(0.3, 0.9, dtype)
    sample = pattern(1.1, 1.5, dtype)
    eps = pattern(2.0, 1.0, dtype)
    noise = pattern(0.5, 1.2, dtype)

    result = {}
    timesteps = [0, 1, 10, 500, 999]
    scheduler = make_ddpm(dtype)
    result["add_noise"] = [
        {"t": t, "output": flat(scheduler.add_noise(x0, noise, torch.tensor([t, t])))}
        for t in timesteps
    ]

    ddpm = []
    variants = [
        ("fixed_small", True), ("fixed_small", False), ("fixed_large", True), ("fixed_large", False),
    ]
    for variance, clip in variants:
        scheduler = make_ddpm(dtype, variance_type=variance, clip_sample=clip)
        for t in timesteps:
            out = ddpm_step(scheduler, eps, t, sample, noise)
            ddpm.append({"variance": variance, "clip": clip, "inference_steps": 1000, "t": t,
                         "output": flat(out)})
    scheduler = make_ddpm(dtype)
    scheduler.set_timesteps(50)
    for t in [980, 500, 20, 0]:
        ddpm.append({"variance": "fixed_small", "clip": True, "inference_steps": 50, "t": t,
                     "output": flat(ddpm_step(scheduler, eps, t, sample, noise))})
    result["ddpm_step"] = ddpm

    ddim = []
    scheduler = make_ddim(dtype)
    scheduler.set_timesteps(50)
    result["ddim_timesteps_50"] = [int(t) for t in scheduler.timesteps]
    for eta in [0.0, 0.5, 1.0]:
        for t in [980, 500, 20, 0]:
            out = scheduler.step(eps, t, sample, eta=eta, variance_noise=noise).prev_sample
            ddim.append({"eta": eta, "inference_steps": 50, "t": t, "output": flat(out)})
    scheduler.set_timesteps(10)
    for t in [900, 100, 0]:
        out = scheduler.step(eps, t, sample, eta=1.0, variance_noise=noise).prev_sample
        ddim.append({"eta": 1.0, "inference_steps": 10, "t": t, "output": flat(out)})
    result["ddim_step"] = ddim
    return {"x0": flat(x0), "sample": flat(sample), "eps": flat(eps), "noise": flat(noise),
            **result}


def main():
    reference = {
        "diffusers_version": diffusers.__version__,
        "torch_version": torch.__version__,
        "shape": list(SHAPE),
        "float32": cases(torch.float32),
        "float64": cases(torch.float64),
    }
    print(json.dumps(reference, indent=1))


if __name__ == "__main__":
    main()
