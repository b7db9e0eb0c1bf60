# Sourced by scripts/test and scripts/bundle (not run by itself): the aarch64 (ARM64
# Linux, the RTUs' Cortex-A53/A72) cross build. Debian's cross compiler links, the
# Rust target comes from rustup, and qemu-user runs the results on this machine.
# Sets ARM_OK=1 when all three are there (installing what is missing, as root or with
# sudo), else ARM_OK=0 with the reason in ARM_WHY.
ARM_TARGET=aarch64-unknown-linux-gnu
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
ARM_OK=1
ARM_WHY=
arm_missing=()
command -v aarch64-linux-gnu-gcc >/dev/null || arm_missing+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v qemu-aarch64 >/dev/null || arm_missing+=(qemu-user)
if ((${#arm_missing[@]})); then
    apt_install "${arm_missing[@]}" || { ARM_OK=0; ARM_WHY="Debian packages ${arm_missing[*]} could not be installed"; }
fi
if ! rustup target list --installed 2>/dev/null | grep -qx $ARM_TARGET; then
    rustup target add $ARM_TARGET >/dev/null 2>&1 || { ARM_OK=0; ARM_WHY="rustup could not add the $ARM_TARGET target"; }
fi
