"""The genmodels networks in PyTorch, timed the way `benches/training.rs` times them.

Same architectures, losses and optimizers as the Rust crates (DCGAN, VAE, U-Net full and small),
same workloads (one training iteration; generation; DDPM/DDIM sampling), same statistics
(warm-up, then the median, min and max of repeated runs). Prints one JSON object per line:

    {"model": "dcgan", "workload": "train", "batch": 128, "median_s": ..., "min_s": ...,
     "max_s": ..., "runs": 5, "images_per_s": ..., "peak_rss_mib": ...}

Usage: python3 benches/pytorch_reference.py --cases dcgan:train:128 vae:train:64 ... [--runs 5]
[--warmup 2] [--max-seconds 30] [--threads N] [--device cpu|cuda]

`--fixtures DIR` instead writes the small PyTorch checkpoints, with their inputs and outputs, that
the weight-loading tests read (crates/models/tests/fixtures/pytorch/).

On `--device cuda` every tensor and parameter lives on the GPU and the clock stops after
`torch.cuda.synchronize()`, as the Rust side synchronises its device.
"""

import argparse
import json
import math
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


# --- DCGAN (Radford et al., 2016), sized for 28x28 ----------------------------------------------


class Generator(nn.Module):
    def __init__(self, latent=100, base=256):
        super().__init__()
        self.latent, self.base = latent, base
        self.project = nn.Linear(latent, base * 7 * 7, bias=False)
        self.bn0 = nn.BatchNorm1d(base * 7 * 7)
        self.up1 = nn.ConvTranspose2d(base, base // 2, 4, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(base // 2)
        self.up2 = nn.ConvTranspose2d(base // 2, 1, 4, 2, 1)

    def forward(self, z):
        h = F.relu(self.bn0(self.project(z))).view(-1, self.base, 7, 7)
        h = F.relu(self.bn1(self.up1(h)))
        return torch.tanh(self.up2(h))


class Discriminator(nn.Module):
    def __init__(self, base=64):
        super().__init__()
        self.conv1 = nn.Conv2d(1, base, 4, 2, 1)
        self.conv2 = nn.Conv2d(base, 2 * base, 4, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * base)
        self.linear = nn.Linear(2 * base * 7 * 7, 1)

    def forward(self, x):
        h = F.leaky_relu(self.conv1(x), 0.2)
        h = F.leaky_relu(self.bn2(self.conv2(h)), 0.2)
        return self.linear(h.flatten(1))


class Dcgan:
    def __init__(self):
        self.g, self.d = Generator(), Discriminator()
        adam = lambda m: torch.optim.Adam(m.parameters(), 2e-4, betas=(0.5, 0.999), eps=1e-8)
        self.opt_g, self.opt_d = adam(self.g), adam(self.d)

    def train_step(self, real):
        b = real.shape[0]
        fake = self.g(torch.randn(b, self.g.latent))
        ones, zeros = torch.ones(b, 1), torch.zeros(b, 1)
        loss_d = F.binary_cross_entropy_with_logits(
            self.d(real), ones
        ) + F.binary_cross_entropy_with_logits(self.d(fake.detach()), zeros)
        self.opt_d.zero_grad()
        loss_d.backward()
        self.opt_d.step()
        loss_g = F.binary_cross_entropy_with_logits(self.d(fake), ones)
        self.opt_g.zero_grad()
        loss_g.backward()
        self.opt_g.step()
        return loss_d.item() + loss_g.item()

    def generate(self, b):
        self.g.eval()
        with torch.no_grad():
            out = self.g(torch.randn(b, self.g.latent))
        self.g.train()
        return out


# --- VAE (Kingma & Welling, 2014) ---------------------------------------------------------------


class Vae(nn.Module):
    def __init__(self, latent=16, channels=(32, 64), hidden=256):
        super().__init__()
        self.latent = latent
        c1, c2 = channels
        self.enc = nn.Sequential(
            nn.Conv2d(1, c1, 4, 2, 1), nn.ReLU(), nn.Conv2d(c1, c2, 4, 2, 1), nn.ReLU(),
            nn.Flatten(), nn.Linear(c2 * 49, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent),
        )
        self.dec = nn.Sequential(
            nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, c2 * 49), nn.ReLU(),
            nn.Unflatten(1, (c2, 7, 7)), nn.ConvTranspose2d(c2, c1, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(c1, 1, 4, 2, 1),
        )
        self.opt = torch.optim.Adam(self.parameters(), 1e-3, eps=1e-8)

    def train_step(self, x):
        mu, logvar = self.enc(x).chunk(2, 1)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        logits = self.dec(z)
        bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean()
        loss = bce + kl
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss.item()

    def generate(self, b):
        with torch.no_grad():
            return torch.sigmoid(self.dec(torch.randn(b, self.latent)))


# --- DDPM U-Net (Ho et al., 2020) ---------------------------------------------------------------


def sinusoidal(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half) / (half - 1))
    angles = t[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], 1)


