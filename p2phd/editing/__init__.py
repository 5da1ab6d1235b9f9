"""Stage 7, bin/edit: the semantic editor (document edits, model glue, server, page, save)."""
