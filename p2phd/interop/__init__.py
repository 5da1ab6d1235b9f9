"""NVIDIA pix2pixHD interop: torch-free .pth reader, state-dict mapping, the import verb."""
