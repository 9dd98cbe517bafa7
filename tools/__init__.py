"""Studies and measurement scripts; not part of the installed package (DESIGN.md, Layout)."""
