"""GPU detection from nvidia-smi's output, and what the environment record says without a GPU."""

from __future__ import annotations

from inferopt import hardware

H200 = "0, NVIDIA H200, 143771, 9.0, 570.124.06\n1, NVIDIA H200, 143771, 9.0, 570.124.06\n"
BANNER = "| NVIDIA-SMI 570.124.06    Driver Version: 570.124.06    CUDA Version: 12.8     |\n"


def test_nvidia_smi_rows_are_read() -> None:
    gpus = hardware._parse_gpus(H200, hardware._GPU_FIELDS)
    assert [g.index for g in gpus] == [0, 1]
    assert gpus[0] == hardware.GpuInfo(0, "NVIDIA H200", 143771, "9.0", "570.124.06")


def test_an_old_driver_without_compute_cap_and_noise_lines() -> None:
    fields = tuple(f for f in hardware._GPU_FIELDS if f != "compute_cap")
    gpus = hardware._parse_gpus("WARNING: infoROM is corrupted\n0, Tesla T4, 15360, 450.80.02\n", fields)
    assert gpus == [hardware.GpuInfo(0, "Tesla T4", 15360, "", "450.80.02")]


def test_cuda_version_from_the_banner() -> None:
    assert hardware._cuda_driver_version(BANNER) == "12.8"
    assert hardware._cuda_driver_version("no banner") is None


def test_no_nvidia_smi_means_no_gpus(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(hardware.shutil, "which", lambda name: None)
    hardware.gpu_info.cache_clear()
    try:
        assert hardware.gpu_info() == ()
        assert hardware.gpu_environment() == {"gpus": []}
    finally:
        hardware.gpu_info.cache_clear()


def test_the_environment_record_lists_gpus_with_the_driver(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    outputs = {True: H200, False: BANNER}
    monkeypatch.setattr(hardware, "_nvidia_smi", lambda *args: outputs[bool(args)])
    hardware.gpu_info.cache_clear()
    try:
        record = hardware.environment()
    finally:
        hardware.gpu_info.cache_clear()
    assert [g["name"] for g in record["gpus"]] == ["NVIDIA H200", "NVIDIA H200"]  # type: ignore[index]
    assert record["cuda_driver"] == "12.8" and record["cpu_model"]
