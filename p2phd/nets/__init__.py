"""pix2pixHD networks, losses and input encoding in MindSpore."""
