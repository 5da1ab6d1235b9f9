"""Stage 4, bin/render: plan, inference loop, files, page and render manifest."""
