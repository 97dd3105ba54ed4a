"""The cluster under the drill: binaries, backends, node pools and fake GPUs."""
