"""Protocol kinds: each a loop over the four roles (one module per kind)."""
