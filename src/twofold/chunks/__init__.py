"""The content-addressed chunk store of images on top of the blob backends: packs, their
indexes, sealed JSON documents, the store's locks, and freeing what no image needs."""
