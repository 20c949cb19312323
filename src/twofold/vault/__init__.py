"""Encryption of image stores: the layer between the blob backends (blobs/) and the chunk
store (chunks/): keys, sealed objects and keyed chunk ids (docs/FORMAT.md, "Encryption")."""
