"""Named immutable objects, the image store's narrow storage interface: a local folder,
SFTP and S3, with retries for the network ones and a meter for benchmarks."""
