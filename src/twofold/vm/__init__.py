"""Virtual machines: start QEMU headless to prove that disks and media boot."""
