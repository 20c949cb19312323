"""The image engine: create, verify, restore, list, delete and prune disk images."""