class ResBlock(nn.Module):
    def __init__(self, c_in, c_out, time_dim, groups=8):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, c_in), nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.time = nn.Linear(time_dim, c_out)
        self.norm2, self.conv2 = nn.GroupNorm(groups, c_out), nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, t):
        h = self.conv1(F.silu(self.norm1(x))) + self.time(F.silu(t))[:, :, None, None]
        return self.conv2(F.silu(self.norm2(h))) + self.skip(x)


class Attention(nn.Module):
    def __init__(self, c, groups=8):
        super().__init__()
        self.norm, self.qkv, self.out = nn.GroupNorm(groups, c), nn.Linear(c, 3 * c), nn.Linear(c, c)

    def forward(self, x):
        b, c, hgt, wid = x.shape
        h = self.norm(x).view(b, c, hgt * wid).transpose(1, 2)
        q, k, v = self.qkv(h).chunk(3, 2)
        h = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(c), -1) @ v
        return x + self.out(h).transpose(1, 2).reshape(b, c, hgt, wid)


class UNet(nn.Module):
    def __init__(self, base=64, mults=(1, 2, 2), blocks=2, attn_levels=(2,), temb=64, groups=8):
        super().__init__()
        self.temb, time_dim = temb, 4 * temb
        self.time = nn.Sequential(nn.Linear(temb, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.stem = nn.Conv2d(1, base, 3, 1, 1)
        chans = [m * base for m in mults]
        self.down, skips, c_prev = nn.ModuleList(), [], base
        for level, c in enumerate(chans):
            blks = nn.ModuleList()
            for _ in range(blocks):
                blks.append(ResBlock(c_prev, c, time_dim, groups))
                c_prev = c
                skips.append(c)
            attn = Attention(c, groups) if level in attn_levels else None
            down = nn.Conv2d(c, c, 3, 2, 1) if level + 1 < len(chans) else None
            self.down.append(nn.ModuleDict({"blocks": blks, **({"attn": attn} if attn else {}),
                                            **({"down": down} if down else {})}))
        self.mid1, self.mid_attn, self.mid2 = (ResBlock(c_prev, c_prev, time_dim, groups),
                                               Attention(c_prev, groups),
                                               ResBlock(c_prev, c_prev, time_dim, groups))
        self.up = nn.ModuleList()
        for level in reversed(range(len(chans))):
            c = chans[level]
            blks = nn.ModuleList()
            for _ in range(blocks):
                blks.append(ResBlock(c_prev + skips.pop(), c, time_dim, groups))
                c_prev = c
            attn = Attention(c, groups) if level in attn_levels else None
            up = nn.Conv2d(c, c, 3, 1, 1) if level > 0 else None
            self.up.append(nn.ModuleDict({"blocks": blks, **({"attn": attn} if attn else {}),
                                          **({"up": up} if up else {})}))
        self.out_norm, self.out_conv = nn.GroupNorm(groups, base), nn.Conv2d(base, 1, 3, 1, 1)

    def forward(self, x, t):
        t = self.time(sinusoidal(t, self.temb))
        h, skips = self.stem(x), []
        for level in self.down:
            for blk in level["blocks"]:
                h = blk(h, t)
                skips.append(h)
            if "attn" in level:
                h = level["attn"](h)
            if "down" in level:
                h = level["down"](h)
        h = self.mid2(self.mid_attn(self.mid1(h, t)), t)
        for level in self.up:
            for blk in level["blocks"]:
                h = blk(torch.cat([h, skips.pop()], 1), t)
            if "attn" in level:
                h = level["attn"](h)
            if "up" in level:
                h = level["up"](F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.out_conv(F.silu(self.out_norm(h)))


class Ddpm:
    def __init__(self, preset):
        self.net = UNet() if preset == "full" else UNet(base=32, temb=32)
        self.opt = torch.optim.Adam(self.net.parameters(), 2e-4, eps=1e-8)
        betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
        self.alpha_bar = torch.cumprod(1 - betas, 0).float()
        self.betas = betas.float()

    def train_step(self, x0):
        b = x0.shape[0]
        t = torch.randint(0, 1000, (b,))
        eps = torch.randn_like(x0)
        ab = self.alpha_bar[t][:, None, None, None]
        loss = F.mse_loss(self.net(ab.sqrt() * x0 + (1 - ab).sqrt() * eps, t.float()), eps)
        self.opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
        self.opt.step()
        return loss.item()

    def sample(self, b, steps):
        """DDPM ancestral (steps = 1000) or DDIM eta = 0 with leading spacing (fewer steps)."""
        x = torch.randn(b, 1, 28, 28)
        ts = list(range(0, 1000, 1000 // steps))[::-1]
        with torch.no_grad():
            for i, t in enumerate(ts):
                eps = self.net(x, torch.full((b,), float(t)))
                ab = self.alpha_bar[t]
                prev = ts[i + 1] if i + 1 < len(ts) else -1
                ab_prev = self.alpha_bar[prev] if prev >= 0 else torch.tensor(1.0)
                x0 = ((x - (1 - ab).sqrt() * eps) / ab.sqrt()).clamp(-1, 1)
                if steps == 1000:
                    beta = self.betas[t]
                    mean = (ab_prev.sqrt() * beta * x0 + (1 - beta).sqrt() * (1 - ab_prev) * x) / (1 - ab)
                    var = (1 - ab_prev) / (1 - ab) * beta
                    x = mean + (var.sqrt() * torch.randn_like(x) if t > 0 else 0)
                else:
                    eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()
                    x = ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps
        return x


# --- weight fixtures ----------------------------------------------------------------------------

# Reduced-width versions of the networks above, as the Rust tests rebuild them
# (crates/models/tests/pytorch_weights.rs).
FIXTURE_NETWORKS = {
    "dcgan_generator": lambda: Generator(latent=8, base=16),
    "dcgan_discriminator": lambda: Discriminator(base=8),
    "vae": lambda: Vae(latent=4, channels=(4, 8), hidden=16),
    "unet": lambda: UNet(base=4, mults=(1, 2), blocks=1, attn_levels=(1,), temb=8, groups=2),
}


def fixture_inputs(name, gen):
    """Fixed inputs of each fixture network, and its outputs on them in eval mode."""
    if name == "dcgan_generator":
        return {"z": torch.randn(3, 8, generator=gen)}
    if name == "dcgan_discriminator":
        return {"x": torch.rand(3, 1, 28, 28, generator=gen) * 2 - 1}
    if name == "vae":
        return {"x": torch.rand(3, 1, 28, 28, generator=gen), "z": torch.randn(3, 4, generator=gen)}
    return {"x": torch.randn(2, 1, 8, 8, generator=gen), "t": torch.tensor([3.0, 650.0])}


def fixture_outputs(name, net, inputs):
    if name == "vae":
        mu, logvar = net.enc(inputs["x"]).chunk(2, 1)
        return {"mu": mu, "log_var": logvar, "logits": net.dec(inputs["z"])}
    if name == "unet":
        return {"eps": net(inputs["x"], inputs["t"])}
    return {"out": net(next(iter(inputs.values())))}


def write_fixtures(out):
    """Writes, for each fixture network, its state dict as `<name>.pt` and `<name>.safetensors`
    and its inputs and outputs as `<name>_io.safetensors`. Every parameter and BatchNorm
    statistic is drawn at random (not left at 1 or 0), so a misplaced tensor changes the output."""
    from pathlib import Path

    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(20261201)
    for name, build in FIXTURE_NETWORKS.items():
        torch.manual_seed(0)
        net = build()
        with torch.no_grad():
            for key, tensor in net.state_dict().items():
                if key.endswith("running_var"):
                    tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
                elif tensor.is_floating_point():
                    tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.3)
        net.eval()
        inputs = fixture_inputs(name, gen)
        with torch.no_grad():
            outputs = fixture_outputs(name, net, inputs)
        state = {k: v.contiguous() for k, v in net.state_dict().items()}
        torch.save(state, out / f"{name}.pt")
        save_file(state, out / f"{name}.safetensors")
        io = {**{f"input.{k}": v for k, v in inputs.items()}, **{f"output.{k}": v for k, v in outputs.items()}}
        save_file({k: v.contiguous() for k, v in io.items()}, out / f"{name}_io.safetensors")
        print(f"{name}: {sum(v.numel() for v in state.values())} values, outputs {[tuple(v.shape) for v in outputs.values()]}")


# --- timing -------------------------------------------------------------------------------------


def workload(model, kind, batch):
    if model == "dcgan":
        m = Dcgan()
        real = torch.rand(batch, 1, 28, 28) * 2 - 1
        return (lambda: m.train_step(real)) if kind == "train" else (lambda: m.generate(batch))
    if model == "vae":
        m = Vae()
        x = torch.rand(batch, 1, 28, 28)
        return (lambda: m.train_step(x)) if kind == "train" else (lambda: m.generate(batch))
    preset = model.removeprefix("unet-")
    m = Ddpm(preset)
    if kind == "train":
        x = torch.rand(batch, 1, 28, 28) * 2 - 1
        return lambda: m.train_step(x)
    steps = {"ddpm1000": 1000, "ddim50": 50}[kind]
    return lambda: m.sample(batch, steps)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", nargs="+", default=[], help="model:workload:batch")
    parser.add_argument("--fixtures", metavar="DIR", help="write the weight fixtures into DIR, then exit")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--max-seconds", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args()
    if args.fixtures:
        return write_fixtures(args.fixtures)
    if not args.cases:
        parser.error("--cases is required (or --fixtures DIR)")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_default_device(args.device)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    torch.manual_seed(0)
    for case in args.cases:
        model, kind, batch = case.split(":")
        batch = int(batch)
        run = workload(model, kind, batch)
        for _ in range(args.warmup):
            run()
        sync()
        times, started = [], time.perf_counter()
        while len(times) < args.runs and (len(times) < 1 or time.perf_counter() - started < args.max_seconds):
            t0 = time.perf_counter()
            run()
            sync()
            times.append(time.perf_counter() - t0)
        times.sort()
        median = times[len(times) // 2] if len(times) % 2 else sum(times[len(times) // 2 - 1:][:2]) / 2
        print(json.dumps({
            "model": model, "workload": kind, "batch": batch, "median_s": median,
            "min_s": times[0], "max_s": times[-1], "runs": len(times),
            "images_per_s": batch / median,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        }), flush=True)


if __name__ == "__main__":
    sys.exit(main())
