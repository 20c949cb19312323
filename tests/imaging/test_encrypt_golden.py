"""Golden vectors of the encrypted store's formats (docs/FORMAT.md, "Encryption"): fixed
keys, salts and nonces give fixed bytes, so a change of format never passes unnoticed;
each vector is also rebuilt from the spec with the libraries alone."""

from __future__ import annotations

import json

import blake3
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from twofold.vault.cipher import ID_INFO, SEAL_INFO, SealDamaged, Vault, chunk_ad, object_ad
from twofold.vault.keys import (
    KdfParams,
    KeyFileDamaged,
    WrongPassphrase,
    derive,
    key_doc,
    unwrap,
)

MASTER = bytes(range(32))
SEAL_KEY = "30b5853e69dd2c938102fefdc7445e44e7db164e32a1094ced51bd2bf79eedc7"
ID_KEY = "3f53b380367898955b7b0bc3c285eba262f23c17a4f024156393f9bc7f66d015"
CHUNK_ID = "cd519b87d7bdcfa2f67e4a55fc4668c1466661ee22f10324b53638a8f625898e"
SEALED_OBJECT = ("01000102030405060708090a0ba3446b2b39821aeb1ddf68a294578d8b7416994992e6ac54"
                 "762afd2c556f2582c815")
SEALED_CHUNK = "01000000000000000000000000dfa9144ef0bb1fab5fbe065a6f7ac373aae8e0"
KEY_FILE = (
    '{"format":"twofold-key","version":1,"kdf":{"name":"argon2id","version":19,'
    '"time_cost":1,"memory_kib":1024,"parallelism":1,"salt":"000102030405060708090a0b0c0d0e0f"},'
    '"cipher":"aes-256-gcm","wrapped":"016465666768696a6b6c6d6e6f48f00bc925dd9bad626d54be1385e'
    'a3493a344204be1ac749832f6d68fcffa8dea6e964d0d5af85757aeb993d6d1f41f"}\n')
PARAMS = KdfParams(1, 1024, 1)
KEK = "77cce82a2481b757eb86f92a001910c970069038c7537a3ec40d22d50763d0f8"


def _hkdf(info: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, None, info).derive(MASTER)


def test_subkeys_and_chunk_id() -> None:
    assert _hkdf(SEAL_INFO).hex() == SEAL_KEY and _hkdf(ID_INFO).hex() == ID_KEY
    assert Vault(MASTER).chunk_id(b"twofold").hex() == CHUNK_ID
    assert blake3.blake3(b"twofold", key=bytes.fromhex(ID_KEY)).hexdigest() == CHUNK_ID
    assert blake3.blake3(b"twofold").hexdigest() != CHUNK_ID  # keyed: not the plain id


def test_sealed_object_and_chunk() -> None:
    vault = Vault(MASTER)
    doc = b'{"hello":"world"}\n'
    sealed = vault.seal(doc, object_ad("images/x.json"), bytes(range(12)))
    assert sealed.hex() == SEALED_OBJECT
    aead = AESGCM(bytes.fromhex(SEAL_KEY))  # the spec, by hand: 01 || nonce || ct || tag
    assert sealed == b"\x01" + bytes(range(12)) + aead.encrypt(bytes(range(12)), doc,
                                                               b"object:images/x.json")
    assert vault.open(sealed, object_ad("images/x.json"), "x") == doc
    chunk = vault.seal_chunk(doc, bytes(32))  # in place, the same format
    assert chunk[0] == 1 and len(chunk) == len(doc) + 29
    assert vault.open(bytes(chunk), chunk_ad(bytes(32)), "c") == doc
    cid = bytes.fromhex(CHUNK_ID)
    assert vault.seal(b"abc", chunk_ad(cid), bytes(12)).hex() == SEALED_CHUNK
    assert vault.open(bytes.fromhex(SEALED_CHUNK), b"chunk:" + cid, "c") == b"abc"


def test_sealed_bytes_open_only_where_they_belong() -> None:
    vault = Vault(MASTER)
    sealed = bytes.fromhex(SEALED_OBJECT)
    with pytest.raises(SealDamaged, match="authentication"):
        vault.open(sealed, object_ad("images/y.json"), "y")  # moved to another name
    with pytest.raises(SealDamaged, match="authentication"):
        Vault(bytes(32)).open(sealed, object_ad("images/x.json"), "x")  # another store
    for i in (0, 5, 20, len(sealed) - 1):
        bad = bytearray(sealed)
        bad[i] ^= 1
        with pytest.raises(SealDamaged):
            vault.open(bytes(bad), object_ad("images/x.json"), "x")
    with pytest.raises(SealDamaged, match="not a sealed object"):
        vault.open(sealed[:20], object_ad("images/x.json"), "x")


def test_key_file() -> None:
    made = key_doc(MASTER, b"correct horse", PARAMS, bytes(range(16)), bytes(range(100, 112)))
    assert made.decode() == KEY_FILE
    kek = derive(b"correct horse", bytes(range(16)), PARAMS)
    assert kek.hex() == KEK
    nonce = bytes(range(100, 112))
    assert json.loads(KEY_FILE)["wrapped"] == \
        (b"\x01" + nonce + AESGCM(kek).encrypt(nonce, MASTER, b"twofold key v1")).hex()
    assert unwrap(KEY_FILE.encode(), b"correct horse", "k") == MASTER
    with pytest.raises(WrongPassphrase, match="wrong passphrase"):
        unwrap(KEY_FILE.encode(), b"correct horse!", "k")
    doc = json.loads(KEY_FILE)
    doc["kdf"]["time_cost"] = 2  # weakened or changed costs derive another key
    with pytest.raises(WrongPassphrase):
        unwrap(json.dumps(doc).encode(), b"correct horse", "k")
    for broken in (b"{", b"[]", KEY_FILE.replace("argon2id", "scrypt").encode(),
                   KEY_FILE.replace('"wrapped":"01', '"wrapped":"02').encode(),
                   KEY_FILE.replace('"memory_kib":1024', '"memory_kib":99999999').encode()):
        with pytest.raises(KeyFileDamaged):
            unwrap(broken, b"correct horse", "k")
