#!/usr/bin/env bash
# DCGAN and U-Net `full` on a GPU through wgpu, beside PyTorch CUDA on the same GPU, in one run
# of under 8 minutes, for a machine that has a GPU but no Rust toolchain.
#
#   benches/gpu.sh prepare   on the build machine: build the training and kernel benchmarks,
#                            strip and compress them into .gpubin/, and download the Vulkan
#                            loader packages into .gl/ (both folders are kept out of git)
#   benches/gpu.sh run       on the GPU machine, from the repository root, with .gpubin/ and .gl/
#                            copied beside it: writes results.json, results.md, images_per_s.png,
#                            kernels.md, machine.txt and log.txt into $OUT (default
#                            target/bench-gpu);
#                            MODELS=dcgan measures fewer networks
#
# The rows are training iterations, generation and DDIM-50 / DDPM-1000 sampling (50 reverse steps
# timed, the rest extrapolated) at batch 128 (64 images for sampling), each the median of 3 runs
# after 2 warm-up runs (wgpu compiles and autotunes its kernels in the first ones); kernels.md times
# the normalisations (the project's CubeCL kernels) against burn's composition and PyTorch CUDA,
# forward and backward, one op at a time. The binaries are
# built with the workspace's burn features: WGSL shaders; burn's `vulkan` (SPIR-V) feature and an
# f16 mode are not part of it.
set -euo pipefail
cd "$(dirname "$0")/.."

benches=(training kernels)

prepare() {
    local built bench executable
    built=$(cargo bench --profile dev --bench training --bench kernels --no-run 2>&1)
    mkdir -p .gpubin
    for bench in "${benches[@]}"; do
        executable=$(sed -n "s/.*Executable benches\/$bench.rs (\(.*\))/\1/p" <<<"$built" | tail -n 1)
        [ -x "$executable" ] || { echo "gpu.sh: no $bench executable was built" >&2; exit 1; }
        strip -o ".gpubin/$bench" "$executable"
        gzip -f ".gpubin/$bench"
    done
    # The GPU machine has the NVIDIA driver but maybe no Vulkan loader: take Debian's (amd64).
    mkdir -p .gl /tmp/amd64/partial
    local apt_options=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
    apt-get "${apt_options[@]}" update >/dev/null
    (cd .gl && apt-get "${apt_options[@]}" download libvulkan1 >/dev/null)
    for folder in .gpubin .gl; do
        grep -qx "/$folder/" .git/info/exclude 2>/dev/null || echo "/$folder/" >>.git/info/exclude
    done
    du -sh .gpubin .gl
}

run() {
    local out=${OUT:-target/bench-gpu}
    mkdir -p "$out"
    local bench
    for bench in "${benches[@]}"; do
        [ -f ".gpubin/$bench.gz" ] || { echo "gpu.sh: .gpubin/$bench.gz is missing: run 'benches/gpu.sh prepare' first" >&2; exit 1; }
        gunzip -c ".gpubin/$bench.gz" >"/tmp/genmodels-$bench"
        chmod +x "/tmp/genmodels-$bench"
    done
    if ! ldconfig -p | grep -q libvulkan && [ -d .gl ]; then
        for package in .gl/*.deb; do dpkg -x "$package" /; done
        ldconfig
    fi
    local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    [ -f "$icd" ] && export VK_DRIVER_FILES=$icd
    {
        date -u
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
        python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0))' || true
        grep -m1 'model name' /proc/cpuinfo
        echo "nproc $(nproc)"
    } >"$out/machine.txt" 2>&1
    # 7 minutes at most in all, so that one device call of 8 minutes also returns the files.
    timeout 60 /tmp/genmodels-kernels --backend wgpu --filter Norm --runs 5 --warmup 3 \
        --python python3 >"$out/kernels.md" 2>&1 || true
    timeout 360 /tmp/genmodels-training --backends wgpu --models "${MODELS:-dcgan,unet-full}" --batches 128 \
        --runs 3 --warmup 2 --max-seconds 5 --max-sampling-steps 50 --python python3 \
        --out "$out" 2>&1 | tee "$out/log.txt"
}

case "${1:-}" in
prepare) prepare ;;
run) run ;;
*)
    echo "usage: benches/gpu.sh prepare|run" >&2
    exit 2
    ;;
esac
