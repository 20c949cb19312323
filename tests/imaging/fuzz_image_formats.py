"""An atheris (libFuzzer) harness for the image store's readers: run as a script,
`python tests/imaging/fuzz_image_formats.py -runs=N`; any exception other than each
reader's own error is a crash (non-zero exit). tests/imaging/test_fuzz_formats.py runs it
briefly when atheris is installed."""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports():
    import blake3

    from twofold.blobs.objects import StoreError
    from twofold.chunks.indexfiles import (
        IndexDamaged,
        parse_bad_file,
        parse_index_file,
        parse_marker,
    )
    from twofold.chunks.packs import PackDamaged, parse_footer, parse_index
    from twofold.chunks.sealed import SealBroken, seal, unseal
    from twofold.image.manifest import ManifestError, parse_manifest


def one_input(data: bytes) -> None:
    """Give `data` (and a sealed copy of it as text) to every reader."""
    name = blake3.blake3(data).hexdigest()
    sealed = seal({"version": 2, "packs": {"x": data.decode("latin-1")}})
    for reader, errors in (
            (lambda: parse_manifest(data, "fuzz"), ManifestError),
            (lambda: unseal(data), SealBroken),
            (lambda: unseal(sealed[:13] + data[:64] + sealed[77:]), SealBroken),
            (lambda: parse_index_file(f"index/{name}.json", data), IndexDamaged),
            (lambda: parse_bad_file(f"bad/{name}.json", data), IndexDamaged),
            (lambda: parse_marker(data, "fuzz"), StoreError),
            (lambda: parse_index(data, len(data) // 48, 0, "fuzz"), PackDamaged),
            (lambda: parse_footer(data, len(data), "fuzz"), PackDamaged)):
        with contextlib.suppress(errors):
            reader()


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
