"""A backup set on its drive: the target's folders, the catalog of runs and versions, and
copying one file there."""
